"""Source readers: every format (and its gzip/zstd variants) reads the same rows, honours `limit`, names bad
lines, and the registry is the one list of formats (card field, messages, directory scan)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from cardtune.curate.card.load import load_card
from cardtune.curate.card.schema import Card, Source, Task
from cardtune.curate.errors import UserInputError
from cardtune.curate.inputs import resolve_inputs
from cardtune.curate.sources import read, registry
from cardtune.curate.sources.base import FileReader

ROWS = [{"q": f"question {i}", "a": f"answer {i}", "id": f"r{i}"} for i in range(5)]


def compress(data: bytes, path: Path) -> Path:
    """Write ``data`` to ``path``, compressed as its suffix says (``.gz`` with gzip, ``.zst`` with pyarrow)."""
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    elif path.suffix == ".zst":
        with pa.CompressedOutputStream(str(path), "zstd") as out:
            out.write(data)
    else:
        path.write_bytes(data)
    return path


def text_of(fmt: str, rows: list[dict[str, object]]) -> bytes:
    frame = pl.DataFrame(rows)
    if fmt in ("jsonl", "ndjson"):
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    if fmt == "json":
        return json.dumps(rows).encode()
    return frame.write_csv(separator="\t" if fmt == "tsv" else ",").encode()


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    """``rows`` in the format ``path``'s name says (e.g. ``d.csv.zst``, ``d.arrows``)."""
    name = path.name
    frame = pl.DataFrame(rows)
    if name.endswith((".parquet", ".pq")):
        frame.write_parquet(path)
    elif name.endswith((".arrow", ".feather", ".ipc")):
        frame.write_ipc(path)
    elif name.endswith(".arrows"):
        frame.write_ipc_stream(path)
    else:
        compress(text_of(name.split(".")[1], rows), path)
    return path


def card_for(tmp_path: Path, **source: object) -> tuple[Card, Task]:
    task = Task(name="t", source=Source(**source))  # type: ignore[arg-type]
    card = Card(name="c", tasks=[task])
    card._path = tmp_path / "card.yaml"
    return card, task


def resolved(card: Card, task: Task) -> read.ResolvedSource:
    return resolve_inputs(card).sources[task.name]


def load(card: Card, task: Task) -> pl.DataFrame:
    return read.load_source(resolved(card, task), task)


NAMES = {
    "d.jsonl": "jsonl",
    "d.ndjson": "jsonl",
    "d.jsonl.gz": "jsonl",
    "d.jsonl.zst": "jsonl",
    "d.ndjson.gz": "jsonl",
    "d.json": "json",
    "d.json.gz": "json",
    "d.json.zst": "json",
    "d.csv": "csv",
    "d.csv.gz": "csv",
    "d.csv.zst": "csv",
    "d.tsv": "tsv",
    "d.tsv.gz": "tsv",
    "d.tsv.zst": "tsv",
    "d.parquet": "parquet",
    "d.pq": "parquet",
    "d.arrow": "arrow",
    "d.feather": "arrow",
    "d.ipc": "arrow",
    "d.arrows": "arrow",
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_format_round_trips_the_same_rows(tmp_path: Path, name: str) -> None:
    write(tmp_path / name, ROWS)
    card, task = card_for(tmp_path, path=name)
    assert resolved(card, task).kind == NAMES[name]
    out = load(card, task)
    assert out.select("q", "a", "id").to_dicts() == ROWS
    assert out["source_ref"].to_list() == [f"t:{i}" for i in range(5)]
    assert read.source_columns(resolved(card, task), task) == ["q", "a", "id"]


@pytest.mark.parametrize("name", sorted(NAMES))
def test_limit_reads_the_first_rows_of_every_format(tmp_path: Path, name: str) -> None:
    write(tmp_path / name, ROWS)
    card, task = card_for(tmp_path, path=name, limit=2)
    assert load(card, task)["id"].to_list() == ["r0", "r1"]


@pytest.mark.parametrize("name", ["d.csv.gz", "d.tsv.zst"])
def test_compressed_csv_limit_decompresses_only_the_rows_it_needs(tmp_path: Path, name: str) -> None:
    # the ragged last row is never parsed with a limit; without one it is reported at its decompressed line
    sep = "\t" if ".tsv" in name else ","
    lines = [sep.join(["a", "b"]), *(sep.join([str(i), str(i)]) for i in range(5)), sep.join(["x", "y", "z"])]
    compress(("\n".join(lines) + "\n").encode(), tmp_path / name)
    card, task = card_for(tmp_path, path=name, limit=3)
    assert load(card, task)["a"].to_list() == [0, 1, 2]
    card, task = card_for(tmp_path, path=name)
    with pytest.raises(UserInputError, match=rf"{name}:7: ragged row: 3 fields, header has 2"):
        load(card, task)


@pytest.mark.parametrize("name", ["d.jsonl.gz", "d.jsonl.zst", "d.ndjson"])
def test_malformed_compressed_jsonl_names_the_decompressed_line(tmp_path: Path, name: str) -> None:
    compress(b'{"q": 1}\n\n{"q": 2}\n{"q": 3,,}\n', tmp_path / name)
    card, task = card_for(tmp_path, path=name)
    with pytest.raises(UserInputError, match=rf"{name}:4: malformed JSON line \(column 9\)"):
        load(card, task)


def test_compression_comes_from_the_bytes_and_a_false_name_is_refused(tmp_path: Path) -> None:
    compress(text_of("jsonl", ROWS), tmp_path / "dump.gz")
    card, task = card_for(tmp_path, path="dump.gz", format="jsonl")
    assert load(card, task)["id"].to_list() == [r["id"] for r in ROWS]
    (tmp_path / "plain.jsonl.gz").write_bytes(text_of("jsonl", ROWS))
    card, task = card_for(tmp_path, path="plain.jsonl.gz")
    with pytest.raises(UserInputError, match=r"plain\.jsonl\.gz: not a gzip-compressed file"):
        load(card, task)
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(text_of("jsonl", ROWS))[:20])
    card, task = card_for(tmp_path, path="cut.jsonl.gz")
    with pytest.raises(UserInputError, match=r"cut\.jsonl\.gz: cannot decompress \(gzip\)"):
        load(card, task)


def test_longest_suffix_wins_in_any_case() -> None:
    found = {n: registry.reader_for_file(Path(n)) for n in ["a.JSONL.GZ", "a.json.gz", "a.csv.zst", "a.txt.gz"]}
    assert {n: r.name if r else None for n, r in found.items()} == {
        "a.JSONL.GZ": "jsonl",
        "a.json.gz": "json",
        "a.csv.zst": "csv",
        "a.txt.gz": None,
    }


def test_directory_picks_up_compressed_and_arrow_files(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    write(tmp_path / "shards" / "a.jsonl.gz", ROWS[:2])
    write(tmp_path / "shards" / "b.jsonl.zst", ROWS[2:4])
    write(tmp_path / "shards" / "c.ndjson", ROWS[4:])
    (tmp_path / "shards" / "notes.md").write_text("not data", encoding="utf-8")
    card, task = card_for(tmp_path, path="shards")
    assert [p.name for p in resolved(card, task).files] == ["a.jsonl.gz", "b.jsonl.zst", "c.ndjson"]
    assert load(card, task)["id"].to_list() == [r["id"] for r in ROWS]
    (tmp_path / "ipc").mkdir()
    write(tmp_path / "ipc" / "x.arrow", ROWS)
    card, task = card_for(tmp_path, path="ipc")
    assert resolved(card, task).kind == "arrow"


def test_unknown_suffix_lists_the_registry_formats(tmp_path: Path) -> None:
    (tmp_path / "x.xml").write_text("<a/>", encoding="utf-8")
    card, task = card_for(tmp_path, path="x.xml")
    with pytest.raises(UserInputError) as info:
        load(card, task)
    message = str(info.value)
    assert "unknown file type '.xml'" in message
    assert message.endswith("set `format:` to one of " + ", ".join(registry.file_formats()))
    assert {"jsonl", "csv", "parquet", "arrow"} <= set(registry.file_formats())
    (tmp_path / "empty").mkdir()
    card, task = card_for(tmp_path, path="empty")
    with pytest.raises(UserInputError, match=r"holds no files of a known format \(jsonl, json, csv, tsv, parquet"):
        load(card, task)


def test_a_format_typo_in_a_card_gets_did_you_mean_at_its_line(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text("name: demo\ntasks:\n  - name: a\n    source:\n      path: a.jsonl\n      format: jsnol\n")
    with pytest.raises(UserInputError) as info:
        load_card(card)
    (issue,) = info.value.issues
    assert str(issue) == (
        f"{card}:6: tasks[0].source.format: 'jsnol' is not one of "
        + ", ".join(registry.card_formats())
        + " (did you mean 'jsonl'?)"
    )


def test_the_card_field_allows_exactly_the_registry_names(tmp_path: Path) -> None:
    names = [r.name for r in registry.READERS if r.reads != "hub"]
    assert registry.card_formats() == ["auto", *names]
    for name in registry.card_formats():
        assert Source(path="x", format=name).format == name
    for name in ["hf", "JSONL", "xml", ""]:
        with pytest.raises(ValueError, match="is not one of"):
            Source(path="x", format=name)
    description = Source.model_fields["format"].description or ""
    assert all(f"`{name}`" in description for name in registry.card_formats())
    assert [r.name for r in registry.READERS] == list(dict.fromkeys(r.name for r in registry.READERS))  # unique


def test_a_file_format_on_a_folder_reader_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "d.jsonl", ROWS)
    card, task = card_for(tmp_path, path="d.jsonl", format="hf_disk")
    with pytest.raises(UserInputError, match="format 'hf_disk' reads a folder, not a file"):
        resolved(card, task)


class LinesReader(FileReader):
    """Plain text, one row per line in a ``text`` column (the "how to add a reader" example)."""

    name = "lines"
    summary = "plain text, one row per line"
    suffixes = (".txt",)

    def read_file(self, path: Path, limit: int | None) -> pl.DataFrame:
        lines = path.read_text(encoding="utf-8").splitlines()
        return pl.DataFrame({"text": lines[:limit]}, schema={"text": pl.String})


def test_a_reader_added_to_the_registry_is_used_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d.txt").write_text("one\ntwo\nthree\n", encoding="utf-8")
    card, task = card_for(tmp_path, path="d.txt")
    with pytest.raises(UserInputError, match=r"unknown file type '\.txt'"):
        resolved(card, task)
    monkeypatch.setattr(registry, "READERS", (*registry.READERS, LinesReader()))
    assert "lines" in registry.card_formats()
    assert "`lines` (plain text, one row per line; `.txt`)" in registry.format_help()
    card, task = card_for(tmp_path, path="d.txt", limit=2)
    assert resolved(card, task).kind == "lines"
    assert load(card, task)["text"].to_list() == ["one", "two"]
    assert read.source_columns(resolved(card, task), task) == ["text"]
    card, task = card_for(tmp_path, path="d.txt", format="lines")
    assert load(card, task).height == 3
