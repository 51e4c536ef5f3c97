"""Dataset versions in the studio: finding them, their report sections, browsing rejects, and diffs.

The charts and tables are the HTML report's own (``cardtune.curate.reporting``: mixture, filter funnel, lengths,
filter reports, samples), so the studio and ``cardtune report`` always agree. What the studio adds is reading
``rejects.parquet`` interactively: by filter, reason and task, page by page, each row with its evidence, the
decontamination n-gram marked where it occurs in the row's text.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from cardtune.curate.errors import UserInputError
from cardtune.curate.store import versions as store
from cardtune.curate.store.manifest import Manifest

PAGE = 25
_COMPONENT = re.compile(r"^[A-Za-z0-9_.\-]+$")


def version_dir(output_dir: Path, name: str, vid: str) -> Path:
    """``<output>/<name>/<vid>`` for a complete version; a name with a path in it is refused."""
    for part in (name, vid):
        if not _COMPONENT.match(part) or part.startswith("."):
            raise UserInputError(f"{part!r}: not a version name or id")
    vdir = output_dir / name / vid
    if not store.is_complete(vdir):
        raise UserInputError(f"{name}/{vid}: no such dataset version under {output_dir}")
    return vdir


def report_sections(vdir: Path, m: Manifest) -> list[tuple[str, str, str]]:
    """(id, title, HTML) of the report's chart sections for a version."""
    from cardtune.curate.reporting.html import filter_reports, kpis, samples
    from cardtune.curate.reporting.sections import funnel, lengths, mixture
    from cardtune.curate.reporting.svg import color

    colors = {t.name: color(i) for i, t in enumerate(m.tasks)}
    out = [
        ("kpis", "", kpis(m)),
        ("funnel", "Filter funnel", funnel(m)),
        ("mixture", "Mixture", mixture(m, colors)),
        ("lengths", "Lengths", lengths(vdir, m)),
    ]
    if m.filter_reports:
        out.append(("filter-reports", "Filter reports", filter_reports(m)))
    out.append(("samples", "Samples", samples(vdir, m, colors)))
    return out


@dataclass(frozen=True)
class Facet:
    """One (filter, reason) with its count of rejected rows."""

    filter: str
    reason: str
    rows: int


def _rejects(vdir: Path) -> pl.DataFrame:
    return pl.read_parquet(vdir / "rejects.parquet").with_row_index("row")


def facets(vdir: Path) -> list[Facet]:
    """Rejected rows per (filter, reason), filters in the order they ran."""
    r = _rejects(vdir)
    if r.height == 0:
        return []
    agg = r.group_by("filter", "reason", maintain_order=True).len()
    return [Facet(x["filter"], x["reason"], x["len"]) for x in agg.iter_rows(named=True)]


@dataclass(frozen=True)
class RejectPage:
    """One page of rejected rows matching a filter/reason/task/text query."""

    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int


def rejects_page(
    vdir: Path, flt: str = "", reason: str = "", task: str = "", query: str = "", page: int = 1
) -> RejectPage:
    """Rejected rows matching the query (exact filter/reason/task, a substring of the text or ref)."""
    r = _rejects(vdir)
    for col, value in (("filter", flt), ("reason", reason), ("task", task)):
        if value:
            r = r.filter(pl.col(col) == value)
    if query:
        q = pl.lit(query)
        hay = pl.col("source_ref").cast(pl.String) + "\n" + pl.col("prompt_text").fill_null("")
        r = r.filter(hay.str.contains(q, literal=True))
    pages = max((r.height + PAGE - 1) // PAGE, 1)
    page = min(max(page, 1), pages)
    rows = r.slice((page - 1) * PAGE, PAGE).to_dicts()
    return RejectPage(rows, r.height, page, pages)


@dataclass(frozen=True)
class RejectDetail:
    """One rejected row: its fields, its evidence (pretty JSON), and its texts with the match marked."""

    row: dict[str, Any]
    evidence: str
    prompt: list[tuple[str, bool]]
    completion: list[tuple[str, bool]]
    match: str | None


def reject(vdir: Path, index: int) -> RejectDetail:
    """Row ``index`` of ``rejects.parquet``."""
    r = _rejects(vdir)
    if not 0 <= index < r.height:
        raise UserInputError(f"rejects.parquet has no row {index}")
    row = r.row(index, named=True)
    raw = row.get("evidence") or ""
    parsed: Any = None
    with contextlib.suppress(ValueError, TypeError):
        parsed = json.loads(raw)
    evidence = json.dumps(parsed, indent=2, ensure_ascii=False, sort_keys=True) if parsed is not None else raw
    match = parsed.get("ngram") if isinstance(parsed, dict) else None
    match = match if isinstance(match, str) else (parsed.get("canary") if isinstance(parsed, dict) else None)
    pattern = _pattern(match) if isinstance(match, str) else None
    return RejectDetail(
        row,
        evidence,
        marked(row.get("prompt_text") or "", pattern),
        marked(row.get("completion_text") or "", pattern),
        match if isinstance(match, str) else None,
    )


def _pattern(ngram: str) -> re.Pattern[str] | None:
    """The n-gram as a regex over the raw text: its words in order, any non-word characters between them (the
    filter matched normalized text: lowercased, punctuation and spacing folded)."""
    words = re.findall(r"\w+", ngram)
    if not words:
        return None
    return re.compile(r"\W+".join(re.escape(w) for w in words), re.IGNORECASE)


def marked(text: str, pattern: re.Pattern[str] | None) -> list[tuple[str, bool]]:
    """``text`` as (run, is part of a match) pieces."""
    if pattern is None:
        return [(text, False)]
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            out.append((text[pos : m.start()], False))
        out.append((m.group(0), True))
        pos = m.end()
    out.append((text[pos:], False))
    return [piece for piece in out if piece[0]]


def diff(output_dir: Path, a: str, b: str) -> tuple[Manifest, Manifest, list[Any]]:
    """Two versions (``name/id``) and what changed between them (``cardtune diff``'s changes)."""
    from cardtune.curate.store.diff import diff_manifests

    ma = store.read_manifest(version_dir(output_dir, *_split_ref(a)))
    mb = store.read_manifest(version_dir(output_dir, *_split_ref(b)))
    return ma, mb, diff_manifests(ma, mb)


def _split_ref(ref: str) -> tuple[str, str]:
    name, sep, vid = ref.partition("/")
    if not sep:
        raise UserInputError(f"{ref!r}: expected <name>/<version id>")
    return name, vid
