"""Held-out templates (``tasks[].held_out_templates``) and eval-only templates (``eval.templates``).

They never render a training row; every eval row of the task is rendered once more with each of them into the
``eval_unseen_templates`` split; errors name the card's line; cards that use neither keep their version id.
Also the per-template metrics ``eval`` computes from such rows (``cardtune.train.metrics``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from cardtune.curate.card.validate import validate_card
from cardtune.curate.errors import UserInputError
from cardtune.curate.pipeline import build, resolve
from cardtune.curate.store.manifest import parse_manifest
from cardtune.curate.store.versions import UNSEEN_SPLIT, load_version
from cardtune.train.metrics import Tally, spread, template_score

SUITE = Path(__file__).resolve().parent.parent / "data_cards" / "experiments"


def card(tmp_path: Path, body: str, mode: str = "instruction") -> Path:
    """A card in a copy of the experiment suite (its data and templates) with the given tasks (+ extra)."""
    root = tmp_path / "suite"
    if not root.exists():
        shutil.copytree(SUITE / "data", root / "data")
        shutil.copytree(SUITE / "templates", root / "templates")
    path = root / "card.yaml"
    path.write_text(
        f"name: unseen\nmode: {mode}\ntemplates_dir: templates\n"
        f"output: {{dir: {tmp_path / 'datasets'}}}\nsplit: {{eval_fraction: 0.05, seed: 1}}\n{body}",
        encoding="utf-8",
    )
    return path


TASKS = """\
tasks:
  - name: number
    source: {path: data/lists.jsonl}
    columns: {answer: number}
    templates: ["number/*"]
    held_out_templates: ["number/unseen-*"]
  - name: place
    source: {path: data/lists.jsonl}
    columns: {answer: place}
    templates: ["place/*"]
  - name: body
    source: {path: data/lists.jsonl}
    columns: {answer: body}
    templates: ["body/*"]
    held_out: true
"""


def test_held_out_templates_render_eval_rows_only(tmp_path: Path) -> None:
    result = build(card(tmp_path, TASKS))
    vdir = result.version_dir
    train = pl.read_parquet(vdir / "train.parquet")
    evals = pl.read_parquet(vdir / "eval.parquet")
    unseen = pl.read_parquet(vdir / f"{UNSEEN_SPLIT}.parquet")
    held = {"number/unseen-1", "number/unseen-2"}
    assert not set(train["template_id"]) & held and not set(evals["template_id"]) & held
    assert set(train.filter(pl.col("task") == "number")["template_id"]) == {f"number/f{i}" for i in range(1, 9)}
    assert set(train.filter(pl.col("task") == "place")["template_id"]) >= {"place/unseen-1", "place/unseen-2"}
    # every eval row of `number`, once per held-out template; no other task
    assert set(unseen["task"]) == {"number"} and set(unseen["template_id"]) == held
    eval_refs = sorted(evals.filter(pl.col("task") == "number")["source_ref"])
    for tid in held:
        assert sorted(unseen.filter(pl.col("template_id") == tid)["source_ref"]) == eval_refs
    row = unseen.row(0, named=True)
    assert row["prompt"][0]["content"].startswith(("Look at these words", "Out of"))
    assert row["completion"][0]["content"].strip() in row["answer_choices"]
    manifest = parse_manifest(vdir / "manifest.json")
    assert manifest.counts.splits.eval_unseen_templates == {"number": 2 * len(eval_refs)}
    entry = next(t for t in manifest.tasks if t.name == "number")
    assert set(entry.unseen_templates) == held and not set(entry.templates) & held
    assert manifest.counts.splits.of(UNSEEN_SPLIT) == {"number": 2 * len(eval_refs)}
    assert UNSEEN_SPLIT in (vdir / "README.md").read_text()
    loaded = load_version(vdir)
    assert set(loaded) == {"train", "eval", "heldout", UNSEEN_SPLIT} and len(loaded[UNSEEN_SPLIT]) == unseen.height
    again = build(card(tmp_path, TASKS), force=True)  # deterministic
    assert pl.read_parquet(again.version_dir / f"{UNSEEN_SPLIT}.parquet").equals(unseen)


def test_without_the_feature_nothing_changes(tmp_path: Path) -> None:
    plain = TASKS.replace('    held_out_templates: ["number/unseen-*"]\n', "")
    a = resolve(validate_card(card(tmp_path, plain)))
    b = resolve(validate_card(card(tmp_path, plain.replace("tasks:\n", "eval: {templates: {}}\ntasks:\n"))))
    c = resolve(
        validate_card(card(tmp_path, plain.replace('["place/*"]\n', '["place/*"]\n    held_out_templates: []\n')))
    )
    assert a.version_id == b.version_id == c.version_id and not a.unseen
    vdir = build(a.card).version_dir
    assert not (vdir / f"{UNSEEN_SPLIT}.parquet").exists()
    text = (vdir / "manifest.json").read_text()
    assert UNSEEN_SPLIT not in text and "unseen_templates" not in text
    assert set(load_version(vdir)) == {"train", "eval", "heldout"}
    assert resolve(validate_card(card(tmp_path, TASKS))).version_id != a.version_id


def test_eval_templates_on_a_finetune_card(tmp_path: Path) -> None:
    body = """\
tasks:
  - {name: size, source: {path: data/lists.jsonl}, columns: {answer: size}, templates: [size/f1]}
eval:
  templates: {size: ["size/*"]}
"""
    result = build(card(tmp_path, body, mode="finetune"))
    train = pl.read_parquet(result.version_dir / "train.parquet")
    unseen = pl.read_parquet(result.version_dir / f"{UNSEEN_SPLIT}.parquet")
    assert set(train["template_id"]) == {"size/f1"}
    # the glob matches the training template too: it is skipped, the other nine phrasings are unseen
    assert set(unseen["template_id"]) == {f"size/f{i}" for i in range(2, 9)} | {
        "size/unseen-1",
        "size/unseen-2",
    }
    assert isinstance(unseen["prompt"][0], str) and unseen["prompt"].str.contains("size word").all()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('["number/unseen-*"]', '["number/nope"]'),
            "card.yaml:11: tasks[0].held_out_templates[0]: 'number/nope' matches none",
        ),
        (
            ('["number/unseen-*"]', '["number/*"]'),
            "card.yaml:11: tasks[0].held_out_templates: holds out every template",
        ),
        (
            ("    held_out: true\n", '    held_out: true\n    held_out_templates: ["body/f1"]\n'),
            "tasks[2].held_out_templates: a held-out task",
        ),
        (
            ("tasks:\n", "eval: {templates: {nubmer: [number/f1]}}\ntasks:\n"),
            "eval.templates.nubmer: no task named 'nubmer' (did you mean 'number'?)",
        ),
        (("tasks:\n", "eval: {templates: {body: [body/f1]}}\ntasks:\n"), "eval.templates.body: a held-out task"),
        (
            ("tasks:\n", "eval: {templates: {place: [place/f1]}}\ntasks:\n"),
            "eval.templates.place[0]: 'place/f1' matches only templates",
        ),
        (
            ("tasks:\n", "eval: {templates: {place: [plcae/*]}}\ntasks:\n"),
            "eval.templates.place[0]: no template matches 'plcae/*'",
        ),
    ],
)
def test_mistakes_name_the_line(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    path = card(tmp_path, TASKS.replace(*change))
    with pytest.raises(UserInputError) as info:
        validate_card(path)
    assert any(expected in str(issue) for issue in info.value.issues), [str(i) for i in info.value.issues]
    with pytest.raises(UserInputError):
        build(path)


def test_tally_per_template_spread_and_kinds() -> None:
    tally = Tally()
    for i in range(4):  # task a: template t1 always right, t2 half right, unseen u1 never
        tally.add("seen", "a", "a/t1", {"exact_match": 1.0, "rougeL": 1.0, "accuracy": 1.0})
        tally.add("seen", "a", "a/t2", {"exact_match": float(i % 2), "rougeL": 0.5, "accuracy": float(i % 2)})
        tally.add("unseen_template", "a", "a/u1", {"exact_match": 0.0, "rougeL": 0.0, "accuracy": 0.0})
        tally.add("unseen_task", "b", "b/t1", {"exact_match": 0.0, "rougeL": 0.2})
    s = tally.summary()
    assert s["tasks"]["a"]["n"] == 8 and s["tasks"]["a"]["accuracy"] == 0.75 and not s["tasks"]["a"]["held_out"]
    assert s["unseen_templates"] == {"a": {"n": 4, "exact_match": 0.0, "rougeL": 0.0, "accuracy": 0.0}}
    assert s["tasks"]["b"]["held_out"] and "accuracy" not in s["tasks"]["b"]
    rob = s["robustness"]["a"]
    assert rob["metric"] == "accuracy" and rob["templates"] == 3
    assert (rob["min"], rob["median"], rob["max"]) == (0.0, 0.5, 1.0) and rob["std"] == pytest.approx(0.40825, abs=1e-4)
    assert s["robustness"]["b"]["metric"] == "exact_match"
    assert s["aggregate"]["seen"]["tasks"] == 1 and s["aggregate"]["unseen_templates"]["accuracy"] == 0.0
    assert s["aggregate"]["held_out"]["tasks"] == 1
    kinds = {(t["template"], t["kind"]) for t in s["templates"]}
    assert kinds == {("a/t1", "seen"), ("a/t2", "seen"), ("a/u1", "unseen_template"), ("b/t1", "unseen_task")}
    assert template_score(s, "a", ["a/t1", "a/u1"]) == 0.5 and template_score(s, "zzz") is None
    assert spread([1.0]) == {"min": 1.0, "median": 1.0, "max": 1.0, "std": 0.0}


def test_compare_shows_unseen_templates_and_the_template_spread_per_run() -> None:
    from types import SimpleNamespace

    from cardtune.train import compare

    def run(seen: float, unseen: float, low: float, high: float) -> compare.Compared:
        info = SimpleNamespace(
            mode="instruction",
            method="full",
            base_run=None,
            model="default",
            params=SimpleNamespace(trainable=1000),
            tokens_trained=5000,
            timings=SimpleNamespace(train_s=1.0),
            dataset=SimpleNamespace(version_id="abcdef0123456789"),
        )
        evaluated = {
            "tasks": {"size": {"held_out": False, "accuracy": seen}, "odd": {"held_out": True, "accuracy": 0.1}},
            "unseen_templates": {"size": {"accuracy": unseen}},
            "robustness": {"size": {"min": low, "median": (low + high) / 2, "max": high, "std": (high - low) / 2}},
            "aggregate": {"seen": {"tasks": 1, "accuracy": seen}, "unseen_templates": {"tasks": 1, "accuracy": unseen}},
        }
        return compare.Compared(Path("r"), info, evaluated)  # type: ignore[arg-type]

    body = dict(compare.rows([run(1.0, 0.5, 0.4, 1.0), run(0.9, 0.8, 0.7, 0.9)]))
    assert body["size (seen)"] == ["acc 1.000", "acc 0.900"]
    assert body["size (unseen templates)"] == ["acc 0.500", "acc 0.800"]
    assert body["size (template spread)"] == ["0.40–1.00 sd 0.30", "0.70–0.90 sd 0.10"]
    assert body["unseen templates (macro)"] == ["acc 0.500", "acc 0.800"]
    assert "odd (unseen templates)" not in body and body["odd (held-out)"] == ["acc 0.100", "acc 0.100"]


def test_the_per_task_probe_stays_within_its_compute_budget() -> None:
    from cardtune.train.pertask import BUDGET, probe_interval

    assert probe_interval(16, 8, 1) == 34  # 16 rows ~ 0.67 steps of forward work: 2% of compute -> every 34 steps
    assert probe_interval(16, 8, 50) == 50  # never more often than the Trainer logs
    assert probe_interval(80, 64, 1) == 21
    for rows, per_step in ((16, 8), (80, 64), (160, 8)):
        every = probe_interval(rows, per_step, 1)
        assert rows / (3 * per_step) / every <= BUDGET  # probe cost per step, in training steps
