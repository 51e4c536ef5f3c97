"""The sandbox's guards: checks run before a filter, global, string method or format spec could allocate more
than the limits allow (``sandbox_limits.py``), and the bounded ``range``, ``join`` and formatters that replace
Jinja's own. ``sandbox.py`` installs them in the environment.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable
from typing import Any

from jinja2 import pass_context
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedFormatter
from jinja2.utils import _PassArg
from markupsafe import EscapeFormatter

from cardtune.curate.templating.sandbox_limits import (
    MAX_FORMAT_WIDTH,
    MAX_JSON_INDENT,
    MAX_RANGE,
    TemplateLimitError,
    _charged,
    _size,
    check_data,
)

# ---------------------------------------------------------------------------------------------- format specs


def _width(digits: str) -> None:
    if len(digits) > 6 or int(digits) > MAX_FORMAT_WIDTH:
        raise TemplateLimitError(f"format width or precision {digits} is too large (at most {MAX_FORMAT_WIDTH:,})")


def _printf_widths(fmt: str) -> int:
    """Check every width/precision of the ``%`` conversions in ``fmt`` (as CPython parses them); their sum."""
    total = 0
    i, n = 0, len(fmt)
    while True:
        i = fmt.find("%", i)
        if i < 0:
            return total
        i += 1
        if i < n and fmt[i] == "(":  # a mapping key: parentheses nest, as in CPython
            depth, i = 1, i + 1
            while i < n and depth:
                depth += {"(": 1, ")": -1}.get(fmt[i], 0)
                i += 1
        while i < n and fmt[i] in "-+ #0":
            i += 1
        for part in range(2):  # width, then precision
            if part == 1:
                if i >= n or fmt[i] != ".":
                    break
                i += 1
            if i < n and fmt[i] == "*":
                raise TemplateLimitError("`*` widths in `%` formats are not allowed; write the width")
            j = i
            while i < n and "0" <= fmt[i] <= "9":
                i += 1
            if i > j:
                _width(fmt[j:i])
                total += int(fmt[j:i])
        while i < n and fmt[i] in "hlL":
            i += 1
        i += 1  # the conversion character


def _check_printf(fmt: str, args: Any) -> None:
    check_data(args)
    _size(len(fmt) + _printf_widths(fmt), "this `%` format")


_DIGITS = re.compile(r"\d+")


def _check_spec(spec: str) -> None:
    for digits in _DIGITS.findall(spec):
        _width(digits)


class _BoundedFormatter(SandboxedFormatter):
    """``str.format`` in the sandbox: data only, bounded widths, bounded total output."""

    def __init__(self, env: Any, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self.total = 0

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        check_data(value)
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        check_data(value)
        _check_spec(format_spec)
        text = super().format_field(value, format_spec)
        self.total += len(text)
        _size(self.total, "this `format`")
        return text


class _BoundedEscapeFormatter(_BoundedFormatter, EscapeFormatter):
    pass


# ---------------------------------------------------------------------------------------------- filters and globals


def bounded_range(*args: int) -> range:
    """``range`` with at most ``MAX_RANGE`` items."""
    rng = range(*args)
    try:
        n = len(rng)
    except OverflowError:
        n = MAX_RANGE + 1
    if n > MAX_RANGE:
        raise TemplateLimitError(f"range of more than {MAX_RANGE:,} items")
    return rng


_Check = Callable[..., tuple[tuple[Any, ...], dict[str, Any]] | None]


def _check_center(context: Context, value: Any, width: Any = 80) -> None:
    if isinstance(width, int):
        _size(width, "`center`")


def _check_indent(context: Context, s: Any, width: Any = 4, first: Any = False, blank: Any = False) -> None:
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    text = str(s)
    _size(len(text) + (text.count("\n") + 1) * pad, "`indent`")


def _check_wordwrap(
    context: Context,
    s: Any,
    width: Any = 79,
    break_long_words: Any = True,
    wrapstring: Any = None,
    break_on_hyphens: Any = True,
) -> None:
    text = str(s)
    sep = len(wrapstring) if isinstance(wrapstring, str) else 1
    step = width if isinstance(width, int) and width > 0 else 1
    lines = min(len(text) + 1, len(text) // step + text.count(" ") + text.count("\n") + 1)
    _size(len(text) + lines * sep, "`wordwrap`")


def _grown_by_replace(text: Any, old: Any, new: Any, count: Any) -> int | None:
    """Length of ``text.replace(old, new, count)``, or ``None`` when the types don't fit (the call raises)."""
    try:
        occurrences = len(text) + 1 if len(old) == 0 else text.count(old)
        if isinstance(count, int) and count >= 0:
            occurrences = min(occurrences, count)
        return int(len(text) + occurrences * (len(new) - len(old)))
    except TypeError:
        return None


def _check_replace(context: Context, s: Any, old: Any, new: Any, count: Any = None) -> None:
    n = _grown_by_replace(str(s), str(old), str(new), count)
    if n is not None:
        _size(n, "`replace`")


def _check_format(context: Context, value: Any, *args: Any, **kwargs: Any) -> None:
    _check_printf(str(value), kwargs or args)


def _check_join(
    context: Context, value: Any, d: Any = "", attribute: Any = None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    items = list(value)
    if attribute is not None:
        getter = make_attrgetter(context.environment, attribute)
        items = [getter(item) for item in items]
    total = len(str(d)) * max(len(items) - 1, 0)
    for item in items:
        if not isinstance(item, str):
            check_data(item)
        total += len(item if isinstance(item, str) else str(item))
    _size(total, "`join`")
    return (items, d), {}


def _join_filter(general: Callable[..., Any]) -> Callable[..., Any]:
    """``join``: a fast path for a list of strings (the common case), else ``general`` (the guarded filter)."""

    @pass_context
    def join(context: Context, value: Any, d: Any = "", attribute: Any = None) -> Any:
        if (
            attribute is None
            and type(d) is str
            and type(value) in (list, tuple)
            and not context.eval_ctx.autoescape
            and all(type(x) is str for x in value)
        ):
            _size(sum(map(len, value)) + len(d) * max(len(value) - 1, 0), "`join`")
            return _charged(context, d.join(value))
        return general(context, value, d, attribute)

    join.__doc__ = general.__doc__
    return join


def _check_groups(context: Context, value: Any, count: Any, fill_with: Any = None) -> None:
    if isinstance(count, int) and count > MAX_RANGE:
        raise TemplateLimitError(f"`batch` / `slice` into more than {MAX_RANGE:,} items")


def _check_string(context: Context, value: Any) -> None:
    check_data(value)


def _check_tojson(context: Context, value: Any, indent: Any = None) -> None:
    if isinstance(indent, int) and indent > MAX_JSON_INDENT:
        raise TemplateLimitError(f"`tojson` indent {indent:,} is too large (at most {MAX_JSON_INDENT})")


def _check_sum(context: Context, iterable: Any, attribute: Any = None, start: Any = 0) -> None:
    if not isinstance(start, (int, float, decimal.Decimal)):
        raise TemplateLimitError("`sum` adds numbers only (summing lists or strings is quadratic); use `join`")


_CHECKS: dict[str, _Check] = {
    "center": _check_center,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "replace": _check_replace,
    "format": _check_format,
    "join": _check_join,
    "batch": _check_groups,
    "slice": _check_groups,
    "string": _check_string,
    "pprint": _check_string,
    "tojson": _check_tojson,
    "sum": _check_sum,
}
"""Filters that can build large or address-bearing text, and the check that runs before each."""


def _guarded(original: Callable[..., Any], check: _Check) -> Callable[..., Any]:
    """``original`` behind ``check``, its result counted. A context filter: never folded at compile time."""
    pass_arg = _PassArg.from_obj(original)

    @pass_context
    def guarded(context: Context, *args: Any, **kwargs: Any) -> Any:
        changed = check(context, *args, **kwargs)
        if changed is not None:
            args, kwargs = changed
        if pass_arg is _PassArg.context:
            result = original(context, *args, **kwargs)
        elif pass_arg is _PassArg.eval_context:
            result = original(context.eval_ctx, *args, **kwargs)
        elif pass_arg is _PassArg.environment:
            result = original(context.environment, *args, **kwargs)
        else:
            result = original(*args, **kwargs)
        return _charged(context, result)

    guarded.__name__ = getattr(original, "__name__", "filter")
    guarded.__doc__ = original.__doc__
    return guarded


_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _check_str_method(owner: str | bytes, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a string method call whose result would be too large; the (possibly materialized) arguments."""
    if name in _WIDTH_METHODS:
        if args and isinstance(args[0], int):
            _size(args[0], f"`{name}`")
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tab, int):
            tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
            _size(len(owner) + tabs * max(tab, 0), "`expandtabs`")
    elif name == "replace" and len(args) >= 2:
        grown = _grown_by_replace(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
        if grown is not None:
            _size(grown, "`replace`")
    elif name == "join" and len(args) == 1:
        items = list(args[0])
        total = len(owner) * max(len(items) - 1, 0)
        total += sum(len(x) for x in items if isinstance(x, (str, bytes)))
        _size(total, "`join`")
        return (items,)
    return args
