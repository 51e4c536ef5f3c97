"""Inline-SVG chart primitives for the HTML report: no scripts, no external resources, no dependencies.

Every chart is a plain ``<svg>`` string with a ``viewBox`` (it scales with its container), ``<title>`` children
as hover tooltips, and every piece of text escaped. Coordinates are rounded so the output is byte-stable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

# Tableau 10: distinguishable, print- and colour-blind-friendlier than most defaults.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
SPLIT_COLORS = {"train": "#4e79a7", "eval": "#59a14f", "heldout": "#b07aa1"}
DROP_COLORS = ("#e15759", "#f28e2b", "#d4a017", "#ff9da7", "#9c755f", "#bab0ac")
MUTED = "#c9ced6"
CHAR_W = 6.6  # rough width of one character at font-size 12, for fitting labels


def color(i: int) -> str:
    """The ``i``-th categorical colour (cycling)."""
    return PALETTE[i % len(PALETTE)]


def esc(text: object) -> str:
    """Escape any value for use as SVG/HTML text or an attribute."""
    return escape(str(text), quote=True)


def fit(text: str, width: float) -> str:
    """``text`` clipped with an ellipsis to roughly ``width`` units at font-size 12."""
    n = max(1, int(width / CHAR_W))
    return text if len(text) <= n else text[: n - 1] + "…"


def num(x: float) -> str:
    """A coordinate: at most one decimal, no trailing zeros."""
    out = f"{x:.1f}".rstrip("0").rstrip(".")
    return "0" if out == "-0" else out


def count(n: float) -> str:
    """A compact count label: 950, 12.3k, 4.1M."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}" if n != int(n) else f"{int(n)}"


def pct(x: float) -> str:
    """A share as a percentage with sensible precision."""
    return f"{x:.1%}" if x >= 0.001 or x == 0 else f"{x:.2%}"


def nice_ticks(hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """Round tick values from 0 to at least ``hi`` (about ``n`` of them; whole steps when ``integer``)."""
    if hi <= 0:
        return [0.0, 1.0]
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    step = max(1.0, float(round(step))) if integer else step
    return [i * step for i in range(math.ceil(hi / step - 1e-9) + 1)]


def _open(width: float, height: float, label: str, cls: str = "chart") -> str:
    return (
        f'<svg class="{cls}" viewBox="0 0 {num(width)} {num(height)}" width="{num(width)}" '
        f'role="img" aria-label="{esc(label)}">'
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str = "", extra: str = "") -> str:
    title = f"<title>{esc(tip)}</title>" if tip else ""
    box = f'x="{num(x)}" y="{num(y)}" width="{num(max(w, 0))}" height="{num(h)}"'
    return f'<rect {box} fill="{fill}"{extra}>{title}</rect>'


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start") -> str:
    attrs = f' class="{cls}"' if cls else ""
    attrs += f' text-anchor="{anchor}"' if anchor != "start" else ""
    return f'<text x="{num(x)}" y="{num(y)}"{attrs}>{esc(text)}</text>'


@dataclass(frozen=True)
class Segment:
    """One piece of a stacked bar; ``label`` is drawn inside when it fits."""

    value: float
    fill: str
    tip: str = ""
    label: str = ""


@dataclass(frozen=True)
class Bar:
    """A (possibly stacked) bar with an optional left sub-label and a note after its end."""

    segments: Sequence[Segment]
    note: str = ""
    sublabel: str = ""


@dataclass(frozen=True)
class Group:
    """A labelled group of bars (e.g. one task: requested and realized)."""

    label: str
    bars: Sequence[Bar]
    tip: str = ""
    tags: Sequence[str] = field(default_factory=tuple)


def hbars(
    groups: Sequence[Group],
    *,
    label: str,
    width: float = 1000,
    scale_max: float | None = None,
    tick_fmt: Callable[[float], str] = count,
    label_w: float = 170,
    sub_w: float = 0,
    note_w: float = 170,
    bar_h: float = 16,
    integer: bool = False,
) -> str:
    """Horizontal (stacked) bars in labelled groups, with a value axis and gridlines (whole ticks if ``integer``)."""
    totals = [sum(s.value for s in b.segments) for g in groups for b in g.bars]
    hi = scale_max if scale_max is not None else max([*totals, 0.0])
    ticks = nice_ticks(hi, 5, integer) if scale_max is None else nice_ticks(scale_max, 4)
    top = ticks[-1] or 1.0
    x0 = label_w + sub_w
    plot_w = width - x0 - note_w
    body: list[str] = []
    y = 26.0
    for g in groups:
        g_top = y
        for b in g.bars:
            if b.sublabel:
                body.append(_text(x0 - 8, y + bar_h - 4, fit(b.sublabel, sub_w - 12), "sub", "end"))
            x = x0
            for s in b.segments:
                w = s.value / top * plot_w
                if w > 0:
                    body.append(_rect(x, y, w, bar_h, s.fill, s.tip, ' rx="2"'))
                    if s.label and w > len(s.label) * CHAR_W + 8:
                        body.append(_text(x + w / 2, y + bar_h - 4, s.label, "in", "middle"))
                x += w
            if b.note:
                body.append(_text(x + 6, y + bar_h - 4, fit(b.note, width - x - 8), "note"))
            y += bar_h + 4
        mid = (g_top + y - 4) / 2 + 4
        title = f"<title>{esc(g.tip or g.label)}</title>"
        body.append(f'<text x="0" y="{num(mid)}" class="glabel">{esc(fit(g.label, label_w - 8))}{title}</text>')
        y += 10
    height = y + 2
    grid = []
    for t in ticks:
        gx = x0 + t / top * plot_w
        grid.append(f'<line x1="{num(gx)}" y1="20" x2="{num(gx)}" y2="{num(height - 8)}" class="grid"/>')
        grid.append(_text(gx, 13, tick_fmt(t), "tick", "middle"))
    return _open(width, height, label) + "".join(grid) + "".join(body) + "</svg>"


def histogram(
    edges: Sequence[float],
    series: Sequence[tuple[str, str, Sequence[int]]],
    *,
    label: str,
    unit: str = "chars",
    overflow: bool = False,
    width: float = 540,
    height: float = 200,
) -> str:
    """Overlaid step histograms of several series on shared bins, as shares of each series' rows.

    ``series`` holds ``(name, colour, counts per bin)``; ``overflow`` marks the last bin as "≥ its left edge".
    """
    left, right, top_pad, bottom = 46.0, 12.0, 10.0, 30.0
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    n_bins = len(edges) - 1
    shares = [[c / (sum(counts) or 1) for c in counts] for _, _, counts in series]
    ymax = max([v for s in shares for v in s] + [0.0])
    yticks = nice_ticks(ymax or 0.01, 4)
    ytop = yticks[-1]
    base = top_pad + plot_h

    def px(i: int) -> float:
        return left + i / n_bins * plot_w

    def py(v: float) -> float:
        return base - v / ytop * plot_h

    out = [_open(width, height, label, "chart hist")]
    for t in yticks:
        out.append(
            f'<line x1="{num(left)}" y1="{num(py(t))}" x2="{num(width - right)}" y2="{num(py(t))}" class="grid"/>'
        )
        out.append(_text(left - 6, py(t) + 4, f"{t:.0%}" if ytop >= 0.05 else f"{t:.1%}", "tick", "end"))
    for (name, fill, _), vals in zip(series, shares, strict=True):
        d = [f"M{num(px(0))},{num(base)}"]
        for i, v in enumerate(vals):
            d.append(f"L{num(px(i))},{num(py(v))}L{num(px(i + 1))},{num(py(v))}")
        d.append(f"L{num(px(n_bins))},{num(base)}Z")
        out.append(
            f'<path d="{"".join(d)}" fill="{fill}" fill-opacity="0.22" stroke="{fill}" stroke-width="1.6">'
            f"<title>{esc(name)}</title></path>"
        )
    for i in range(n_bins):
        lo, hi = edges[i], edges[i + 1]
        rng = f"≥ {lo:,.0f}" if overflow and i == n_bins - 1 else f"{lo:,.0f}–{hi:,.0f}"
        lines = [f"{rng} {unit}"] + [
            f"{name}: {counts[i]:,} rows ({pct(vals[i])})"
            for (name, _, counts), vals in zip(series, shares, strict=True)
        ]
        out.append(_rect(px(i), top_pad, plot_w / n_bins, plot_h, "transparent", "\n".join(lines), ' class="hover"'))
    out.append(f'<line x1="{num(left)}" y1="{num(base)}" x2="{num(width - right)}" y2="{num(base)}" class="axis"/>')
    lo, hi = edges[0], edges[-2] if overflow else edges[-1]
    tstep = nice_ticks(max(hi - lo, 1e-9), 6)[1]
    for k in range(math.ceil(lo / tstep - 1e-9), math.floor(hi / tstep + 1e-9) + 1):
        x = left + (k * tstep - lo) / (edges[-1] - lo) * plot_w
        out.append(f'<line x1="{num(x)}" y1="{num(base)}" x2="{num(x)}" y2="{num(base + 4)}" class="axis"/>')
        out.append(_text(x, base + 16, count(k * tstep), "tick", "middle"))
    if overflow:
        out.append(_text(px(n_bins) - plot_w / n_bins / 2, base + 16, "+", "tick", "middle"))
    out.append(_text(width - right, height - 2, unit, "sub", "end"))
    return "".join(out) + "</svg>"
