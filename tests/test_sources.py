"""Sources: every format, stable source_ref, renames, limits, and precise errors for bad data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from cardtune.curate.card.schema import Card, Source, Task
from cardtune.curate.errors import UserInputError
from cardtune.curate.inputs import resolve_inputs
from cardtune.curate.sources import read
from cardtune.curate.store.fingerprint import source_fingerprint as _fingerprint


def load_source(card: Card, task: Task) -> pl.DataFrame:
    """A task's rows as the build reads them: the source resolved from the card, then read."""
    return read.load_source(resolve_inputs(card).sources[task.name], task)


def source_columns(card: Card, task: Task) -> list[str]:
    return read.source_columns(resolve_inputs(card).sources[task.name], task)


def source_fingerprint(card: Card, task: Task) -> str:
    src = task.source
    hub = f"{src.hf}:{src.config}:{src.split}" if src.hf is not None else None
    return _fingerprint(resolve_inputs(card).sources[task.name], hub)


ROWS = [{"q": f"question {i}", "a": f"answer {i}", "id": f"r{i}"} for i in range(5)]


def card_for(tmp_path: Path, **source: object) -> tuple[Card, Task]:
    task = Task(name="t", source=Source(**source))  # type: ignore[arg-type]
    card = Card(name="c", tasks=[task])
    card._path = tmp_path / "card.yaml"
    return card, task


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv", "parquet"])
def test_each_file_format_reads_the_same_rows(tmp_path: Path, fmt: str) -> None:
    frame = pl.DataFrame(ROWS)
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, ROWS)
    elif fmt == "json":
        path.write_text(json.dumps(ROWS), encoding="utf-8")
    elif fmt == "csv":
        frame.write_csv(path)
    elif fmt == "tsv":
        frame.write_csv(path, separator="\t")
    else:
        frame.write_parquet(path)
    card, task = card_for(tmp_path, path=path.name)
    out = load_source(card, task)
    assert out.select("q", "a", "id").to_dicts() == ROWS
    assert out["source_ref"].to_list() == [f"t:{i}" for i in range(5)]
    assert source_columns(card, task) == ["q", "a", "id"]


def test_glob_and_directory_concatenate_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    pl.DataFrame(ROWS[3:]).write_parquet(tmp_path / "shards" / "b.parquet")
    pl.DataFrame(ROWS[:3]).write_parquet(tmp_path / "shards" / "a.parquet")
    for spec in ("shards/*.parquet", "shards"):
        card, task = card_for(tmp_path, path=spec)
        assert load_source(card, task)["id"].to_list() == [r["id"] for r in ROWS]


def test_save_to_disk_directory(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "ds"))
    card, task = card_for(tmp_path, path="ds")
    assert load_source(card, task)["q"].to_list() == [r["q"] for r in ROWS]
    card, task = card_for(tmp_path, path="ds", split="test")
    with pytest.raises(UserInputError, match="no split 'test'"):
        load_source(card, task)


def test_renames_limit_and_id_column(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", ROWS)
    task = Task(name="t", source=Source(path="d.jsonl", limit=2, id_column="id"), columns={"question": "q"})
    card = Card(name="c", tasks=[task])
    card._path = tmp_path / "card.yaml"
    out = load_source(card, task)
    assert out.columns == ["question", "a", "id", "source_ref"]
    assert out["source_ref"].to_list() == ["t:r0", "t:r1"]
    assert "question" in source_columns(card, task)


def test_rename_of_missing_column_suggests(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", ROWS)
    task = Task(name="t", source=Source(path="d.jsonl"), columns={"question": "qq"})
    card = Card(name="c", tasks=[task])
    card._path = tmp_path / "card.yaml"
    with pytest.raises(UserInputError, match=r"columns.question: source has no column 'qq' \(did you mean 'q'\?\)"):
        load_source(card, task)


def test_malformed_jsonl_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": 1}\n{"q": 2}\n{"q": 3,,}\n', encoding="utf-8")
    card, task = card_for(tmp_path, path="d.jsonl")
    with pytest.raises(UserInputError, match=r"d\.jsonl:3: malformed JSON line"):
        load_source(card, task)


def test_ragged_csv_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n1,2\n3,4\n5,6,7\n", encoding="utf-8")
    card, task = card_for(tmp_path, path="d.csv")
    with pytest.raises(UserInputError, match=r"d\.csv:4: ragged row: 3 fields, header has 2"):
        load_source(card, task)


def test_missing_empty_and_unknown_sources(tmp_path: Path) -> None:
    card, task = card_for(tmp_path, path="nope.jsonl")
    with pytest.raises(UserInputError, match="source file not found"):
        load_source(card, task)
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    card, task = card_for(tmp_path, path="empty.jsonl")
    with pytest.raises(UserInputError, match="empty"):
        load_source(card, task)
    (tmp_path / "x.xml").write_text("<a/>", encoding="utf-8")
    card, task = card_for(tmp_path, path="x.xml")
    with pytest.raises(UserInputError, match="unknown file type"):
        load_source(card, task)
    card, task = card_for(tmp_path, path="none/*.jsonl")
    with pytest.raises(UserInputError, match="glob matched no files"):
        load_source(card, task)


def test_hub_dataset_offline_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    # offline flags are read when huggingface_hub is imported, so check in a fresh process
    code = (
        "from cardtune.curate.card.schema import Card, Source, Task\n"
        "from cardtune.curate.inputs import resolve_inputs\n"
        "from cardtune.curate.sources.read import load_source\n"
        "task = Task(name='t', source=Source(hf='cardtune-test/does-not-exist', revision='a' * 40))\n"
        "load_source(resolve_inputs(Card(name='c', tasks=[task])).sources['t'], task)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode != 0
    assert "hub dataset 'cardtune-test/does-not-exist'" in result.stderr
    assert "needs network access" in result.stderr


def test_fingerprint_follows_content_not_path(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", ROWS)
    card, task = card_for(tmp_path, path="d.jsonl")
    first = source_fingerprint(card, task)
    assert first == source_fingerprint(card, task)
    data = (tmp_path / "d.jsonl").read_bytes()
    (tmp_path / "d.jsonl").write_bytes(data.replace(b"answer 4", b"answer 5"))
    assert source_fingerprint(card, task) != first
    (tmp_path / "d.jsonl").write_bytes(data)
    assert source_fingerprint(card, task) == first


def test_pinned_hub_revision_is_the_fingerprint(tmp_path: Path) -> None:
    sha = "a" * 40
    card, task = card_for(tmp_path, hf="org/ds", revision=sha)
    assert source_fingerprint(card, task).endswith("@" + sha)


def test_limit_reads_only_the_files_it_needs(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    pl.DataFrame(ROWS[:3]).write_parquet(tmp_path / "shards" / "a.parquet")
    (tmp_path / "shards" / "b.parquet").write_bytes(b"not parquet")  # never opened: the limit is met by a.parquet
    card, task = card_for(tmp_path, path="shards/*.parquet", limit=2)
    assert load_source(card, task)["id"].to_list() == ["r0", "r1"]
    card, task = card_for(tmp_path, path="shards/*.parquet")
    with pytest.raises(UserInputError, match=r"b\.parquet: not a readable Parquet file"):
        load_source(card, task)
