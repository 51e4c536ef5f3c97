"""Every shipped example card validates and builds (into tmp_path), and names the data it documents."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from cardtune.curate.card.validate import validate_card
from cardtune.curate.pipeline import build

CARDS = sorted((Path(__file__).resolve().parent.parent / "data_cards").glob("*.yaml"))


def test_the_documented_examples_exist() -> None:
    names = {p.name for p in CARDS}
    assert {"demo.yaml", "flan-mini.yaml", "finetune-single.yaml", "finetune-multi.yaml", "lora.yaml"} <= names
    assert "prompt-tuning.yaml" in names


@pytest.mark.parametrize("card_path", CARDS, ids=[p.stem for p in CARDS])
def test_example_card_validates_and_builds(card_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "data_cards"
    shutil.copytree(card_path.parent, workdir, ignore=shutil.ignore_patterns("README.md"))
    monkeypatch.chdir(tmp_path)
    card = validate_card(workdir / card_path.name)
    result = build(card)
    train = pl.read_parquet(result.version_dir / "train.parquet")
    assert train.height > 0
    assert set(train["task"]) == {t.name for t in card.tasks if not t.held_out}
    expected = pl.List if card.mode == "instruction" else pl.String
    assert isinstance(train.schema["prompt"], expected) or train.schema["prompt"] == expected
