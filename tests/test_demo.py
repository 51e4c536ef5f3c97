"""``make demo`` shows learning, not chance: the demo card builds, tunes the embedded model on CPU and is evaluated
beside the untrained model; the tuned model beats it clearly on every seen task, the untrained one is at chance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cardtune import demo

ROOT = Path(__file__).resolve().parent.parent


def test_gains_lists_each_section_and_task() -> None:
    def result(acc: float) -> dict[str, object]:
        task = {"accuracy": acc, "exact_match": acc / 2}
        return {
            "tasks": {
                "a": {**task, "held_out": False},
                "b": {**task, "held_out": False},
                "z": {**task, "held_out": True},
            },
            "unseen_templates": {"a": task},
            "aggregate": {
                "seen": {**task, "tasks": 2},
                "unseen_templates": {**task, "tasks": 1},
                "held_out": {**task, "tasks": 1},
            },
        }

    rows = demo.gains(result(0.9), result(0.4))
    assert [r[0] for r in rows] == [
        "seen tasks: accuracy (macro)",
        "  a",
        "  b",
        "seen tasks: exact match (macro)",
        "unseen phrasings of seen tasks (a): accuracy",
        "unseen phrasings of seen tasks (a): exact match",
        "held-out task (z): accuracy",
        "held-out task (z): exact match",
    ]
    assert rows[0][1:] == (0.4, 0.9)


@pytest.mark.slow
def test_the_demo_shows_learning_not_chance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cards = tmp_path / "data_cards"
    cards.mkdir()
    shutil.copy(ROOT / "data_cards" / "demo.yaml", cards / "demo.yaml")
    shutil.copytree(ROOT / "data_cards" / "data" / "demo", cards / "data" / "demo")
    monkeypatch.chdir(tmp_path)
    assert demo.main(Path("data_cards/demo.yaml")) == 0
    (run,) = (tmp_path / "runs").iterdir()
    tuned = json.loads((run / "eval.json").read_text())
    untrained = json.loads((run / "eval.untrained.json").read_text())
    seen = [t for t, m in tuned["tasks"].items() if not m["held_out"]]
    assert sorted(seen) == ["nli", "sentiment", "topic"] and tuned["limit"] == demo.LIMIT
    # balanced eval sets large enough that always giving one answer is plainly chance (1/2, 1/3, 1/4)
    assert all(tuned["tasks"][t]["n"] >= 50 for t in seen)
    assert untrained["aggregate"]["seen"]["accuracy"] < 0.45
    assert tuned["aggregate"]["seen"]["accuracy"] >= 0.8
    for task in seen:
        gain = tuned["tasks"][task]["accuracy"] - untrained["tasks"][task]["accuracy"]
        assert gain >= 0.25, (task, tuned["tasks"][task]["accuracy"], untrained["tasks"][task]["accuracy"])
    # the unseen phrasings of seen tasks are scored too, and the tuned model beats the untrained one there as well
    assert set(tuned["unseen_templates"]) == {"sentiment", "topic"}
    assert tuned["aggregate"]["unseen_templates"]["accuracy"] > untrained["aggregate"]["unseen_templates"]["accuracy"]
    assert tuned["tasks"]["paraphrase"]["held_out"]
