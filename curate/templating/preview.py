"""Template previews on real rows: which rows to show, and where each source field landed in the rendered text.

Owns the field markers behind ``cardtune templates render``'s colours and ``cardtune studio``'s workbench: string
values (and strings inside lists) are wrapped in private-use markers before rendering, and ``segments`` splits a
rendered text back into (text, field index) runs, so each front end colours them its own way. Rendering itself is
``render.render_row`` (the same sandbox and render limits as a build); previews never render any other way.
A filter that needs the plain value (``| int``, a length test on a marked string) makes the marked render fail; the
preview then renders the plain row, without colours (``Preview.marked`` says which happened).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cardtune.curate.templating.jinja_env import stable_hash
from cardtune.curate.templating.library import Template
from cardtune.curate.templating.plan import DEFAULT_FEW_SHOT_K, exemplar_indices, row_hash
from cardtune.curate.templating.render import Rendered, RenderError, render_row

OPEN, SEP, CLOSE = "\ue000", "\ue001", "\ue002"


def mark(value: Any, i: int) -> Any:
    """``value`` with its strings wrapped in field ``i``'s markers (other values unchanged)."""
    if isinstance(value, str):
        return f"{OPEN}{i}{SEP}{value}{CLOSE}"
    if isinstance(value, list):
        return [mark(v, i) for v in value]
    return value


def segments(text: str) -> list[tuple[str, int | None]]:
    """Split a marked text into runs: (text, index of the field it came from, or ``None`` for template text)."""
    out: list[tuple[str, int | None]] = []
    stack: list[int] = []
    pos = 0
    while pos < len(text):
        nxt = min((p for p in (text.find(OPEN, pos), text.find(CLOSE, pos)) if p != -1), default=len(text))
        if nxt > pos:
            out.append((text[pos:nxt], stack[-1] if stack else None))
        if nxt >= len(text):
            break
        if text[nxt] == OPEN:
            sep = text.index(SEP, nxt)
            stack.append(int(text[nxt + 1 : sep]))
            pos = sep + 1
        else:
            if stack:
                stack.pop()
            pos = nxt + 1
    return out


def strip_marks(text: str) -> str:
    """The text without markers."""
    return "".join(t for t, _ in segments(text))


@dataclass(frozen=True)
class Preview:
    """One row rendered for a preview: the rendering (marked when ``marked``), the row's ref and its exemplars."""

    source_ref: str
    rendered: Rendered
    marked: bool
    shots: int


def pick_rows(rows: Sequence[dict[str, Any]], n: int, seed: int = 0) -> list[int]:
    """Positions of ``n`` rows to preview: a stable spread over the source (``templates render``'s choice)."""
    order = sorted(range(len(rows)), key=lambda i: stable_hash(seed, rows[i]["source_ref"]))
    return order[:n]


def preview_row(
    t: Template,
    rows: Sequence[dict[str, Any]],
    i: int,
    *,
    task: str = "preview",
    seed: int = 0,
    shots: int = 0,
    mode: str = "instruction",
) -> Preview:
    """Render row ``i`` of ``rows`` through ``t`` as a build would (its row hash; with ``shots`` > 0, that many
    exemplars chosen as the build chooses them). Raises ``RenderError`` from the plain render."""
    ref = str(rows[i]["source_ref"])
    h = row_hash(seed, task, ref, t.id)
    picked: list[int] = []
    if shots and len(rows) > shots and not t.multi_turn:  # multi-turn templates are zero-shot
        picked = list(exemplar_indices(i, len(rows), shots, (seed, task, ref, t.id)))
    names = t.inputs
    marked = {n: mark(rows[i][n], k) for k, n in enumerate(names)}
    plain = {n: rows[i][n] for n in names}
    exemplars = [{n: rows[j][n] for n in names} for j in picked]
    try:
        return Preview(ref, render_row(t, marked, h, exemplars, mode), True, len(picked))
    except RenderError:
        return Preview(ref, render_row(t, plain, h, exemplars, mode), False, len(picked))


DEFAULT_SHOTS = DEFAULT_FEW_SHOT_K
