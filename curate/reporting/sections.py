"""The chart sections of the HTML report (mixture, filter funnel, lengths) and the small HTML helpers they share.

Each section function takes the manifest (and the version directory where it needs rows) and returns an HTML
fragment of cards holding inline-SVG charts (from :mod:`cardtune.curate.reporting.svg`) and tables. All text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from cardtune.curate.reporting.svg import (
    DROP_COLORS,
    SPLIT_COLORS,
    Bar,
    Group,
    Segment,
    esc,
    hbars,
    histogram,
    nice_ticks,
    pct,
)
from cardtune.curate.reporting.tables import length_stats
from cardtune.curate.rows import COMPLETION, PROMPT, TASK, flat_text
from cardtune.curate.store import versions as store
from cardtune.curate.store.manifest import Manifest

HIST_BINS = 24
STAGE = "#667085"


class Raw(str):
    """A table cell that is already HTML (built from escaped parts); every other cell is escaped."""


def total(counts: Mapping[str, int]) -> int:
    return sum(counts.values())


def share_of(values: Mapping[str, float], key: str) -> float:
    whole = sum(values.values())
    return values.get(key, 0) / whole if whole else 0.0


def legend(items: Iterable[tuple[str, str]]) -> str:
    chips = "".join(f'<span><i style="background:{c}"></i>{esc(n)}</span>' for n, c in items)
    return f'<div class="legend">{chips}</div>'


def tag(text: str, cls: str = "", fill: str = "") -> str:
    style = f' style="background:{fill}"' if fill else ""
    return f'<span class="tag {cls}"{style}>{esc(text)}</span>'


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[object]],
    numeric: Sequence[bool] | None = None,
    footer: Sequence[object] | None = None,
) -> str:
    """An HTML table; ints get thousands separators, :class:`Raw` cells go in as they are."""
    flags = numeric or [False] * len(head)

    def cell(value: object, is_num: bool, tag: str = "td") -> str:
        if isinstance(value, Raw):
            text = str(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            text = f"{value:,}"
        else:
            text = esc(value)
        return f"<{tag}{' class=n' if is_num else ''}>{text}</{tag}>"

    def row(values: Sequence[object], cls: str = "") -> str:
        return f"<tr{cls}>" + "".join(cell(v, f) for v, f in zip(values, flags, strict=True)) + "</tr>"

    out = "".join(cell(h, f, "th") for h, f in zip(head, flags, strict=True))
    body = "".join(row(r) for r in rows) + (row(footer, " class=total") if footer is not None else "")
    return f"<div class=scroll><table><thead><tr>{out}</tr></thead><tbody>{body}</tbody></table></div>"


def card(body: str, title: str = "") -> str:
    return f'<div class="card">{f"<h3>{title}</h3>" if title else ""}{body}</div>'


def _one(value: float, fill: str, tip: str, note: str = "", sub: str = "") -> Bar:
    return Bar([Segment(value, fill, tip)], note, sub)


def _percent(v: float) -> str:
    return f"{v:.0%}"


def mixture(m: Manifest, colors: Mapping[str, str]) -> str:
    """Requested vs realized shares of train, by examples and by tokens: composition strips, bars, a table."""
    plan = m.mixture.plan
    if not plan:
        return card('<p class="empty">No mixture plan (no trained tasks).</p>')
    realized, tok = m.counts.splits.train, m.tokens.train
    unit = m.tokens.unit
    names = [p.task for p in plan]
    req_ex = {p.task: float(p.share) for p in plan}
    req_tok = {p.task: float(p.estimated_tokens) for p in plan}
    real_ex = {n: float(realized.get(n, 0)) for n in names}
    real_tok = {n: float(tok.get(n, 0)) for n in names}

    def strip(sub: str, shares: Mapping[str, float], what: str) -> Bar:
        segs = [Segment(share_of(shares, n), colors[n], f"{n}: {pct(share_of(shares, n))} of {what}", n) for n in names]
        return Bar(segs, sublabel=sub)

    strips = [
        Group("examples", [strip("requested", req_ex, "requested examples"), strip("realized", real_ex, "train")]),
        Group(unit, [strip("estimated", req_tok, f"estimated {unit}"), strip("realized", real_tok, f"train {unit}")]),
    ]
    composition = hbars(
        strips, label="mixture composition", scale_max=1.0, tick_fmt=_percent, label_w=90, sub_w=80, note_w=28, bar_h=22
    )

    def grouped(requested: Mapping[str, float], real: Mapping[str, float], what: str, ask: str) -> str:
        groups = []
        for p in plan:
            n = p.task
            rq, rl = share_of(requested, n), share_of(real, n)
            up = f" · ↻ {p.repeats}× +{p.remainder:,}" if p.upsampled else ""
            bars = [
                _one(rq, colors[n] + "66", f"{n}: {ask} {pct(rq)} of {what}", pct(rq), ask),
                _one(
                    rl, colors[n], f"{n}: realized {pct(rl)} ({real.get(n, 0):,.0f} {what})", pct(rl) + up, "realized"
                ),
            ]
            groups.append(Group(n, bars))
        return hbars(
            groups, label=f"share of {what}", width=520, tick_fmt=_percent, label_w=100, sub_w=76, note_w=130, bar_h=13
        )

    charts = card(grouped(req_ex, real_ex, "examples", "requested"), "Share of examples") + card(
        grouped(req_tok, real_tok, unit, "estimated"), f"Share of {esc(unit)}"
    )
    rows = []
    for p in plan:
        n = p.task
        notes = tag(f"upsampled {p.repeats}× +{p.remainder:,}", "warn") if p.upsampled else ""
        notes += tag("cap binds") if p.cap_binds else ""
        delta = (share_of(real_ex, n) - p.share) * 100
        rows.append(
            [
                n,
                p.available,
                f"{p.rate:.4g}",
                pct(p.share),
                p.target,
                realized.get(n, 0),
                pct(share_of(real_ex, n)),
                f"{delta:+.2f}",
                p.estimated_tokens,
                tok.get(n, 0),
                pct(share_of(real_tok, n)),
                Raw(notes),
            ]
        )
    head = [
        "task",
        "pool",
        "rate",
        "req. share",
        "target",
        "realized",
        "real. share",
        "Δ pp",
        f"est. {unit}",
        unit,
        f"{unit} share",
        "",
    ]
    held = [t.name for t in m.tasks if t.held_out]
    note = f'<p class="lede">Held out (never in train): {esc(", ".join(held))}.</p>' if held else ""
    return (
        card(legend((n, colors[n]) for n in names) + composition)
        + f'<div class="grid2">{charts}</div>'
        + card(table(head, rows, [False, *[True] * 10, False]) + note)
    )


def funnel(m: Manifest) -> str:
    """Rows from source through rendering and each filter into the splits: overall, per task, and a table."""
    c = m.counts
    drops = {f.name: f.dropped for f in c.filters}  # in the order the filters ran
    fcolor = {f: DROP_COLORS[i % len(DROP_COLORS)] for i, f in enumerate(drops)}
    split_n = {s: total(rows_of) for s, rows_of in c.splits.items()}
    src, rendered = total(c.source), total(c.rendered)
    lost = max(src - rendered, 0)
    groups = [
        Group("source", [_one(src, STAGE, f"source: {src:,} rows", f"{src:,}")]),
        Group(
            "rendered",
            [
                Bar(
                    [
                        Segment(rendered, STAGE, f"rendered: {rendered:,} rows"),
                        Segment(lost, "#e1575955", f"not rendered: {lost:,}"),
                    ],
                    f"{rendered:,}" + (f"  −{lost:,}" if lost else ""),
                )
            ],
        ),
    ]
    left = rendered
    for f, dropped_of in drops.items():
        d = total(dropped_of)
        left -= d
        tip = f"{f}: dropped {d:,} ({pct(d / (rendered or 1))} of rendered)"
        segs = [Segment(left, STAGE, f"{left:,} rows left after {f}"), Segment(d, fcolor[f], tip)]
        groups.append(Group(f"after {f}", [Bar(segs, f"{left:,}  −{d:,} ({pct(d / (rendered or 1))})")], tip))
    pool = left - split_n["eval"] - split_n["heldout"]
    parts = {"train pool": pool, "eval": split_n["eval"], "heldout": split_n["heldout"]}
    segs = [Segment(v, SPLIT_COLORS[k.split()[0]], f"{k}: {v:,} rows", k) for k, v in parts.items()]
    train = split_n["train"]
    how = f"{'upsampled' if train > pool else 'sampled'} from a pool of {pool:,}"
    groups += [
        Group("kept → splits", [Bar(segs, f"{left:,}")]),
        Group(
            "train (mixed)",
            [_one(train, SPLIT_COLORS["train"], f"train after mixing: {train:,}", f"{train:,} ({how})")],
        ),
    ]
    overall = hbars(groups, label="filter funnel, all tasks", label_w=150, note_w=230, bar_h=20, integer=True)

    per_task, rows = [], []
    for t in m.tasks:
        n = t.name
        base = c.rendered.get(n, 0)
        got = {s: rows_of.get(n, 0) for s, rows_of in c.splits.items()}
        dropped = {f: d.get(n, 0) for f, d in drops.items()}
        kept = max(base - sum(dropped.values()) - got["eval"] - got["heldout"], 0)
        segs = [Segment(kept / (base or 1), SPLIT_COLORS["train"], f"{n}: train pool {kept:,}")]
        segs += [Segment(got[s] / (base or 1), SPLIT_COLORS[s], f"{n}: {s} {got[s]:,}") for s in ("eval", "heldout")]
        segs += [
            Segment(d / (base or 1), fcolor[f], f"{n}: {f} dropped {d:,} ({pct(d / (base or 1))})")
            for f, d in dropped.items()
        ]
        note = f"{base:,} rendered · {pct(sum(dropped.values()) / (base or 1))} dropped"
        per_task.append(Group(n, [Bar(segs, note)]))
        label = esc(n) + (" " + tag("held out") if t.held_out else "")
        cells = [
            Raw(f"<span style='color:var(--bad)'>{d:,}</span>") if d else Raw("<span class=dim>0</span>")
            for d in dropped.values()
        ]
        rows.append([Raw(label), c.source.get(n, 0), base, *cells, *got.values()])
    keys = [("train pool", SPLIT_COLORS["train"]), ("eval", SPLIT_COLORS["eval"]), ("heldout", SPLIT_COLORS["heldout"])]
    keys += [(f"dropped: {f}", fcolor[f]) for f in drops]
    by_task = hbars(
        per_task, label="rows per task as a share of rendered rows", scale_max=1.0, tick_fmt=_percent, note_w=220
    )
    head = ["task", "source", "rendered", *[f"−{f}" for f in drops], *store.SPLITS]
    foot = ["all tasks", src, rendered, *(total(d) for d in drops.values()), *split_n.values()]
    return (
        card(overall, "All tasks")
        + card(legend(keys) + by_task, "Per task (share of rendered rows)")
        + card(table(head, rows, [False, *[True] * (len(head) - 1)], foot))
    )


def row_lengths(version_dir: Path) -> pl.DataFrame:
    """Per row: split, task and characters of prompt + completion (counted as ``length_stats`` does)."""
    frames = []
    for split in store.SPLITS:
        scan = pl.scan_parquet(version_dir / f"{split}.parquet")
        schema = scan.collect_schema()
        chars = (
            flat_text(PROMPT, schema[PROMPT]).str.len_chars()
            + flat_text(COMPLETION, schema[COMPLETION]).str.len_chars()
        )
        frames.append(scan.select(pl.lit(split).alias("split"), pl.col(TASK), chars.cast(pl.Int64).alias("chars")))
    return pl.concat(frames).collect(engine="streaming")  # streamed: the text columns are never all in memory


def bins(lo: int, hi: float, top: int) -> tuple[list[float], bool]:
    """About ``HIST_BINS`` whole-number bins from ``lo`` (rounded down) to ``hi``; an open last bin up to ``top``."""
    step = nice_ticks(max(hi - lo, 1.0), HIST_BINS, integer=True)[1]
    start = lo // step * step
    edges = [start + i * step for i in range(math.ceil((max(hi, lo + 1) - start) / step) + 1)]
    overflow = top > edges[-1]
    return ([*edges, edges[-1] + step] if overflow else edges), overflow


def lengths(version_dir: Path, m: Manifest) -> str:
    """Per task: a histogram of row lengths per split (shared bins, the last one open) and the length stats."""
    per_row, stats = row_lengths(version_dir), length_stats(version_dir)
    cards = []
    for t in m.tasks:
        name = t.name
        rows = per_row.filter(pl.col(TASK) == name)
        if rows.height == 0:
            continue
        values = rows["chars"].to_numpy()
        edges, overflow = bins(int(values.min()), float(np.quantile(values, 0.99)), int(values.max()))
        step = edges[1] - edges[0]
        series = []
        for split in store.SPLITS:
            v = rows.filter(pl.col("split") == split)["chars"].to_numpy()
            if len(v):
                idx = np.minimum(((v - edges[0]) // step).astype(np.int64), len(edges) - 2)
                series.append((split, SPLIT_COLORS[split], np.bincount(idx, minlength=len(edges) - 1).tolist()))
        chart = histogram(edges, series, label=f"length histogram of {name}", overflow=overflow)
        st = stats.filter(pl.col(TASK) == name) if stats.height else stats
        cols = ("mean", "median", "p95", "max")
        body = ([r["split"], r["rows"], *(f"{r[k]:,.0f}" for k in cols)] for r in st.iter_rows(named=True))
        stats_table = table(["split", "rows", *cols], body, [False, True, True, True, True, True])
        cards.append(card(legend((s, col) for s, col, _ in series) + chart + stats_table, esc(name)))
    return f'<div class="grid2">{"".join(cards)}</div>' if cards else card('<p class="empty">All splits are empty.</p>')
