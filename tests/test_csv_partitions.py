"""CSV/TSV sources are read in byte ranges cut at record ends: quoted fields holding line breaks, separators and
doubled quotes are never cut, every range is typed like a whole-file read, and the version's bytes never depend
on the cut."""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_execute import TEMPLATE, build_in

from cardtune.curate.card.load import load_card
from cardtune.curate.errors import UserInputError
from cardtune.curate.execute.parts import _record_spans, plan_parts, read_part
from cardtune.curate.inputs import resolve_inputs

CARD = """\
name: tabular
mode: instruction
tasks:
  - {{name: qa, source: {{path: {file}}}, templates: [qa/ask]}}
templates_dir: tpl
mixture: {{strategy: examples_proportional, seed: 3}}
filters:
  dedup: {{exact: {{scope: both}}, near: {{threshold: 0.7}}}}
split: {{eval_fraction: 0.1, seed: 5}}
output: {{dir: out}}
"""


def tricky_rows(n: int, seed: int = 3) -> list[dict[str, object]]:
    """Questions with quoted line breaks, separators and quotes; an integer and a float column (some empty)."""
    rng = np.random.default_rng(seed)
    vocab = ["alpha", "beta", "river", "stone", 'say "hi"', "a,b", "tab\there", "line\nbreak", "x\r\ny"]
    rows: list[dict[str, object]] = []
    for i in range(n):
        words = [vocab[k] for k in rng.integers(0, len(vocab), 12)]
        rows.append(
            {
                "question": " ".join(words) if i % 11 else rows[-1]["question"] if rows else "first",
                "answer": f"answer {i % 7}",
                "score": int(i % 5),
                "weight": None if i % 13 == 0 else float(i) / 4,
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict[str, object]], sep: str = ",") -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=sep)
        writer.writeheader()
        writer.writerows(rows)


def project(root: Path, name: str = "rows.csv", sep: str = ",", n: int = 300) -> Path:
    (root / "tpl" / "qa").mkdir(parents=True)
    (root / "tpl" / "qa" / "ask.yaml").write_text(TEMPLATE, encoding="utf-8")
    write_csv(root / name, tricky_rows(n), sep)
    (root / "card.yaml").write_text(CARD.format(file=name), encoding="utf-8")
    return root / "card.yaml"


@pytest.mark.parametrize("size", [1, 7, 64, 500, 4096])
def test_every_range_starts_at_a_record_and_together_they_are_the_file(tmp_path: Path, size: int) -> None:
    path = tmp_path / "rows.csv"
    write_csv(path, tricky_rows(200))
    header, spans = _record_spans(path, size)
    data = path.read_bytes()
    assert header == data.index(b"\n") + 1
    assert spans[0][0] == header and spans[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # contiguous, nothing skipped
    whole = pl.read_csv(path)
    pieces = [pl.read_csv(io.BytesIO(data[:header] + data[lo:hi]), schema=whole.schema) for lo, hi in spans]
    assert pl.concat(pieces).equals(whole)  # no range starts inside a quoted field


def test_a_file_no_larger_than_a_partition_is_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    write_csv(path, tricky_rows(5))
    assert _record_spans(path, path.stat().st_size) == (0, [])


@pytest.mark.parametrize(("name", "sep"), [("rows.csv", ","), ("rows.tsv", "\t")])
def test_partitioned_csv_builds_the_bytes_of_a_whole_read(tmp_path: Path, name: str, sep: str) -> None:
    card_path = project(tmp_path / "proj", name, sep)
    card = load_card(card_path)
    source = resolve_inputs(card).sources["qa"]
    parts = plan_parts(card.tasks[0], source, False, 0, rows=3)
    assert len(parts) > 5 and all(p.bytes is not None and p.header > 0 for p in parts)
    whole = pl.read_csv(card_path.parent / name, separator=sep)
    assert pl.concat([read_part(p, card.tasks[0], source) for p in parts]).equals(whole)
    reference = build_in(tmp_path / "a", card_path, workers=1)
    assert build_in(tmp_path / "b", card_path, workers=1, partition_rows=3) == reference
    assert build_in(tmp_path / "c", card_path, workers=2, partition_rows=5) == reference


def test_a_ragged_record_in_a_later_range_is_named_at_its_line(tmp_path: Path) -> None:
    card_path = project(tmp_path, n=120)
    path = tmp_path / "rows.csv"
    data = path.read_bytes()
    path.write_bytes(data + b"only,two\r\n")  # the last record has 2 fields, the header 4
    line = data.count(b"\n") + 1  # its physical line (quoted fields hold line breaks)
    with pytest.raises(UserInputError, match=rf"rows\.csv:{line}: ragged row: 2 fields, header has 4"):
        build_in(tmp_path / "w", card_path, workers=1, partition_rows=3)


@pytest.mark.parametrize("late", ["7", "not-a-number"])
def test_types_follow_the_first_rows_in_every_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, late: str) -> None:
    """Column types come from the file's first rows in every range, as in a whole-file read: a later integer is
    read as one; a later value that is not one fails the build in one line, whether the file is cut or not."""
    from cardtune.curate.execute import parts
    from cardtune.curate.sources import text

    monkeypatch.setattr(text, "CSV_INFER_ROWS", 20)
    monkeypatch.setattr(parts, "CSV_INFER_ROWS", 20)
    card_path = project(tmp_path / "proj", n=60)
    path = card_path.parent / "rows.csv"
    path.write_bytes(path.read_bytes() + f'"late row",late answer,{late},1.0\r\n'.encode())
    if late.isdigit():
        reference = build_in(tmp_path / "a", card_path, workers=1)
        assert build_in(tmp_path / "b", card_path, workers=1, partition_rows=1) == reference
        return
    for rows in (50_000, 1):
        with pytest.raises(UserInputError, match=r"rows\.csv: not a readable CSV file"):
            build_in(tmp_path / f"w{rows}", card_path, workers=1, partition_rows=rows)
