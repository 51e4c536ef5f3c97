"""The bounded sandbox templates render in: deterministic output and bounded work per render.

Templates are untrusted input. Jinja's ``ImmutableSandboxedEnvironment`` keeps them away from Python internals;
``BoundedSandbox`` (the class of ``jinja_env.ENV``) also keeps every build of the same inputs byte-identical and
every render bounded:

* No nondeterminism. The ``random`` filter and the ``lipsum``, ``cycler`` and ``joiner`` globals are gone
  (``refused_features`` names them at load, with the line), and nothing that is code rather than data may be
  printed: a method, function, class, iterator or other object whose text would be a memory address
  (``{{ text.format_map }}``, ``{{ items | reverse }}``) is a ``NotDataError`` instead of ``<... at 0x7f...>``.
  The check covers ``{{ }}`` output, ``~``, ``%``, ``format``, ``str.format``, ``join``, ``string`` and ``pprint``.
* Bounded work (every limit is a module constant below, and exceeding one is a ``TemplateLimitError`` — a
  ``SecurityError``, so the renderer reports it with the template id, part, line, task and row):
  ``**`` and integer ``*`` (result size in bits), ``*`` and ``+`` on strings/lists and the string methods and
  filters that grow text (``center``, ``ljust``, ``replace``, ``join``, ``indent``, ``wordwrap``, ...: result
  length, checked before anything is allocated), widths and precisions in ``%`` / ``format`` / ``str.format``
  specs, ``range`` length, and per render: loop iterations plus calls (recursive macros included), characters
  printed or built, and wall-clock time. Jinja folds constant expressions at compile time, so the optimizer is
  off and every bounded operation is intercepted (never folded): ``{{ 9**(9**9) }}`` compiles instantly and
  fails when rendered.

* Row data cannot change. A template may change only the lists and dicts it builds itself (``[...]`` and
  ``{...}`` literals, which render as ``LocalList`` / ``LocalDict``): ``{% set names = [] %}{{ names.append(x)
  or "" }}`` works (promptsource templates collect items so), ``{{ row_list.append(x) }}`` is a
  ``SecurityError``. Such a change lives and dies with the one render, and its size is bounded like any value.

A "render" is one part (prompt, completion, system, answer choices) of one row: its budget lives on the Jinja
``Context`` that render creates, so nothing leaks between rows and parallel renders.
"""

from __future__ import annotations

import datetime
import decimal
import re
import time
import types
from collections.abc import Callable, Iterable, Iterator
from functools import update_wrapper
from typing import Any, NoReturn, cast

from jinja2 import nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context, LoopContext, Undefined, markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment, SandboxedFormatter
from jinja2.utils import _PassArg
from markupsafe import EscapeFormatter, Markup

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


# ---------------------------------------------------------------------------------------------- local data


class LocalList(list[Any]):
    """A list a template built (a ``[...]`` literal): it prints as a list, and only the template may change it."""

    __slots__ = ()


class LocalDict(dict[Any, Any]):
    """A dict a template built (a ``{...}`` literal); see ``LocalList``."""

    __slots__ = ()


_LOCAL = (LocalList, LocalDict)
_LOCAL_CHANGES = frozenset(
    {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", "update", "setdefault", "popitem"}
)
"""Methods that change a list or dict: allowed on ``LocalList`` / ``LocalDict`` only."""


def _local_change(owner: LocalList | LocalDict, name: str, args: tuple[Any, ...]) -> None:
    """Refuse growing a template's own list or dict past ``MAX_TEXT`` items (checked before it grows)."""
    if name in ("extend", "update") and args and isinstance(args[0], _SIZED):
        _size(len(owner) + len(args[0]), f"`.{name}`")
    elif name in ("append", "insert", "setdefault"):
        _size(len(owner) + 1, f"`.{name}`")


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


# ---------------------------------------------------------------------------------------------- compiling


_FAST_OUTPUT_LEN = _SMALL
"""Outside loops, a ``{{ }}`` whose value is a str shorter than this skips the finalize call (speed)."""
_FAST_OUTPUTS = 256
"""... in a template with at most this many ``{{ }}``: so at most ~1M characters are printed uncounted."""


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with every for-loop's iterable counted, ``~`` checked, and outputs finalized.

    Jinja forbids custom node types, so a loop's iterable is recognized by identity when ``visit_For`` visits
    it, and wrapped in ``environment.cardtune_iter(context, <iterable>, <weight>)``; the weight is the loop
    body's literal text, charged once per iteration. Outputs inside loops (and blocks) always go through the
    counting ``finalize``; elsewhere a short ``str`` is printed directly (the common case, kept as fast as
    plain Jinja), anything else through ``finalize``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop_iters: dict[int, int] = {}  # id(For.iter) -> weight
        self._fast = False

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        self._fast = sum(len(out.nodes) for out in node.find_all(nodes.Output)) <= _FAST_OUTPUTS
        super().visit_Template(node, frame)

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        key = id(node.iter)
        self._loop_iters[key] = sum(len(str(d.data)) for stmt in node.body for d in stmt.find_all(nodes.TemplateData))
        try:
            super().visit_For(node, frame)
        finally:
            del self._loop_iters[key]

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        weight = self._loop_iters.get(id(node)) if isinstance(node, nodes.Expr) else None
        if weight is None:
            return super().visit(node, *args, **kwargs)
        self.write("environment.cardtune_iter(context, ")
        super().visit(node, *args, **kwargs)
        self.write(f", {weight})")
        return None

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.cardtune_local_list(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.cardtune_local_dict(")
        super().visit_Dict(node, frame)
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.cardtune_concat(context, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def _fast_output(self, frame: Frame) -> bool:
        eval_ctx = frame.eval_ctx
        return (
            self._fast
            and not self._loop_iters
            and frame.block is None
            and not (eval_ctx.volatile or eval_ctx.autoescape)
        )

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if self._fast_output(frame):
            self.write("(_ct_out if type(_ct_out := ")
        else:
            super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if self._fast_output(frame):
            self.write(
                f") is str and len(_ct_out) < {_FAST_OUTPUT_LEN} else str(environment.finalize(context, _ct_out)))"
            )
        else:
            super()._output_child_post(node, frame, finalize)


def _counted(context: Context, iterable: Iterable[Any], weight: int) -> Iterator[Any]:
    budget = _budget(context)
    for item in iterable:
        budget.steps += 1
        budget.chars += weight
        if budget.steps > MAX_STEPS or budget.chars > MAX_RENDER_CHARS or not budget.steps & 31:
            budget.step()  # raises on the step or time limit
            budget.charge(0)  # ... or on the character limit
        yield item


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """``ImmutableSandboxedEnvironment`` with deterministic output and bounded work (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _CodeGenerator

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(optimized=False, finalize=_finalize, **kwargs)
        self.globals["range"] = bounded_range
        for name in REFUSED_GLOBALS:
            self.globals.pop(name, None)
        for name in REFUSED_FILTERS:
            self.filters.pop(name, None)
        for name, check in _CHECKS.items():
            self.filters[name] = _guarded(self.filters[name], check)
        self.filters["join"] = _join_filter(self.filters["join"])

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr in _LOCAL_CHANGES and isinstance(obj, (LocalList, LocalDict)):  # the template's own data
            return SandboxedEnvironment.is_safe_attribute(self, obj, attr, value)
        return super().is_safe_attribute(obj, attr, value)

    # called by compiled templates (see _CodeGenerator)
    @staticmethod
    def cardtune_local_list(items: list[Any]) -> LocalList:
        return LocalList(items)

    @staticmethod
    def cardtune_local_dict(items: dict[Any, Any]) -> LocalDict:
        return LocalDict(items)

    def cardtune_iter(self, context: Context, iterable: Any, weight: int) -> Any:
        if isinstance(iterable, Undefined):
            return iterable  # iterating it raises the usual "is undefined" error
        return _counted(context, iterable, weight)

    def cardtune_concat(self, context: Context, parts: tuple[Any, ...]) -> Any:
        texts: list[str] = []
        total = 0
        for part in parts:
            if isinstance(part, str):
                text = part
            else:
                check_data(part)
                text = str(part)
            total += len(text)
            texts.append(text)
        _size(total, "`~`")
        _budget(context).charge(total)
        if context.eval_ctx.autoescape:
            return markup_join(parts)
        return "".join(texts)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                bits = left.bit_length() * right
                if bits > MAX_INT_BITS:
                    raise TemplateLimitError(
                        f"`**` would build an integer of about {bits:,} bits (at most {MAX_INT_BITS:,})"
                    )
        elif operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                bits = left.bit_length() + right.bit_length()
                if bits > MAX_INT_BITS:
                    raise TemplateLimitError(
                        f"`*` would build an integer of about {bits:,} bits (at most {MAX_INT_BITS:,})"
                    )
            elif isinstance(left, (str, bytes, list, tuple)) and isinstance(right, int):
                _size(len(left) * max(right, 0), "`*`")
            elif isinstance(right, (str, bytes, list, tuple)) and isinstance(left, int):
                _size(len(right) * max(left, 0), "`*`")
        elif operator == "+":
            if isinstance(left, (str, bytes, list, tuple)) and isinstance(right, (str, bytes, list, tuple)):
                _size(len(left) + len(right), "`+`")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        result = self.binop_table[operator](left, right)
        if isinstance(result, (int, float)):
            return result
        return _charged(context, result)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _budget(context).step()
        if isinstance(obj, LoopContext) and args:  # `loop(children)` in a recursive for-loop
            args = (self.cardtune_iter(context, args[0], 0), *args[1:])
        elif isinstance(obj, types.BuiltinMethodType) and isinstance(getattr(obj, "__self__", None), (str, bytes)):
            owner: Any = obj.__self__
            args = _check_str_method(owner, obj.__name__, args, kwargs)
        elif isinstance(obj, types.BuiltinMethodType) and isinstance(getattr(obj, "__self__", None), _LOCAL):
            local: Any = obj.__self__
            _local_change(local, obj.__name__, args)
        return _charged(context, super().call(context, obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` / ``format_map`` through ``_BoundedFormatter`` (data only, bounded widths)."""
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        f_self: Any = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type: type[str] = type(f_self)
        is_format_map = value.__name__ == "format_map"
        env = self

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            formatter: _BoundedFormatter
            if isinstance(f_self, Markup):
                formatter = _BoundedEscapeFormatter(env, escape=f_self.escape)
            else:
                formatter = _BoundedFormatter(env)
            return str_type(formatter.vformat(f_self, args, kwargs))

        return update_wrapper(wrapper, value)


# ---------------------------------------------------------------------------------------------- load-time check


def refused_features(ast: nodes.Template) -> list[tuple[int, str]]:
    """(line, reason) for each use of a refused filter or global, or of extends/include/import, in ``ast``."""
    found: list[tuple[int, str]] = []
    for node in ast.find_all((nodes.Filter, nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        if not isinstance(node, nodes.Filter):
            found.append((node.lineno, _SELF_CONTAINED))
            continue
        names = [node.name]
        if node.name == "map" and node.args and isinstance(node.args[0], nodes.Const):
            names.append(node.args[0].value)
        for name in names:
            if name in REFUSED_FILTERS:
                found.append((node.lineno, f"the `{name}` filter is not available: {REFUSED_FILTERS[name]}"))
    assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    refused = set(REFUSED_GLOBALS) - assigned  # (meta.find_undeclared_variables fails on unknown filters)
    for name_node in ast.find_all(nodes.Name):
        if name_node.name in refused and name_node.ctx == "load":
            refused.discard(name_node.name)
            reason = REFUSED_GLOBALS[name_node.name]
            found.append((name_node.lineno, f"`{name_node.name}` is not available: {reason}"))
    return sorted(found)
