"""The one sandboxed Jinja environment templates render in, its filters, and stable per-row hashing.

Owns: ``ENV`` (``sandbox.BoundedSandbox`` + ``StrictUndefined``: no unsafe attributes, rows or answer choices
cannot be mutated by a template, nothing nondeterministic prints, and every render is bounded), the filters
templates may use (``options`` in several FLAN-style layouts, ``letter``, a deterministic ``choice``,
``most_frequent``), a static check that rejects ``_``-prefixed attribute access before anything runs (the
refused filters and globals are ``sandbox.refused_features``), and ``stable_hash``.

No unseeded randomness: every "random" choice a filter makes reads the per-row hash the renderer puts in the
context under ``ROW_HASH`` (derived from seed, task, row key and template id), so reruns are byte-identical.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import xxhash
from jinja2 import StrictUndefined, nodes, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from cardtune.curate.rows import ROW_HASH  # the context variable holding the per-row hash options/choice read
from cardtune.curate.templating.sandbox import BoundedSandbox

PROVIDED = frozenset({"answer_choices", ROW_HASH})
"""Names the renderer supplies itself; templates use them without declaring them as inputs."""

PROTECTOR = "3ed2dface8203c4c9dfb1a5dc58e41e0"
"""What a split marker (``|||``) inside a row's text value stands in for while a template renders, so only the
template's own markers split (promptsource's ``Template.pipe_protector``: the same text, so outputs agree)."""

OPTION_STYLES = ("flan", "bullets", "letters", "letters_dot", "numbers", "inline")
"""Explicit styles for ``options``; ``random`` (the default) picks one of these per row, stably."""

HEADERS = (
    "OPTIONS:",
    "Options:",
    "Choose from:",
    "Pick from:",
    "Select from the following.",
    "Possible answers:",
    "Choices:",
    "Available choices:",
)
BULLETS = ("- ", "* ", "+ ")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` that is the same on every machine and run (xxh3 over their text)."""
    return int(xxhash.xxh3_64_intdigest("\x1f".join(str(p) for p in parts).encode("utf-8")))


def _row_hash(ctx: Context) -> int:
    value = ctx.get(ROW_HASH, 0)
    return value if isinstance(value, int) else 0


def _letter(index: int) -> str:
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(LETTERS):
        raise ValueError(f"letter: expected an index 0..{len(LETTERS) - 1}, got {index!r}")
    return LETTERS[index]


def format_options(choices: Sequence[Any], style: str, h: int, header: bool | None = None) -> str:
    """Format ``choices`` as an options block in ``style``; ``h`` picks headers/bullets for the varied styles."""
    items = [str(c) for c in choices]
    if not items:
        raise ValueError("options: the list of choices is empty")
    if style == "random":
        style = OPTION_STYLES[(h >> 8) % len(OPTION_STYLES)]
    if style == "flan":
        return "OPTIONS:\n" + "\n".join(f"- {c}" for c in items)
    if style == "inline":
        return (
            items[0] if len(items) == 1 else ", ".join(items[:-1]) + f"{',' if len(items) > 2 else ''} or {items[-1]}"
        )
    if style == "bullets":
        bullet = BULLETS[(h >> 24) % len(BULLETS)]
        body = "\n".join(f"{bullet}{c}" for c in items)
        header = True if header is None else header
    elif style == "letters":
        body = "\n".join(f"({_letter(i)}) {c}" for i, c in enumerate(items))
    elif style == "letters_dot":
        body = "\n".join(f"{_letter(i)}. {c}" for i, c in enumerate(items))
    elif style == "numbers":
        body = "\n".join(f"{i + 1}. {c}" for i, c in enumerate(items))
    else:
        from cardtune.curate.errors import did_you_mean

        known = (*OPTION_STYLES, "random")
        raise ValueError(f"options: unknown style {style!r}{did_you_mean(style, known)}; use one of {', '.join(known)}")
    if header:
        return HEADERS[(h >> 16) % len(HEADERS)] + "\n" + body
    return body


@pass_context
def _options_filter(ctx: Context, choices: Sequence[Any], style: str = "random", header: bool | None = None) -> str:
    """``{{ answer_choices | options }}`` (a stable per-row style) or ``| options('letters')``."""
    return format_options(choices, style, _row_hash(ctx), header)


@pass_context
def _choice_filter(ctx: Context, seq: Sequence[Any]) -> Any:
    """A per-row stable pick from ``seq`` (promptsource's ``choice``, minus the unseeded randomness)."""
    items = list(seq)
    if not items:
        raise ValueError("choice: the sequence is empty")
    return items[(_row_hash(ctx) >> 32) % len(items)]


def _most_frequent(items: Sequence[Any]) -> list[Any]:
    """Items tied for the highest count, in first-seen order (promptsource's ``most_frequent``)."""
    counts = Counter(items).most_common()
    if not counts:
        return []
    top = counts[0][1]
    return [item for item, n in counts if n == top]


def make_env() -> SandboxedEnvironment:
    """A fresh sandboxed environment with cardtune's filters (templates compile against ``ENV``).

    ``BoundedSandbox`` (``sandbox.py``): no unseeded randomness or memory addresses in the output, and bounded
    work per render (sizes, widths, loop iterations, calls, time); ``refused_features`` is its load-time check.
    """
    env = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["options"] = _options_filter
    env.filters["letter"] = _letter
    env.filters["choice"] = _choice_filter
    env.filters["most_frequent"] = _most_frequent
    env.globals["zip"] = zip  # promptsource templates use it
    return env


ENV = make_env()


def unsafe_access(ast: nodes.Template) -> tuple[str, int] | None:
    """``_``-prefixed attribute/item accesses (``''.__class__.__mro__``) in ``ast``: (names, first line)."""
    found: list[tuple[int, str]] = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            name: object = node.attr
        else:
            arg = getattr(node, "arg", None)
            name = arg.value if isinstance(arg, nodes.Const) else None
        if isinstance(name, str) and name.startswith("_"):
            found.append((node.lineno, name))
    if not found:
        return None
    names = list(dict.fromkeys(name for _, name in reversed(found)))  # outermost first -> source order
    return ", ".join(repr(n) for n in names), min(line for line, _ in found)
