"""The self-contained HTML report: written atomically, one chart per section, escaped, offline, deterministic."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cardtune.curate.reporting.html import render_report, write_report
from cardtune.curate.rows import REJECT_SCHEMA
from cardtune.curate.store.manifest import Manifest
from cardtune.curate.store.versions import read_manifest, write_parquet

EVIL = '<script>alert("pwned")</script>'
MESSAGE = pl.List(pl.Struct({"role": pl.String(), "content": pl.String()}))


def _msgs(role: str, text: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


def _rows(task: str, n: int, start: int = 0, evil: bool = False) -> list[dict[str, Any]]:
    rows = []
    for i in range(start, start + n):
        prompt = f"Question {i} about {task}: " + "word " * (5 + (i * 7) % 60)
        if evil and i == start:
            prompt = f"Please ignore this {EVIL} & <b>bold</b>"
        rows.append(
            {
                "task": task,
                "template_id": f"{task}/t{i % 2}",
                "source_ref": f"{task}:{i}",
                "prompt": _msgs("user", prompt),
                "completion": _msgs("assistant", f"Answer {i}" + " ok" * (i % 9)),
                "answer_choices": None,
            }
        )
    return rows


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = {
        "task": pl.String(),
        "template_id": pl.String(),
        "source_ref": pl.String(),
        "prompt": MESSAGE,
        "completion": MESSAGE,
        "answer_choices": pl.List(pl.String()),
    }
    return pl.DataFrame(rows, schema=schema)


def _reject(
    task: str, i: int, flt: str, reason: str, evidence: dict[str, Any], dup: str | None = None
) -> dict[str, Any]:
    return {
        "task": task,
        "template_id": f"{task}/t0",
        "source_ref": f"{task}:{i}",
        "filter": flt,
        "reason": reason,
        "evidence": json.dumps(evidence),
        "duplicate_of": dup,
        "prompt_text": f"rejected prompt {i} {EVIL}",
        "completion_text": f"rejected completion {i}",
    }


def make_version(root: Path) -> Path:
    """A version directory shaped like pipeline.build's output: two trained tasks, one held out, rejects."""
    vdir = root / "datasets" / "demo" / "abc123def456"
    vdir.mkdir(parents=True)
    train = _rows("qa<b>", 60, evil=True) + _rows("summarize", 30) + _rows("summarize", 12, start=0)
    evals = _rows("qa<b>", 6, start=100) + _rows("summarize", 3, start=100)
    heldout = _rows("nli", 20, start=200)
    for name, rows in (("train", train), ("eval", evals), ("heldout", heldout)):
        write_parquet(_frame(rows), vdir / f"{name}.parquet")
    rejects = [
        _reject("qa<b>", 500, "quality", "empty_completion", {"rule": "empty_completion"}),
        _reject("qa<b>", 501, "quality", "too_long", {"chars": 90000, "max": 8000}),
        _reject("summarize", 502, "exact_dedup", "duplicate", {"hash": "ab12"}, dup="summarize:3"),
        _reject("summarize", 503, "exact_dedup", "duplicate", {"hash": "ab13"}, dup="summarize:4"),
        _reject("qa<b>", 504, "decontaminate", "benchmark:gsm8k", {"benchmark": "gsm8k", "item": 17, "ngram": EVIL}),
    ]
    write_parquet(pl.DataFrame(rejects, schema=REJECT_SCHEMA), vdir / "rejects.parquet")
    plan = [
        {"task": "qa<b>", "available": 62, "rate": 62.0, "share": 0.6666, "target": 60, "repeats": 0, "remainder": 0,
         "cap_binds": False, "upsampled": False, "avg_tokens": 20.5, "estimated_tokens": 1230},
        {"task": "summarize", "available": 30, "rate": 30.0, "share": 0.3334, "target": 42, "repeats": 1, "remainder": 12,
         "cap_binds": True, "upsampled": True, "avg_tokens": 12.0, "estimated_tokens": 504},
    ]  # fmt: skip
    manifest = {
        "format": 2,
        "version_id": "abc123def456",
        "name": "demo",
        "card_version": "1.0.0",
        "mode": "instruction",
        "cardtune": "0.1.0",
        "created": "2026-05-09T10:00:00+00:00",
        "card_path": "cards/demo.yaml",
        "inputs": {
            "card": {"name": "demo"},
            "templates": {"qa<b>/t0": "sha256:" + "1" * 64},
            "sources": {"qa<b>": "sha256:" + "2" * 64},
            "other": {},
            "curation_format": 2,
        },
        "tasks": [
            {"name": "qa<b>", "held_out": False, "templates": ["qa<b>/t0", "qa<b>/t1"]},
            {"name": "summarize", "held_out": False, "templates": ["summarize/t0"]},
            {"name": "nli", "held_out": True, "templates": ["nli/t0"]},
        ],
        "counts": {
            "source": {"qa<b>": 72, "summarize": 37, "nli": 20},
            "rendered": {"qa<b>": 71, "summarize": 35, "nli": 20},
            "filters": [  # in pipeline order
                {"name": "quality", "dropped": {"qa<b>": 2}},
                {"name": "exact_dedup", "dropped": {"summarize": 2}},
                {"name": "decontaminate", "dropped": {"qa<b>": 1}},
            ],
            "splits": {
                "train": {"qa<b>": 60, "summarize": 42},
                "eval": {"qa<b>": 6, "summarize": 3},
                "heldout": {"nli": 20},
            },
        },
        "tokens": {"unit": "words", "train": {"qa<b>": 1300, "summarize": 480}},
        "mixture": {"strategy": "examples_proportional", "plan": plan},
        "filter_reports": {
            "quality": {"dropped": 2, "by_rule": {"empty_completion": 1, "too_long": 1}},
            "exact_dedup": {"scope": "both", "duplicates": 2, "clusters": 2},
            "decontaminate": {
                "mode": "drop",
                "ngram": 13,
                "benchmarks": [
                    {
                        "benchmark": "gsm8k",
                        "items": 1319,
                        "items_too_short": 0,
                        "items_matched": 1,
                        "rows_matched": 1,
                        "rows_dropped": 1,
                        "examples": [{"source_ref": "qa<b>:504", "item_id": "17", "ngram": EVIL, "where": "prompt"}],
                    },
                    {
                        "benchmark": "mmlu",
                        "items": 14042,
                        "items_too_short": 3,
                        "items_matched": 0,
                        "rows_matched": 0,
                        "rows_dropped": 0,
                        "examples": [],
                    },
                ],
                "canary_rows": 0,
                "rows_dropped": 1,
            },
        },
        "timings": [
            {"step": "load + render", "seconds": 0.5},
            {"step": "quality", "seconds": 0.1},
            {"step": "split + mix", "seconds": 0.05},
            {"step": "write", "seconds": 0.2},
        ],
        "files": {"train.parquet": "sha256:" + "3" * 64},
    }
    # through the model, exactly as a build writes it (a fixture that drifts from the contract fails here)
    (vdir / "manifest.json").write_text(Manifest.model_validate(manifest).to_json(), encoding="utf-8")
    return vdir


@pytest.fixture
def version(tmp_path: Path) -> Path:
    return make_version(tmp_path)


def _section(page: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert match, f"no section {sid}"
    return match.group(1)


def test_writes_report_with_a_chart_per_section(version: Path) -> None:
    out = write_report(version)
    assert out == version / "report.html"
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for sid in ("mixture", "funnel", "lengths", "rejects"):
        assert "<svg" in _section(page, sid), sid
    assert _section(page, "mixture").count("<svg") >= 3  # composition + examples + tokens
    assert _section(page, "lengths").count("<svg") == 3  # one histogram per task
    assert "<title>" in page  # tooltips
    for name in ("qa&lt;b&gt;", "summarize", "nli", "gsm8k", "mmlu", "abc123def456", "instruction"):
        assert name in page, name
    assert "upsampled 1× +12" in page
    assert "benchmark:gsm8k" in _section(page, "rejects")
    assert "summarize:3" in page  # duplicate_of evidence
    assert not list(version.glob(".report.html.*"))  # no temp file left


def test_escapes_untrusted_text(version: Path) -> None:
    page = render_report(version)
    assert "<script" not in page.lower()
    assert "<b>bold</b>" not in page and "qa<b>" not in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page


def test_loads_nothing_from_the_network(version: Path) -> None:
    page = render_report(version)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "@import" not in page and "url(" not in page
    assert "http://" not in page and "https://" not in page


def test_deterministic_and_custom_output(version: Path, tmp_path: Path) -> None:
    first = write_report(version).read_bytes()
    other = write_report(version, tmp_path / "out" / "r.html")
    assert other == tmp_path / "out" / "r.html"
    assert other.read_bytes() == first
    assert write_report(version).read_bytes() == first


def test_finetune_mode_and_no_rejects(tmp_path: Path) -> None:
    vdir = make_version(tmp_path)
    for split in ("train", "eval", "heldout"):
        frame = pl.read_parquet(vdir / f"{split}.parquet")
        frame = frame.with_columns(
            pl.col("prompt").list.eval(pl.element().struct.field("content")).list.join("\n"),
            pl.col("completion").list.eval(pl.element().struct.field("content")).list.join("\n"),
        )
        write_parquet(frame, vdir / f"{split}.parquet")
    write_parquet(pl.DataFrame(schema=REJECT_SCHEMA), vdir / "rejects.parquet")
    manifest = read_manifest(vdir)
    counts = manifest.counts.model_copy(update={"filters": ()})
    changed = manifest.model_copy(update={"mode": "finetune", "filter_reports": {}, "counts": counts})
    (vdir / "manifest.json").write_text(changed.to_json(), encoding="utf-8")
    page = render_report(vdir)
    assert "No rows were rejected" in page
    assert 'id="filter-reports"' not in page
    assert "Question 0 about summarize" in page
