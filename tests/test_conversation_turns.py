"""Conversations, turn by turn, on the data side: per-turn quality bounds and a turn-count floor, per-turn evidence
in dedup and decontamination rejects, and tokens per role in `cardtune inspect` and the HTML report — all only for
conversation rows (templated and plain-text rows keep their rejects, evidence and reports as they were)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from cardtune.curate.card.schema import Card
from cardtune.curate.filters.decontaminate import Benchmark, Decontaminate, decontaminate
from cardtune.curate.filters.exact_dedup import ExactDedup
from cardtune.curate.filters.max_turns import MaxTurns
from cardtune.curate.filters.near_dedup import NearDedup
from cardtune.curate.filters.quality import Quality
from cardtune.curate.rows import SOURCE_REF
from cardtune.curate.templating.passthrough import passthrough
from cardtune.curate.testing import filter_context, rendered_rows, run_filter

sys.path.insert(0, str(Path(__file__).parent))
from test_conversations import SHAREGPT, _chat_card

LONG_RESULT = '{"sky": "rainy", "detail": "' + "drizzle " * 40 + '"}'


def _conversations(convs: list[list[dict[str, str]]], system: str | None = "Be brief.") -> pl.DataFrame:
    frame = pl.DataFrame([{"conversations": c, "system": system} for c in convs])
    frame = frame.with_columns(pl.Series(SOURCE_REF, [f"chat:{i}" for i in range(frame.height)]))
    return passthrough(frame, "chat", "instruction", None)


def _templated(prompts: list[str], completions: list[str]) -> pl.DataFrame:
    """Templated instruction rows (message lists with a template id): not conversation rows."""
    rows = rendered_rows(prompts, completions)
    return rows.with_columns(
        pl.Series("prompt", [[{"role": "user", "content": p}] for p in prompts]),
        pl.Series("completion", [[{"role": "assistant", "content": c}] for c in completions]),
    )


def _evidence(res: Any) -> list[dict[str, Any]]:
    return [json.loads(e) for e in res.rejects["evidence"].to_list()]


def test_per_turn_bounds_name_the_turn_its_role_and_length() -> None:
    long_tool = [*SHAREGPT[:2], {"from": "observation", "value": LONG_RESULT}, *SHAREGPT[3:]]
    rows = _conversations([SHAREGPT, long_tool, [SHAREGPT[0], {"from": "gpt", "value": "Ok"}]])
    res = run_filter("quality", rows, Quality(max_turn_chars=200, min_turn_chars=3))
    assert res.kept[SOURCE_REF].to_list() == ["chat:0"]
    assert res.rejects["reason"].to_list() == ["turn_too_long_chars", "turn_too_short_chars"]
    long, short = _evidence(res)
    # turn 0 is the system message (never measured), so the observation is turn 3
    assert long == {"rule": "turn_too_long_chars", "turn": 3, "role": "tool", "value": len(LONG_RESULT), "bound": 200}
    assert short == {"rule": "turn_too_short_chars", "turn": 2, "role": "assistant", "value": 2, "bound": 3}
    assert res.report["by_rule"]["turn_too_long_chars"] == 1
    parts = [
        run_filter("quality", rows[a:b], Quality(max_turn_chars=200, min_turn_chars=3)) for a, b in ((0, 2), (2, 3))
    ]
    assert pl.concat([p.rejects for p in parts]).equals(res.rejects)  # row-local: partitions give the same rejects


def test_per_turn_bounds_leave_other_rows_alone_and_old_ids_unchanged() -> None:
    templated = _templated(["x" * 500], ["Ok"])
    assert run_filter("quality", templated, Quality(max_turn_chars=10, min_turn_chars=5)).rejects.height == 0
    finetune = rendered_rows(["x" * 500], ["Ok"])  # plain text payload: no message lists at all
    assert run_filter("quality", finetune, Quality(max_turn_chars=10)).rejects.height == 0
    base = {"name": "c", "tasks": [{"name": "t", "source": {"path": "x.jsonl"}}]}
    card = Card.model_validate(base)
    assert not {"min_turn_chars", "max_turn_chars"} & set(card.data_sections()["filters"]["quality"])
    on = Card.model_validate({**base, "filters": {"quality": {"max_turn_chars": 900}}})
    assert on.data_sections()["filters"]["quality"]["max_turn_chars"] == 900


def test_min_turns_keeps_only_multi_turn_conversations() -> None:
    rows = _conversations([SHAREGPT, [SHAREGPT[0], SHAREGPT[3]], SHAREGPT[:4]])
    res = run_filter("max_turns", rows, MaxTurns(min=3, max=5))
    assert res.kept[SOURCE_REF].to_list() == ["chat:2"]
    assert res.rejects["reason"].to_list() == ["too_many_turns", "too_few_turns"]
    assert _evidence(res) == [{"turns": 6, "max": 5}, {"turns": 2, "min": 3}]
    assert res.report == {"max": 5, "min": 3, "too_few": 1, "dropped": 2}
    with pytest.raises(ValueError, match="give `max`, `min` or both"):
        MaxTurns()
    assert MaxTurns(max=4).model_dump() == {"max": 4}  # the hashed section of existing cards is unchanged


def test_dedup_evidence_counts_the_turns_of_a_conversation_only() -> None:
    rows = _conversations([SHAREGPT, SHAREGPT, SHAREGPT[:4]])
    exact = run_filter("exact_dedup", rows, ExactDedup(scope="both"))
    assert exact.rejects[SOURCE_REF].to_list() == ["chat:1"] and _evidence(exact)[0]["turns"] == 6
    near = run_filter("near_dedup", rows, NearDedup(threshold=0.9, ngram=2, scope="both"))
    assert near.rejects[SOURCE_REF].to_list() == ["chat:1"] and _evidence(near)[0]["turns"] == 6
    templated = _templated(["same prompt words here"] * 2, ["same answer"] * 2)
    plain = _evidence(run_filter("exact_dedup", templated, ExactDedup()))[0]
    assert set(plain) == {"scope", "xxh3"}
    plain = _evidence(run_filter("near_dedup", templated, NearDedup(ngram=2)))[0]
    assert "turns" not in plain


def test_decontamination_names_the_turn_holding_the_match(tmp_path: Path) -> None:
    item = "the quick brown fox jumps over the lazy dog near the river bank"
    (tmp_path / "bench.jsonl").write_text(json.dumps({"id": "q7", "q": item}) + "\n", encoding="utf-8")
    leaked = [*SHAREGPT[:2], {"from": "observation", "value": f"result: {item}"}, *SHAREGPT[3:]]
    rows = _conversations([SHAREGPT, leaked])
    spec = Decontaminate(ngram=8, benchmarks=[Benchmark(name="b", path="bench.jsonl", fields=["q"], id_field="id")])
    res = decontaminate(rows, spec, filter_context(tmp_path, spec))
    ev = _evidence(res)
    assert res.rejects[SOURCE_REF].to_list() == ["chat:1"]
    assert (ev[0]["turn"], ev[0]["role"], ev[0]["item_id"], ev[0]["where"]) == (3, "tool", "q7", "rendered")
    late = [*SHAREGPT[:5], {"from": "gpt", "value": f"Also: {item}"}]  # the final assistant turn (the completion)
    ev = _evidence(decontaminate(_conversations([late]), spec, filter_context(tmp_path, spec)))
    assert (ev[0]["turn"], ev[0]["role"]) == (6, "assistant")
    templated = _templated([f"Q: {item}"], ["A"])
    ev = _evidence(decontaminate(templated, spec, filter_context(tmp_path, spec)))
    assert "turn" not in ev[0] and ev[0]["item_id"] == "q7"


def _words_per_role(version_dir: Path, split: str) -> dict[str, int]:
    """Whitespace words per role of the stored conversations, counted from the rows as Python dicts."""
    out = {"system": 0, "user": 0, "assistant": 0, "tool": 0}
    for row in pl.read_parquet(version_dir / f"{split}.parquet").to_dicts():
        for m in [*row["prompt"], *row["completion"]]:
            parts = [m.get("reasoning_content") or "", m["content"] or ""]
            parts += [f"{c['function']['name']}({c['function']['arguments']})" for c in m.get("tool_calls") or []]
            out[m["role"]] += sum(len(p.split()) for p in parts)
    return out


def test_tokens_per_role_in_inspect_and_the_report(tmp_path: Path) -> None:
    from cardtune.cli import app
    from cardtune.curate.pipeline import build
    from cardtune.curate.reporting.html import render_report
    from cardtune.curate.reporting.roles import role_tokens
    from cardtune.curate.store.versions import read_manifest

    result = build(_chat_card(tmp_path))
    vdir = result.version_dir
    stats, unit = role_tokens(vdir, read_manifest(vdir))
    assert unit == "words"
    train = stats.filter(pl.col("split") == "train").row(0, named=True)
    assert {r: train[r] for r in ("system", "user", "assistant", "tool")} == _words_per_role(vdir, "train")
    out = CliRunner().invoke(app, ["inspect", str(vdir), "--samples", "0"], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "conversation tokens per role (words)" in out.output and f"{train['assistant']:,}" in out.output
    page = render_report(vdir)
    assert '<section id="roles">' in page and f">{train['tool']:,}<" in page


def test_no_role_tokens_for_templated_versions(tmp_path: Path) -> None:
    from test_report_html import make_version

    from cardtune.curate.reporting.html import render_report
    from cardtune.curate.reporting.tables import inspect_renderable

    vdir = make_version(tmp_path)
    assert 'id="roles"' not in render_report(vdir)
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(inspect_renderable(vdir, n_samples=0))
    assert "per role" not in console.export_text()
