"""Resume after a crash: a checkpoint cut off mid-save is skipped (and said), the newest complete one is used."""

from __future__ import annotations

from pathlib import Path

import pytest
from _train_data import Interrupt as _Interrupt
from _train_data import write_card, write_version

from cardtune.train.run import last_complete_checkpoint, tune


def test_last_complete_checkpoint_skips_torn_saves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for step, complete in ((2, True), (4, True), (6, False), (10, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()  # not a step number: ignored
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    err = capsys.readouterr().err
    assert "checkpoint-10: incomplete checkpoint" in err and "checkpoint-6: incomplete checkpoint" in err
    assert last_complete_checkpoint(tmp_path / "none") is None


def test_resume_after_a_kill_during_a_checkpoint_save(tmp_path: Path) -> None:
    version = write_version(tmp_path / "v", "instruction")
    card = write_card(tmp_path / "card.yaml", sft={"max_steps": 4, "save_steps": 2})
    runs = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt, match=r"the interrupted run is kept in .*--resume` continues it"):
        tune(card, output=runs, version_dir=version, progress=False, callbacks=[_Interrupt()])
    (partial,) = runs.iterdir()
    torn = partial / "checkpoints" / "checkpoint-3"  # what kill -9 during save leaves: no trainer_state.json
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\0" * 16)
    result = tune(card, output=runs, version_dir=version, progress=False, resume=True)
    assert result.info is not None
    assert result.info.resumed_from == "checkpoint-2" and result.info.global_step == 4
