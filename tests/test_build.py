"""End to end: a card becomes a reproducible, versioned dataset; ids follow content; errors leave nothing."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import cardtune
from cardtune.cli import app
from cardtune.curate.errors import UserInputError
from cardtune.curate.pipeline import build
from cardtune.curate.store.versions import SPLITS

TEMPLATES = """\
family: local
templates:
  - id: local/ask
    inputs: [question, answer]
    prompt: "Answer the question: {{ question }}"
    completion: "{{ answer }}"
  - id: local/quiz
    inputs: [question, answer]
    system: You are a quiz master.
    prompt: |
      Quiz time!
      Q: {{ question }}
    completion: "{{ answer }}"
  - id: local/label
    inputs: [text, label]
    answer_choices: ["negative", "positive"]
    prompt: "Is this review positive or negative? {{ text }}"
    completion: "{{ answer_choices[label] }}"
"""

CARD = """\
name: tiny
mode: {mode}
templates_dir: tpl
tasks:
  - name: qa
    source: {{path: qa.jsonl}}
    templates: [local/ask, local/quiz]
    weight: 2
  - name: sentiment
    source: {{path: sent.csv}}
    columns: {{text: review}}
    templates: [local/label]
  - name: heldout_qa
    source: {{path: qa2.jsonl}}
    templates: [local/ask]
    held_out: true
mixture: {{strategy: examples_proportional, cap: 50, total: 120, seed: 7}}
filters:
  quality: {{min_chars: 5}}
  dedup: {{exact: {{scope: both}}}}
split: {{eval_fraction: 0.1, seed: 3}}
output: {{dir: {out}}}
"""


def make_project(tmp_path: Path, mode: str = "instruction") -> Path:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "local.yaml").write_text(TEMPLATES, encoding="utf-8")
    qa = [{"question": f"What is {i} plus {i}?", "answer": str(2 * i)} for i in range(80)]
    qa.append(dict(qa[0]))  # an exact duplicate
    qa.append({"question": "x", "answer": ""})  # empty completion
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa), encoding="utf-8")
    qa2 = [{"question": f"Name a colour number {i}.", "answer": f"colour {i}"} for i in range(15)]
    (tmp_path / "qa2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa2), encoding="utf-8")
    pl.DataFrame(
        {
            "review": [f"Review number {i}: {'great' if i % 2 else 'awful'} stuff" for i in range(40)],
            "label": [i % 2 for i in range(40)],
        }
    ).write_csv(tmp_path / "sent.csv")
    card = tmp_path / "card.yaml"
    card.write_text(CARD.format(mode=mode, out=tmp_path / "datasets"), encoding="utf-8")
    return card


def files(version_dir: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(version_dir.iterdir()) if p.suffix == ".parquet" or p.name == "README.md"
    }


def test_build_is_reproducible_and_cached(tmp_path: Path) -> None:
    card = make_project(tmp_path)
    first = build(card)
    assert not first.cached and (first.version_dir / "manifest.json").is_file()
    snapshot = files(first.version_dir)
    assert set(snapshot) == {"train.parquet", "eval.parquet", "heldout.parquet", "rejects.parquet", "README.md"}
    again = build(card)
    assert again.cached and again.version_id == first.version_id
    forced = build(card, force=True)
    assert not forced.cached and forced.version_id == first.version_id
    assert files(forced.version_dir) == snapshot, "rebuilding the same card must give byte-identical files"


def test_splits_counts_and_rejects(tmp_path: Path) -> None:
    result = build(make_project(tmp_path))
    ds = cardtune.load(result.version_dir)
    assert set(ds) == set(SPLITS)
    train, evals, held = (pl.read_parquet(result.version_dir / f"{s}.parquet") for s in SPLITS)
    assert set(held["task"]) == {"heldout_qa"} and held.height == 15
    assert "heldout_qa" not in set(train["task"]) | set(evals["task"])
    assert not set(evals["source_ref"]) & set(train["source_ref"]), "eval rows leaked into train"
    assert train.height == 120
    plan = {p.task: p.target for p in result.plan}
    realized = dict(train.group_by("task").len().iter_rows())
    assert realized == plan
    rejects = pl.read_parquet(result.version_dir / "rejects.parquet")
    reasons = set(zip(rejects["filter"], rejects["source_ref"], strict=True))
    assert ("exact_dedup", "qa:80") in reasons
    assert any(f == "quality" and ref == "qa:81" for f, ref in reasons)
    dup = rejects.filter(pl.col("filter") == "exact_dedup").row(0, named=True)
    assert dup["duplicate_of"] == "qa:0"
    manifest = result.manifest
    assert manifest.counts.drops("exact_dedup")["qa"] == 1
    assert manifest.counts.source == {"qa": 82, "sentiment": 40, "heldout_qa": 15}
    # instruction mode: conversational prompt / completion
    row = train.filter(pl.col("template_id") == "local/quiz").row(0, named=True)
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert [m["role"] for m in row["completion"]] == ["assistant"]
    readme = (result.version_dir / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\n") and "configs:" in readme and "heldout_qa" in readme


def test_finetune_mode_writes_plain_strings(tmp_path: Path) -> None:
    result = build(make_project(tmp_path, mode="finetune"))
    train = pl.read_parquet(result.version_dir / "train.parquet")
    assert train.schema["prompt"] == pl.String and train.schema["completion"] == pl.String


@pytest.mark.parametrize("target", ["tpl/local.yaml", "qa.jsonl", "sent.csv"])
def test_one_byte_changes_the_id(tmp_path: Path, target: str) -> None:
    card = make_project(tmp_path)
    before = build(card, dry_run=True).version_id
    path = tmp_path / target
    data = path.read_bytes()
    edits = {
        "tpl/local.yaml": (b"Quiz time!", b"Quiz time?"),
        "qa.jsonl": (b"plus", b"pluS"),
        "sent.csv": (b"great", b"grEat"),
    }
    old, new = edits[target]
    assert old in data
    path.write_bytes(data.replace(old, new, 1))
    assert build(card, dry_run=True).version_id != before


def test_card_change_outside_data_sections_keeps_the_id(tmp_path: Path) -> None:
    card = make_project(tmp_path)
    before = build(card, dry_run=True).version_id
    card.write_text(card.read_text(encoding="utf-8") + "train: {method: full}\n", encoding="utf-8")
    assert build(card, dry_run=True).version_id == before


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    card = make_project(tmp_path)
    result = build(card, dry_run=True)
    assert result.dry_run and result.plan
    assert not (tmp_path / "datasets").exists() or not any((tmp_path / "datasets").rglob("*.parquet"))


def test_dry_run_computes_counts_without_sampling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dry run never materializes the mixture (a huge `total` used to hang or abort): counts come from the plan."""
    from cardtune.curate import pipeline

    card = make_project(tmp_path)
    card.write_text(card.read_text().replace("total: 120", "total: 50000"), encoding="utf-8")

    def no_sampling(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dry run sampled the mixture")

    monkeypatch.setattr(pipeline, "apply_mixture", no_sampling)
    result = build(card, dry_run=True)
    train = result.manifest.counts.splits.train
    assert sum(train.values()) == 50000 == sum(p.target for p in result.plan)
    assert result.manifest.tokens.train and set(train) == {"qa", "sentiment"}


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    card = make_project(tmp_path)
    (tmp_path / "qa.jsonl").write_text('{"question": "q", "answer": "a"}\n{"question": "only"}\n', encoding="utf-8")
    with pytest.raises(UserInputError, match="answer"):
        build(card)
    out = tmp_path / "datasets"
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_upsampling_forbidden_is_an_error(tmp_path: Path) -> None:
    card = make_project(tmp_path)
    text = (
        card.read_text(encoding="utf-8")
        .replace(
            "mixture: {strategy: examples_proportional, cap: 50, total: 120, seed: 7}",
            "mixture: {strategy: count, upsample: false}",
        )
        .replace("weight: 2", "weight: 5000")
    )
    card.write_text(text, encoding="utf-8")
    with pytest.raises(UserInputError, match="upsample"):
        build(card)
    assert not (tmp_path / "datasets").exists() or not any((tmp_path / "datasets").rglob("manifest.json"))


def test_cli_build_ls_inspect_diff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    card = make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    dry = runner.invoke(app, ["build", str(card), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "mixture plan" in dry.output and "dry run" in dry.output
    first = runner.invoke(app, ["build", str(card), "-q"])
    assert first.exit_code == 0 and "built" in first.output
    assert "cached" in runner.invoke(app, ["build", str(card)]).output
    text = card.read_text(encoding="utf-8").replace("total: 120", "total: 100")
    card.write_text(text, encoding="utf-8")
    assert runner.invoke(app, ["build", str(card), "-q"]).exit_code == 0
    listing = runner.invoke(app, ["ls", str(tmp_path / "datasets")])
    assert listing.exit_code == 0 and listing.output.count("tiny") >= 2
    (a, b) = sorted(p for p in (tmp_path / "datasets" / "tiny").iterdir())
    inspected = runner.invoke(app, ["inspect", str(a)])
    assert inspected.exit_code == 0, inspected.output
    assert "requested vs realized" in inspected.output and "exact_dedup" in inspected.output
    diffed = runner.invoke(app, ["diff", str(a), str(b)])
    assert diffed.exit_code == 0 and "mixture.total" in diffed.output
    missing = runner.invoke(app, ["inspect", str(tmp_path / "nope")])
    assert missing.exit_code == 1
    reported = runner.invoke(app, ["report", str(a)])
    assert reported.exit_code == 0, reported.output
    html = (a / "report.html").read_text(encoding="utf-8")
    assert html.count("<svg") >= 3 and "qa" in html


def test_inspect_lists_filters_in_pipeline_order(tmp_path: Path) -> None:
    from cardtune.curate.reporting.tables import filter_names
    from cardtune.curate.store.versions import read_manifest

    result = build(make_project(tmp_path))
    assert filter_names(read_manifest(result.version_dir)) == ["quality", "exact_dedup"]


def test_benchmark_and_tokenizer_contents_are_part_of_the_id(tmp_path: Path) -> None:
    card = make_project(tmp_path)
    (tmp_path / "bench.jsonl").write_text('{"q": "alpha beta gamma"}\n', encoding="utf-8")
    text = card.read_text(encoding="utf-8").replace(
        "  dedup: {exact: {scope: both}}\n",
        "  dedup: {exact: {scope: both}}\n"
        "  decontaminate: {ngram: 3, benchmarks: [{name: b, path: bench.jsonl, fields: [q]}]}\n",
    )
    card.write_text(text, encoding="utf-8")
    first = build(card)
    assert "benchmark:b" in first.manifest.inputs.other
    assert build(card).cached
    # the same benchmark path with new content must not be a cache hit: decontamination would differ
    (tmp_path / "bench.jsonl").write_text('{"q": "What is 3 plus 3?"}\n', encoding="utf-8")
    second = build(card)
    assert not second.cached and second.version_id != first.version_id
    assert second.manifest.counts.drops("decontaminate").get("qa", 0) >= 1


@pytest.mark.parametrize("mode", ["instruction", "finetune"])
def test_stored_rows_flatten_to_the_text_the_filters_saw(tmp_path: Path, mode: str) -> None:
    from cardtune.curate.card.load import load_card
    from cardtune.curate.pipeline import resolve
    from cardtune.curate.rows import COMPLETION_TEXT, PROMPT_TEXT, with_flat_text
    from cardtune.curate.sources.read import load_source
    from cardtune.curate.store.versions import public_frame
    from cardtune.curate.templating.render import render_task

    resolved = resolve(load_card(make_project(tmp_path, mode=mode)))
    card = resolved.card
    rendered = pl.concat(
        [
            render_task(load_source(resolved.inputs.sources[t.name], t), t, resolved.templates[t.name], mode, 0)
            for t in card.tasks
        ],
        how="vertical_relaxed",
    )
    again = with_flat_text(public_frame(rendered))
    assert again[PROMPT_TEXT].to_list() == rendered[PROMPT_TEXT].to_list()
    assert again[COMPLETION_TEXT].to_list() == rendered[COMPLETION_TEXT].to_list()


def test_curation_format_is_part_of_the_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cardtune.curate.store import fingerprint

    card = make_project(tmp_path)
    result = build(card, dry_run=True)
    inputs = result.manifest.inputs.model_dump()
    assert inputs["curation_format"] == fingerprint.CURATION_FORMAT
    assert "code" not in inputs  # no hash of source files: a refactor or a report colour keeps ids
    assert fingerprint.version_id(inputs) == result.version_id
    monkeypatch.setattr(fingerprint, "CURATION_FORMAT", fingerprint.CURATION_FORMAT + 1)
    assert build(card, dry_run=True).version_id != result.version_id
