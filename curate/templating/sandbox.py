"""The bounded sandbox templates render in: deterministic output and bounded work per render.

Templates are untrusted input. Jinja's ``ImmutableSandboxedEnvironment`` keeps them away from Python internals;
``BoundedSandbox`` (the class of ``jinja_env.ENV``) also keeps every build of the same inputs byte-identical and
every render bounded:

* No nondeterminism. The ``random`` filter and the ``lipsum``, ``cycler`` and ``joiner`` globals are gone
  (``refused_features`` names them at load, with the line), and nothing that is code rather than data may be
  printed: a method, function, class, iterator or other object whose text would be a memory address
  (``{{ text.format_map }}``, ``{{ items | reverse }}``) is a ``NotDataError`` instead of ``<... at 0x7f...>``.
  The check covers ``{{ }}`` output, ``~``, ``%``, ``format``, ``str.format``, ``join``, ``string`` and ``pprint``.
* Bounded work (every limit is a module constant in ``sandbox_limits.py``, and exceeding one is a ``TemplateLimitError`` — a
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

import types
from collections.abc import Callable, Iterable, Iterator
from functools import update_wrapper
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context, LoopContext, Undefined, markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment
from markupsafe import Markup

from cardtune.curate.templating.sandbox_guards import (
    _CHECKS,
    _BoundedEscapeFormatter,
    _BoundedFormatter,
    _check_printf,
    _check_str_method,
    _guarded,
    _join_filter,
    bounded_range,
)
from cardtune.curate.templating.sandbox_limits import (
    _SELF_CONTAINED,
    _SIZED,
    _SMALL,
    MAX_INT_BITS,
    MAX_RENDER_CHARS,
    MAX_STEPS,
    REFUSED_FILTERS,
    REFUSED_GLOBALS,
    TemplateLimitError,
    _budget,
    _charged,
    _finalize,
    _size,
    check_data,
)

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
