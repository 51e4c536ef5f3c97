"""Decontamination: planted n-grams are caught, boilerplate never counts, report mode drops nothing, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardtune.curate.errors import UserInputError
from cardtune.curate.filters.decontaminate import Benchmark, Decontaminate, decontaminate
from cardtune.curate.testing import filter_context, rendered_rows

VOCAB = [f"tok{i}" for i in range(50)]
ITEM = " ".join(f"bench{i}" for i in range(30))
BOILER = "please answer the following question carefully and show every single step of your reasoning now"


rows = rendered_rows


def decon(df: pl.DataFrame, spec: Decontaminate, base: Path, boilerplate: dict[str, str]):  # type: ignore[no-untyped-def]
    """Run the filter as the pipeline does: its benchmark paths resolved against ``base`` (the card's folder)."""
    return decontaminate(df, spec, filter_context(base, spec, boilerplate=boilerplate))


def bench_file(tmp: Path, items: list[dict[str, str]]) -> Path:
    path = tmp / "bench.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def spec(**kw: object) -> Decontaminate:
    return Decontaminate(benchmarks=[Benchmark(name="b", path="bench.jsonl", fields=["q"], id_field="id")], **kw)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.sampled_from(VOCAB), max_size=20),
    st.lists(st.sampled_from(VOCAB), max_size=20),
    st.integers(0, 17),
    st.sampled_from(["prompt", "completion", "fields"]),
)
def test_planted_ngram_always_caught(
    tmp_path: Path, before: list[str], after: list[str], start: int, where: str
) -> None:
    bench_file(tmp_path, [{"id": "x1", "q": ITEM.upper() + "!"}])
    planted = " ".join([*before, *ITEM.split()[start : start + 13], *after])
    texts = {"prompt": ["clean", planted], "completion": ["clean", planted], "fields": ["", planted]}
    df = rows(
        ["p", "p"] if where != "prompt" else texts["prompt"],
        texts["completion"] if where == "completion" else None,
        texts["fields"] if where == "fields" else None,
    )
    res = decon(df, spec(), tmp_path, {})
    assert res.kept["source_ref"].to_list() == ["t:0"]
    ev = json.loads(res.rejects["evidence"][0])
    assert ev["item_id"] == "x1" and len(ev["ngram"].split()) == 13
    assert res.rejects["reason"][0] == "benchmark:b"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(VOCAB), max_size=12), st.integers(0, 3))
def test_boilerplate_overlap_never_counts(tmp_path: Path, payload: list[str], start: int) -> None:
    bench_file(tmp_path, [{"id": "x1", "q": BOILER}])
    prompt = " ".join(BOILER.split()[start:]) + "\n" + " ".join(payload)
    res = decon(rows([prompt]), spec(), tmp_path, {"tpl": BOILER})
    assert res.rejects.height == 0
    control = decon(rows([prompt]), spec(), tmp_path, {})  # same row, no boilerplate: a real match
    assert control.rejects.height == (1 if len(BOILER.split()) - start >= 13 else 0)


def test_report_mode_drops_nothing(tmp_path: Path) -> None:
    bench_file(tmp_path, [{"id": "x1", "q": ITEM}, {"id": "x2", "q": "too short"}])
    df = rows([ITEM, "clean text", "has CANARY-123 inside"])
    res = decon(df, spec(mode="report", canaries=["CANARY-123"]), tmp_path, {})
    assert res.kept["source_ref"].to_list() == ["t:0", "t:1", "t:2"]  # report mode drops nothing, canaries included
    assert res.rejects.height == 0
    table = res.report["benchmarks"][0]  # type: ignore[index]
    assert table["items_matched"] == 1 and table["rows_matched"] == 1 and table["rows_dropped"] == 0
    assert table["items_too_short"] == 1
    assert table["examples"][0]["source_ref"] == "t:0"
    assert res.report["canaries"] == [{"canary": "CANARY-123", "rows": 1, "examples": ["t:2"]}]
    assert res.report["canary_rows"] == 1 and res.report["rows_flagged"] == 2 and res.report["rows_dropped"] == 0


def test_drop_mode_drops_benchmark_hits_and_canaries(tmp_path: Path) -> None:
    bench_file(tmp_path, [{"id": "x1", "q": ITEM}])
    df = rows([ITEM, "clean text", "has CANARY-123 inside"], fields=["", "", ""])
    res = decon(df, spec(canaries=["CANARY-123"]), tmp_path, {})
    assert res.kept["source_ref"].to_list() == ["t:1"]
    assert res.rejects["reason"].to_list() == ["benchmark:b", "canary"]
    assert json.loads(res.rejects["evidence"][1]) == {"canary": "CANARY-123"}
    assert res.report["rows_dropped"] == 2 and res.report["rows_flagged"] == 2


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_benchmark_files_parquet_and_csv(tmp_path: Path, fmt: str) -> None:
    items = pl.DataFrame({"id": ["p1", "p2"], "q": ["unrelated words only here", ITEM.upper()]})
    path = tmp_path / f"bench.{fmt}"
    items.write_parquet(path) if fmt == "parquet" else items.write_csv(path)
    bench = Benchmark(name="b", path=path.name, fields=["q"], id_field="id")
    df = rows(["clean", "x " + " ".join(ITEM.split()[5:18]) + " y"], fields=["", ""])
    res = decon(df, Decontaminate(benchmarks=[bench]), tmp_path, {})
    assert res.kept["source_ref"].to_list() == ["t:0"]
    ev = json.loads(res.rejects["evidence"][0])
    assert ev["item_id"] == "p2" and ev["where"] == "rendered" and ev["matched_ngrams"] == 1
    missing = Benchmark(name="b", path=path.name, fields=["question"], id_field="id")
    with pytest.raises(UserInputError, match="no field 'question'"):
        decon(df, Decontaminate(benchmarks=[missing]), tmp_path, {})


def test_raw_fields_and_rendered_text_in_one_pass(tmp_path: Path) -> None:
    bench_file(tmp_path, [{"id": "x1", "q": ITEM}, {"id": "x2", "q": BOILER + " extra"}])
    window = " ".join(ITEM.split()[:13])
    df = rows(["a", window, "b", "c"], fields=[window, window, "", BOILER])
    res = decon(df, spec(), tmp_path, {"tpl": BOILER})
    assert res.kept["source_ref"].to_list() == ["t:2"]
    where = [json.loads(e)["where"] for e in res.rejects["evidence"]]
    assert where == ["fields", "rendered", "fields"]  # boilerplate is excluded from rendered text only
    assert json.loads(res.rejects["evidence"][1])["matched_ngrams"] == 2  # rendered + fields


def test_bad_benchmarks(tmp_path: Path) -> None:
    bench_file(tmp_path, [{"id": "x1", "question": ITEM}])
    with pytest.raises(UserInputError, match=r"no field 'q'.*did you mean|no field 'q'"):
        decon(rows(["a"]), spec(), tmp_path, {})
    (tmp_path / "bench.jsonl").write_text("")
    with pytest.raises(UserInputError, match=r"empty|cannot read"):
        decon(rows(["a"]), spec(), tmp_path, {})
    (tmp_path / "bench.jsonl").unlink()
    with pytest.raises(UserInputError, match="not found"):
        decon(rows(["a"]), spec(), tmp_path, {})


def test_benchmarks_are_read_like_sources(tmp_path: Path) -> None:
    from cardtune.curate.filters.decontaminate import Benchmark, load_benchmark

    def ctx(base: Path, bench: Benchmark):  # type: ignore[no-untyped-def]
        return filter_context(base, Decontaminate(benchmarks=[bench]))

    (tmp_path / "b.tsv").write_text("question\tid\nwhat is the tallest mountain\tq1\n", encoding="utf-8")
    items = load_benchmark(b := Benchmark(name="b", path="b.tsv", fields=["question"], id_field="id"), ctx(tmp_path, b))
    assert items.rows() == [("q1", "what is the tallest mountain")]
    (tmp_path / "bad.jsonl").write_text('{"question": "a"}\n{"question": \n', encoding="utf-8")
    with pytest.raises(UserInputError, match=r"bad\.jsonl:2: malformed JSON line"):
        load_benchmark(b := Benchmark(name="b", path="bad.jsonl", fields=["question"]), ctx(tmp_path, b))
