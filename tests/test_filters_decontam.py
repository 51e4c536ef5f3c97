"""Decontamination and quality: planted n-grams are caught, boilerplate never counts, bad input is precise."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardtune.curate.card import Benchmark, Decontaminate, Quality
from cardtune.curate.decontam import decontaminate
from cardtune.curate.quality import quality_filter
from cardtune.curate.yamlsrc import UserInputError

VOCAB = [f"tok{i}" for i in range(50)]
ITEM = " ".join(f"bench{i}" for i in range(30))
BOILER = "please answer the following question carefully and show every single step of your reasoning now"


def rows(prompts: list[str], completions: list[str] | None = None, fields: list[str] | None = None) -> pl.DataFrame:
    n = len(prompts)
    return pl.DataFrame(
        {
            "task": "t",
            "template_id": "tpl",
            "source_ref": [f"t:{i}" for i in range(n)],
            "_prompt_text": prompts,
            "_completion_text": completions or ["ok"] * n,
            "_fields_text": fields or [""] * n,
        }
    )


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
    res = decontaminate(df, spec(), tmp_path, {})
    assert res.kept["source_ref"].to_list() == ["t:0"]
    ev = json.loads(res.rejects["evidence"][0])
    assert ev["item_id"] == "x1" and len(ev["ngram"].split()) == 13
    assert res.rejects["reason"][0] == "benchmark:b"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(VOCAB), max_size=12), st.integers(0, 3))
def test_boilerplate_overlap_never_counts(tmp_path: Path, payload: list[str], start: int) -> None:
    bench_file(tmp_path, [{"id": "x1", "q": BOILER}])
    prompt = " ".join(BOILER.split()[start:]) + "\n" + " ".join(payload)
    res = decontaminate(rows([prompt]), spec(), tmp_path, {"tpl": BOILER})
    assert res.rejects.height == 0
    control = decontaminate(rows([prompt]), spec(), tmp_path, {})  # same row, no boilerplate: a real match
    assert control.rejects.height == (1 if len(BOILER.split()) - start >= 13 else 0)


def test_report_mode_and_canaries(tmp_path: Path) -> None:
    bench_file(tmp_path, [{"id": "x1", "q": ITEM}, {"id": "x2", "q": "too short"}])
    df = rows([ITEM, "clean text", "has CANARY-123 inside"])
    res = decontaminate(df, spec(mode="report", canaries=["CANARY-123"]), tmp_path, {})
    assert res.kept["source_ref"].to_list() == ["t:0", "t:1"]  # canaries drop in both modes
    table = res.report["benchmarks"][0]  # type: ignore[index]
    assert table["items_matched"] == 1 and table["rows_matched"] == 1 and table["rows_dropped"] == 0
    assert table["items_too_short"] == 1
    assert res.rejects["reason"].to_list() == ["canary"]


def test_bad_benchmarks(tmp_path: Path) -> None:
    bench_file(tmp_path, [{"id": "x1", "question": ITEM}])
    with pytest.raises(UserInputError, match=r"no field 'q'.*did you mean|no field 'q'"):
        decontaminate(rows(["a"]), spec(), tmp_path, {})
    (tmp_path / "bench.jsonl").write_text("")
    with pytest.raises(UserInputError, match=r"empty|cannot read"):
        decontaminate(rows(["a"]), spec(), tmp_path, {})
    (tmp_path / "bench.jsonl").unlink()
    with pytest.raises(UserInputError, match="not found"):
        decontaminate(rows(["a"]), spec(), tmp_path, {})


def test_quality_rules() -> None:
    df = rows(["p", "same", "p", "p" * 50, "p"], ["", "same", "ok", "ok", "la la la la la la la la"])
    res = quality_filter(df, Quality(min_chars=2, max_chars=40, max_repetition=0.5))
    assert res.kept["source_ref"].to_list() == ["t:2"]
    assert res.rejects["reason"].to_list() == [
        "empty_completion",
        "completion_equals_prompt",
        "too_long_chars",
        "repetition",
    ]
    assert json.loads(res.rejects["evidence"][2]) == {"rule": "too_long_chars", "value": 52, "bound": 40}
