"""The filter protocol and registry: the schema, the pipeline and the manifest follow FILTERS; row-local filters
give the same result on any partition of the rows; the worked example (max_turns) works end to end."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardtune.curate import filters
from cardtune.curate.card.load import load_card
from cardtune.curate.card.schema import Card
from cardtune.curate.errors import UserInputError
from cardtune.curate.filters.max_turns import MaxTurns
from cardtune.curate.filters.quality import Quality
from cardtune.curate.pipeline import build
from cardtune.curate.rows import COMPLETION, PROMPT, empty_rejects
from cardtune.curate.testing import filter_context, rendered_rows, run_filter


def conversation_rows(turn_counts: list[int]) -> pl.DataFrame:
    """Instruction-mode rows whose prompt holds ``n - 1`` non-system turns (plus a system turn) each."""
    rows = rendered_rows(
        [f"prompt {i}" for i in range(len(turn_counts))], [f"answer {i}" for i in range(len(turn_counts))]
    )
    prompts = [
        [{"role": "system", "content": "s"}]
        + [{"role": "user" if k % 2 == 0 else "assistant", "content": f"t{k}"} for k in range(n - 1)]
        for n in turn_counts
    ]
    completions = [[{"role": "assistant", "content": "a"}] for _ in turn_counts]
    return rows.with_columns(pl.Series(PROMPT, prompts), pl.Series(COMPLETION, completions))


def test_registry_order_drives_the_card_schema() -> None:
    fields = list(Card.model_fields["filters"].annotation.model_fields)  # type: ignore[union-attr]
    heads = list(dict.fromkeys(f.key[0] for f in filters.FILTERS))
    assert fields == heads
    assert filters.names() == ["quality", "max_turns", "exact_dedup", "near_dedup", "decontaminate"]
    card = Card.model_validate({"name": "c", "tasks": [{"name": "t", "source": {"path": "x.jsonl"}}]})
    on = [f.name for f, _ in filters.enabled(card.filters)]
    assert on == [f.name for f in filters.FILTERS if f.on_by_default] == ["quality", "exact_dedup"]
    with pytest.raises(UserInputError, match="did you mean 'near_dedup'"):
        filters.by_name("near_dedupe")


def test_an_unused_off_by_default_filter_is_not_part_of_the_id() -> None:
    card = Card.model_validate({"name": "c", "tasks": [{"name": "t", "source": {"path": "x.jsonl"}}]})
    assert "max_turns" not in card.data_sections()["filters"]
    on = Card.model_validate({**card.model_dump(), "filters": {"max_turns": {"max": 4}}})
    assert on.data_sections()["filters"]["max_turns"] == {"max": 4}


def test_max_turns_drops_long_conversations_with_evidence() -> None:
    res = run_filter("max_turns", conversation_rows([2, 5, 3, 9]), MaxTurns(max=4))
    assert res.kept["source_ref"].to_list() == ["t:0", "t:2"]
    assert res.rejects["reason"].to_list() == ["too_many_turns"] * 2
    assert [json.loads(e) for e in res.rejects["evidence"]] == [{"turns": 5, "max": 4}, {"turns": 9, "max": 4}]
    assert res.report == {"max": 4, "dropped": 2}
    plain = rendered_rows(["p", "q"], ["c", "d"])  # finetune rows: strings, one pair = 2 turns
    plain = plain.with_columns(pl.col("_prompt_text").alias(PROMPT), pl.col("_completion_text").alias(COMPLETION))
    assert run_filter("max_turns", plain, MaxTurns(max=2)).rejects.height == 0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=30), st.integers(1, 29), st.integers(1, 10))
def test_row_local_filters_give_the_same_result_on_any_partition(counts: list[int], cut: int, bound: int) -> None:
    """What `locality="row"` promises a partitioned executor: run per partition + concatenate == run once."""
    rows = conversation_rows(counts)
    cut = min(cut, rows.height)
    specs = {"max_turns": MaxTurns(max=bound), "quality": Quality(min_chars=8, max_repetition=0.5)}
    for flt in filters.FILTERS:
        if flt.locality != "row" or flt.name not in specs:
            continue
        ctx = filter_context(".", specs[flt.name])
        whole = flt.run(rows, specs[flt.name], ctx)
        parts = [flt.run(rows[:cut], specs[flt.name], ctx), flt.run(rows[cut:], specs[flt.name], ctx)]
        assert pl.concat([p.kept for p in parts]).equals(whole.kept)
        assert pl.concat([empty_rejects(), *[p.rejects for p in parts]]).equals(whole.rejects)


def test_a_new_filter_runs_in_the_build_and_reaches_rejects_and_manifest(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": f"hello {i}"}]}
        for i in range(6)
    ]
    rows += [
        {
            "messages": [
                m
                for k in range(3)
                for m in ({"role": "user", "content": f"q{i}{k}"}, {"role": "assistant", "content": f"a{i}{k}"})
            ]
        }
        for i in range(4)
    ]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "card.yaml").write_text(
        "name: chat\ntasks:\n  - name: chat\n    source: {path: chat.jsonl}\n"
        "filters:\n  max_turns: {max: 4}\nsplit: {eval_fraction: 0}\n"
        f"output: {{dir: {tmp_path / 'out'}}}\n",
        encoding="utf-8",
    )
    result = build(load_card(tmp_path / "card.yaml"))
    rejects = pl.read_parquet(result.version_dir / "rejects.parquet")
    assert rejects["filter"].to_list() == ["max_turns"] * 4
    assert pl.read_parquet(result.version_dir / "train.parquet").height == 6
    manifest = json.loads((result.version_dir / "manifest.json").read_text())
    assert "max_turns" in json.dumps(manifest["counts"]) and manifest["filter_reports"]["max_turns"]["dropped"] == 4
    bad = (tmp_path / "card.yaml").read_text().replace("max_turns: {max: 4}", "max_turns: {max: 0}")
    (tmp_path / "card.yaml").write_text(bad, encoding="utf-8")
    with pytest.raises(UserInputError, match=r"card\.yaml:6: filters\.max_turns\.max"):
        load_card(tmp_path / "card.yaml")
