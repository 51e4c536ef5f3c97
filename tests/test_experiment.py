"""``make compare`` in its ``--quick`` form: every experiment card builds, tunes a few steps, is evaluated on seen
phrasings, unseen phrasings and unseen tasks, and lands in the table; run.json carries the per-task signal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardtune import experiment
from cardtune.train.adapters import read_run

CARDS = Path(__file__).resolve().parent.parent / "data_cards" / "experiments"


@pytest.mark.slow
def test_compare_quick_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "compare"
    assert experiment.main(["--quick", "--output", str(out), "--cards", str(CARDS)]) == 0
    report = json.loads((out / "compare.json").read_text())
    labels = [row["setup"] for row in report["rows"]]
    assert labels[0].startswith("untrained") and [s.label for s in experiment.SETUPS] == labels[1:]
    for row in report["rows"]:
        for key in ("target_train", "target_unseen", "unseen_tasks"):
            assert row[key]["mean"] is not None and 0.0 <= row[key]["mean"] <= 1.0, (row["setup"], key)
    by = {row["setup"]: row for row in report["rows"]}
    full = by["instruction tuning"]["trainable_params"]
    assert by["LoRA module on the IT base"]["trainable_params"] < full / 5
    assert by["prompt tuning on the IT base"]["trainable_params"] < by["LoRA module on the IT base"]["trainable_params"]
    assert "| setup |" in (out / "compare.md").read_text()
    # the task modules were tuned on the instruction-tuned run, and every run's card says what it trained with
    it_run = Path(report["runs"]["instruction tuning"][0])
    lora = read_run(report["runs"]["LoRA module on the IT base"][0])
    assert lora.base_run == str(it_run.resolve()) and lora.method == "lora"
    # per-task training signal: tokens per task sum to the tokens trained; eval loss per task on every split
    info = read_run(it_run)
    trained = {t: s for t, s in info.per_task.items() if s.rows}
    assert set(trained) == {"number", "place", "time", "size"}
    assert (
        info.tokens_trained is not None and abs(sum(s.tokens or 0 for s in trained.values()) - info.tokens_trained) <= 4
    )
    assert all(
        s.train_loss and s.eval_loss and s.unseen_templates_loss and s.train_loss_curve for s in trained.values()
    )
    assert info.per_task["body"].heldout_loss is not None and info.per_task["body"].rows is None
    evaluated = json.loads((it_run / "eval.json").read_text())
    assert set(evaluated["unseen_templates"]) == set(trained)
    assert {t["kind"] for t in evaluated["templates"]} == {"seen", "unseen_template", "unseen_task"}
    assert (it_run / "eval.untrained.json").is_file()
