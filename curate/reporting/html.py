"""``cardtune report``: one self-contained ``report.html`` per dataset version, with inline-SVG charts.

The page fetches nothing (no scripts, fonts or stylesheets from the network; CSS and SVG are inline), escapes
every piece of user text, and is deterministic: the same version directory always gives the same bytes (it
shows the build time from the manifest, never the time it was generated). Chart sections live in
:mod:`cardtune.curate.reporting.sections`, SVG primitives in :mod:`cardtune.curate.reporting.svg`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

import cardtune
from cardtune.curate.reporting.sections import Raw, card, funnel, legend, lengths, mixture, table, tag, total
from cardtune.curate.reporting.svg import Bar, Group, Segment, color, esc, hbars, pct
from cardtune.curate.reporting.tables import clip, filter_names
from cardtune.curate.rows import COMPLETION, PROMPT, TASK
from cardtune.curate.store import versions as store
from cardtune.curate.store.manifest import Manifest

SAMPLES_PER_TASK = 3
EXAMPLES_PER_REASON = 2
EXAMPLES_MAX = 12
ROLES = ("system", "user", "assistant", "tool")


def write_report(version_dir: Path, output: Path | None = None) -> Path:
    """Write the report of a version (default ``<version_dir>/report.html``) atomically; return its path."""
    version_dir = Path(version_dir)
    page = render_report(version_dir)
    output = Path(output) if output is not None else version_dir / "report.html"
    if output.is_dir() or str(output).endswith(("/", os.sep)):  # -o DIR: the report goes inside it
        output = output / "report.html"
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return output


def render_report(version_dir: Path) -> str:
    """The whole page as one string (deterministic for a given version directory)."""
    version_dir = Path(version_dir)
    m = store.read_manifest(version_dir)
    colors = {t.name: color(i) for i, t in enumerate(m.tasks)}
    sections = [
        (
            "mixture",
            "Mixture",
            "Requested vs realized share of the train split, by examples and by tokens.",
            mixture(m, colors),
        ),
        (
            "funnel",
            "Filter funnel",
            "Rows from the sources through rendering and each filter into the splits.",
            funnel(m),
        ),
        (
            "lengths",
            "Lengths",
            "Characters of prompt + completion per row, as a share of each split's rows.",
            lengths(version_dir, m),
        ),
        *_roles(version_dir, m),
        (
            "rejects",
            "Rejects",
            "Every dropped row is kept in rejects.parquet with its filter, reason and evidence.",
            _rejects(version_dir, colors),
        ),
    ]
    if m.filter_reports:
        lede = "What each filter reported (e.g. decontamination per benchmark)."
        sections.append(("filter-reports", "Filter reports", lede, filter_reports(m)))
    sections.append(("samples", "Samples", "The first stored rows of each task.", samples(version_dir, m, colors)))
    toc = (
        "".join(f'<a href="#{sid}">{title}</a>' for sid, title, _, _ in sections)
        + '<a href="#provenance">Provenance</a>'
    )
    body = "".join(
        f'<section id="{sid}"><h2>{title}</h2><p class="lede">{lede}</p>{html}</section>'
        for sid, title, lede, html in sections
    )
    css = resources.files("cardtune.curate.reporting").joinpath("assets/report.css").read_text(encoding="utf-8")
    title = f"{m.name} {m.card_version} · {m.version_id[:12]} · cardtune report"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
        f"<style>{css}</style></head><body>{_header(m)}<main>"
        f'<nav class="toc">{toc}</nav>{kpis(m)}{body}{_footer(m)}</main></body></html>\n'
    )


def _roles(version_dir: Path, m: Manifest) -> list[tuple[str, str, str, str]]:
    """The "Tokens per role" section, for versions with conversation rows (none otherwise)."""
    from cardtune.curate.reporting.roles import ROLES, ROWS, role_tokens

    stats, unit = role_tokens(version_dir, m)
    if not stats.height:
        return []
    head = ["split", "task", ROWS, *ROLES]
    rows = ([r[c] for c in head] for r in stats.iter_rows(named=True))
    lede = f"Tokens ({unit}) of the conversation rows per role: system, user, assistant, tool results."
    return [("roles", "Tokens per role", esc(lede), card(table(head, rows, [False, False, *[True] * 5])))]


def _header(m: Manifest) -> str:
    items = [
        ("version", f"<code>{esc(m.version_id)}</code>"),
        ("mode", f"<b>{esc(m.mode)}</b>"),
        ("mixture", f"<b>{esc(m.mixture.strategy)}</b>"),
        ("built", f"<b>{esc(m.created)}</b>"),
        ("cardtune", f"<b>{esc(m.cardtune)}</b>"),
    ]
    if m.card_path:
        items.append(("card", f"<code>{esc(m.card_path)}</code>"))
    meta = "".join(f"<span>{k} {v}</span>" for k, v in items)
    name = f'{esc(m.name)} <span class="ver">{esc(m.card_version)}</span>'
    return f'<header class="top"><div class="wrap"><h1>{name}</h1><div class="meta">{meta}</div></div></header>'


def kpis(m: Manifest) -> str:
    c, tokens = m.counts, m.tokens
    items = [
        ("source rows", total(c.source)),
        ("rendered", total(c.rendered)),
        ("dropped by filters", sum(f.total for f in c.filters)),
        *((f"{s} rows", total(per_task)) for s, per_task in c.splits.items()),
        (f"train {tokens.unit}", total(tokens.train)),
    ]
    tiles = "".join(f'<div class="kpi"><div class="v">{v:,}</div><div class="k">{esc(k)}</div></div>' for k, v in items)
    return f'<div class="kpis">{tiles}</div>'


def _rejects(version_dir: Path, colors: Mapping[str, str]) -> str:
    """Rejected rows by filter and reason (stacked by task), the counts table, and examples with evidence."""
    rejects = pl.read_parquet(version_dir / "rejects.parquet")
    if rejects.height == 0:
        return card('<p class="empty">No rows were rejected.</p>')
    # rejects.parquet is written in pipeline order, so first appearance is the filter order
    rank = {f: i for i, f in enumerate(rejects["filter"].unique(maintain_order=True).to_list())}
    rejects = rejects.with_columns(pl.col("filter").replace_strict(rank, return_dtype=pl.Int64).alias("_rank"))
    rejects = rejects.sort("_rank", "reason", TASK, "source_ref", maintain_order=True)
    agg = rejects.group_by("_rank", "filter", "reason", TASK).len().sort("_rank", "reason", TASK)
    groups = []
    for (flt,), by_filter in agg.group_by("filter", maintain_order=True):
        bars = []
        for (reason,), by_reason in by_filter.group_by("reason", maintain_order=True):
            segs = [
                Segment(r["len"], colors.get(r[TASK], "#999"), f"{flt} · {reason} · {r[TASK]}: {r['len']:,} rows")
                for r in by_reason.iter_rows(named=True)
            ]
            bars.append(Bar(segs, f"{int(by_reason['len'].sum()):,}", str(reason)))
        groups.append(Group(str(flt), bars))
    chart = hbars(groups, label="rejected rows by filter and reason", label_w=130, sub_w=190, note_w=80, integer=True)
    seen = set(agg[TASK].to_list())
    counts = table(
        ["filter", "reason", "task", "rows"],
        ([r["filter"], r["reason"], r[TASK], r["len"]] for r in agg.iter_rows(named=True)),
        [False, False, False, True],
        ["all", "", "", rejects.height],
    )
    firsts = rejects.group_by("_rank", "reason", maintain_order=True).head(EXAMPLES_PER_REASON)
    examples = list(firsts.iter_rows(named=True))
    shown = examples[:EXAMPLES_MAX]
    lede = f'<p class="lede">{len(shown)} of {rejects.height:,} rejects; all are in <code>rejects.parquet</code>.</p>'
    return (
        card(legend((t, col) for t, col in colors.items() if t in seen) + chart)
        + card(counts)
        + card(lede + "".join(reject_example(r, colors) for r in shown), "Examples with evidence")
    )


def reject_example(r: Mapping[str, Any], colors: Mapping[str, str]) -> str:
    evidence = r.get("evidence") or ""
    with contextlib.suppress(ValueError, TypeError):  # not JSON: show it as it is
        evidence = json.dumps(json.loads(evidence), indent=2, ensure_ascii=False, sort_keys=True)
    dup = f"<span>duplicate of <code>{esc(r['duplicate_of'])}</code></span>" if r.get("duplicate_of") else ""
    head = tag(r["filter"], "bad") + tag(r["reason"]) + _task_tag(r[TASK], colors)
    text = (
        f'<div class="lbl">prompt</div><pre>{esc(clip(r.get("prompt_text"), 600))}</pre>'
        f'<div class="lbl">completion</div><pre>{esc(clip(r.get("completion_text"), 300))}</pre>'
    )
    return (
        f'<div class="ex"><div class="head">{head}<code>{esc(r["source_ref"])}</code>{dup}</div><div class="cols">'
        f'<div>{text}</div><div><div class="lbl">evidence</div><pre>{esc(clip(evidence, 1200))}</pre></div></div></div>'
    )


def _task_tag(task: str, colors: Mapping[str, str]) -> str:
    return tag(task, "task", colors.get(task, "#667085"))


def _cell(value: Any) -> object:
    """A report value as a table cell: records and mappings as compact ``key: value`` lines."""
    if isinstance(value, Mapping):
        value = [value]
    if isinstance(value, list):
        if not value:
            return ""
        lines = [
            ", ".join(f"{k}: {clip(v, 80)}" for k, v in item.items()) if isinstance(item, Mapping) else clip(item, 120)
            for item in value[:5]
        ]
        lines += [f"… {len(value) - 5} more"] if len(value) > 5 else []
        return Raw("<br>".join(f"<code>{esc(line)}</code>" for line in lines))
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, int) else clip(value, 240)


def filter_reports(m: Manifest) -> str:
    """Each filter's own report: scalars as key/value rows, lists of records as tables (e.g. per benchmark)."""
    reports = m.filter_reports
    out = []
    for name in [f for f in filter_names(m) if f in reports]:
        rep = reports[name]
        scalars = "".join(f"<span><b>{esc(k)}</b> {_kv(v)}</span>" for k, v in rep.items() if not _is_records(v))
        parts = [f'<div class="kv">{scalars}</div>'] if scalars else []
        for key, records in ((k, v) for k, v in rep.items() if _is_records(v)):
            cols = list(dict.fromkeys(c for r in records for c in r))
            cols.sort(key=lambda c: any(isinstance(r.get(c), (list, Mapping)) for r in records))  # nested last
            numeric = [all(type(r.get(c)) in (int, float) for r in records) for c in cols]
            rows = ([_cell(r.get(c, "")) for c in cols] for r in records)
            parts.append(f'<div class="lbl">{esc(key)}</div>' + table(cols, rows, numeric))
        out.append(card("".join(parts), esc(name)))
    return "".join(out)


def _kv(value: Any) -> str:
    cell = _cell(value)
    return str(cell) if isinstance(cell, Raw) else esc(f"{cell:,}" if type(cell) is int else cell)


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def samples(version_dir: Path, m: Manifest, colors: Mapping[str, str]) -> str:
    """The first rows of each task (train, else eval; held-out tasks from heldout)."""
    cards = []
    for t in m.tasks:
        name, rows, split = t.name, [], ""
        for split in ("heldout",) if t.held_out else ("train", "eval"):
            scan = pl.scan_parquet(version_dir / f"{split}.parquet").filter(pl.col(TASK) == name)
            rows = scan.head(SAMPLES_PER_TASK).collect().to_dicts()
            if rows:
                break
        if rows:
            head = f"{_task_tag(name, colors)} {tag(split)}"
            cards.append(card("".join(_sample(r) for r in rows), head))
    return "".join(cards) or card('<p class="empty">No rows to show.</p>')


def _sample(r: Mapping[str, Any]) -> str:
    head = f"<code>{esc(r.get('source_ref', ''))}</code>"
    head += tag(f"template {r['template_id']}") if r.get("template_id") else ""
    body = f'<div class="lbl">prompt</div>{_payload(r.get(PROMPT))}'
    body += f'<div class="lbl">completion</div>{_payload(r.get(COMPLETION))}'
    if r.get("answer_choices"):
        body += '<div class="lbl">answer choices</div>' + "".join(tag(clip(a, 80)) for a in r["answer_choices"])
    return f'<div class="ex"><div class="head">{head}</div>{body}</div>'


def _payload(value: Any) -> str:
    """A prompt/completion: message lists as role-tagged blocks, strings as preformatted text."""
    if not value:
        return '<p class="empty">(empty)</p>'
    if not isinstance(value, list):
        return f"<pre>{esc(clip(value, 1500))}</pre>"
    out = []
    for msg in value:
        role = str(msg.get("role", "")) if isinstance(msg, Mapping) else ""
        content = msg.get("content", "") if isinstance(msg, Mapping) else msg
        cls = role if role in ROLES else ""
        out.append(
            f'<div class="msg {cls}"><div class="role">{esc(role)}</div><pre>{esc(clip(content, 1500))}</pre></div>'
        )
    return "".join(out)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _footer(m: Manifest) -> str:
    whole = sum(t.seconds for t in m.timings)
    rows = [[t.step, f"{t.seconds:.2f}", pct(t.seconds / whole) if whole else ""] for t in m.timings]
    steps = (
        table(["step", "seconds", "share"], rows, [False, True, True], ["total", f"{whole:.2f}", ""]) if rows else ""
    )
    details = "".join(
        f"<details><summary>{label}</summary><pre>{esc(_json(value))}</pre></details>"
        for value, label in ((m.inputs.model_dump(mode="json"), "inputs (hashes)"), (m.files, "files (sha256)"))
    )
    return (
        f'<section id="provenance"><h2>Provenance</h2><div class="grid2">{card(steps, "Build timings")}'
        f"{card(details, 'Inputs and files')}</div></section>"
        f"<footer>Generated by cardtune {esc(cardtune.__version__)} from version {esc(m.version_id)}. "
        "Self-contained: no scripts, no network. Hover a bar or a histogram bin for exact numbers.</footer>"
    )
