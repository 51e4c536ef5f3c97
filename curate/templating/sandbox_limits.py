"""The sandbox's limits and its data check: the bounds every render lives within (module constants), the
per-render budget on the Jinja ``Context``, the errors a template that exceeds one gets, and the check that only
data — never code or an object's address — is printed. ``sandbox.py`` (the environment) and
``sandbox_guards.py`` (the checks of filters, globals and format specs) apply them.
"""

from __future__ import annotations

import datetime
import decimal
import time
import types
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn, cast

from jinja2 import pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, Undefined

MAX_RANGE = 10_000
"""Items one ``range(...)`` may have; also the most ``batch`` / ``slice`` groups (Jinja's default: 100,000)."""
MAX_TEXT = 10_000_000
"""Characters (or items) one string or list built by a template may have."""
MAX_RENDER_CHARS = 50_000_000
"""Characters one render may print and build in all (a loop's literal text counts once per iteration)."""
MAX_STEPS = 100_000
"""Loop iterations plus calls (methods, macros, ``range``, ...) one render may make."""
MAX_SECONDS = 5.0
"""Wall-clock seconds one render may take (checked at each loop iteration and call)."""
MAX_INT_BITS = 10_000
"""Bits an integer built by ``**`` or ``*`` may have (about 3,000 decimal digits)."""
MAX_FORMAT_WIDTH = 10_000
"""Largest width or precision in a ``%`` / ``format`` / ``str.format`` spec."""
MAX_JSON_INDENT = 100
"""Largest ``tojson(indent)``."""

REFUSED_FILTERS = {
    "random": "it is unseeded, so two builds would differ; `choice` is a stable per-row pick",
    "urlize": "it makes HTML links, and its output is not bounded by its input",
}
"""Jinja filters that are not available in templates, and why (``refused_features`` reports them at load)."""
REFUSED_GLOBALS = {
    "lipsum": "it generates random text, so two builds would differ",
    "cycler": "its state makes output depend on render order; use `loop.cycle(...)` inside a for-loop",
    "joiner": "its state makes output depend on render order; use `loop.first` / `loop.last` inside a for-loop",
}
"""Jinja globals that are not available in templates, and why."""
_SELF_CONTAINED = "a template is self-contained: extends, include and import are not available"


class TemplateLimitError(SecurityError):
    """A render went past one of the limits above."""

    def __init__(self, message: str) -> None:
        super().__init__(f"render limit: {message}")


class NotDataError(SecurityError):
    """A template tried to print code (a method, function, iterator, ...) instead of data."""


# ---------------------------------------------------------------------------------------------- budget

_BUDGET = "_cardtune_budget"


class _Budget:
    """The work one render has done so far (kept on its ``Context``)."""

    __slots__ = ("chars", "deadline", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.chars = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TemplateLimitError(f"more than {MAX_STEPS:,} loop iterations and calls in one render")
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"one render took longer than {MAX_SECONDS:g} s")

    def charge(self, n: int) -> None:
        self.chars += n
        if self.chars > MAX_RENDER_CHARS:
            raise TemplateLimitError(f"one render printed and built more than {MAX_RENDER_CHARS:,} characters")


def _budget(context: Context) -> _Budget:
    state = context.__dict__
    budget = state.get(_BUDGET)
    if budget is None:
        budget = state[_BUDGET] = _Budget()
    return budget


def _size(n: int, what: str) -> None:
    """Refuse building a value of ``n`` characters/items (before it is built)."""
    if n > MAX_TEXT:
        raise TemplateLimitError(f"{what} would build {n:,} characters or items (at most {MAX_TEXT:,} in one value)")


_SIZED = (str, bytes, list, tuple, dict)


_SMALL = 4096
"""Values shorter than this are not counted when built (only when printed in a loop, or combined by ``~``,
``+``, ``%``): a discarded small value cannot add up to anything, and counting it would slow every render."""


def _charged(context: Context, value: Any) -> Any:
    """``value``, after counting its size against the render's budget (strings, bytes, lists, dicts)."""
    if isinstance(value, _SIZED):
        n = len(value)
        if n >= _SMALL:
            _size(n, "this expression")
            _budget(context).charge(n)
    return value


# ---------------------------------------------------------------------------------------------- data check

_LEAVES: tuple[type, ...] = (
    str,
    int,
    float,
    complex,
    type(None),
    bytes,
    decimal.Decimal,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    range,
)
_CONTAINERS: tuple[type, ...] = (list, tuple, type({}.keys()), type({}.values()), type({}.items()))


def check_data(value: Any) -> None:
    """Raise unless ``value`` is data whose text is the same on every run (nested lists/dicts of scalars).

    Undefined values raise Jinja's usual ``UndefinedError``; code (methods, functions, classes), iterators and
    other objects raise ``NotDataError``, since their text is a memory address.
    """
    if isinstance(value, _LEAVES):
        return
    stack = [value]
    seen = 0
    while stack:
        item = stack.pop()
        if isinstance(item, _LEAVES):
            continue
        seen += 1
        if seen > MAX_TEXT:
            raise TemplateLimitError(f"a value with more than {MAX_TEXT:,} nested items")
        if isinstance(item, Undefined):
            _undefined(item)
        elif isinstance(item, _CONTAINERS):
            stack.extend(cast("Iterable[Any]", item))
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            raise NotDataError(_not_data(item))


def _undefined(value: Undefined) -> NoReturn:
    value._fail_with_undefined_error()
    raise AssertionError("unreachable")  # pragma: no cover


def _not_data(value: Any) -> str:
    name = getattr(value, "__name__", None)
    named = f" {name!r}" if isinstance(name, str) else ""
    if isinstance(value, type):
        what, hint = f"the class{named}", "call it, or print a field"
    elif isinstance(value, (types.BuiltinMethodType, types.MethodType, types.FunctionType)) or callable(value):
        what, hint = f"the method or function{named}", "call it (add `(...)`), or print a field"
    elif isinstance(value, Iterator):
        what, hint = f"a {type(value).__name__} (an iterator)", "add `| list` to print its items"
    else:
        what, hint = f"a {type(value).__name__} object", "print one of its fields"
    return (
        f"cannot print {what}: it is code, not data, and its text would be a memory address that differs between "
        f"builds; {hint}"
    )


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    """Every ``{{ }}`` output: data only, counted against the render's budget."""
    if not isinstance(value, str):
        if isinstance(value, (bytes, bytearray)):  # a binary column: its Python repr (b'...') is no text
            raise NotDataError("prints bytes (a binary column) as a Python repr (b'...'); decode the column first")
        check_data(value)
        value = str(value)
    budget = context.__dict__.get(_BUDGET) or _budget(context)
    budget.chars += len(value)
    if budget.chars > MAX_RENDER_CHARS:
        budget.charge(0)
    return value
