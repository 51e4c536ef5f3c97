"""The vectorized fast path of ``render_task``: "simple" templates rendered column-wise with polars.

Owns: ``plan`` (decides, per template and source schema, whether a template is simple, and translates its
parsed Jinja AST into polars expressions), ``render_group`` (one template's rows at once) and ``FastEngine``
(the ``engine.Engine`` that renders a plan slice this way, or declines).

A template is simple when every part (system, prompt, completion) is only ``Output`` nodes made of literal text
(``TemplateData``, ``Const`` str/int) and expressions with an exact polars equivalent:

* ``{{ name }}`` of a declared input whose column is a string or integer dtype (``str()`` of an int is its
  decimal text, as polars casts it);
* ``{{ name | trim }}`` (Python's ``str.strip``: polars ``strip_chars`` with Python's whitespace set);
* ``{{ answer_choices[i] }}`` with static answer choices, ``{{ ["a", "b"][i] }}`` and ``{{ i | letter }}``
  with ``i`` an integer input: a lookup with Python's index semantics (negative indices count from the end,
  except into ``answer_choices``, where they are an error on the Jinja path);
* ``{{ answer_choices | options("letters") }}`` over static choices in a style that reads no row hash
  (``HASH_FREE_STYLES``): a constant, formatted once by the same ``format_options`` the filter calls.

A `jinja` template is simple when its whole text is such a part and its one split marker is literal text
(``_split_parts``): the text before and after the marker become the prompt and completion parts.

Anything else — control flow, other filters (``choice``, ``options`` with the default ``random`` style or
``bullets``: they read the row hash), macros,
``messages`` and ``turns`` templates, answer choices given as Jinja, few-shot exemplars, nullable or null inputs,
other dtypes — returns no plan and the template renders row by row through Jinja (``render.py``). The fast path only
reads AST nodes it recognizes and never runs template code; the load-time sandbox checks are unchanged.

Output is byte-identical to the Jinja path. Rows the Jinja path would reject (an index out of range, an empty
render from non-empty inputs) make ``render_group`` return ``None``; the engine declines and the slice renders
through Jinja, which raises the very same error for the same (first) row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jinja2.filters
import polars as pl
from jinja2 import nodes

from cardtune.curate.rows import CHOICE_ID, COMPLETION_TEXT, ROW, SOURCE_REF, SYSTEM_TEXT, TEMPLATE_ID, USER_TEXT
from cardtune.curate.templating import jinja_env
from cardtune.curate.templating.engine import assemble, take
from cardtune.curate.templating.jinja_env import ENV, LETTERS, PROTECTOR, PROVIDED, format_options
from cardtune.curate.templating.library import Part, Template
from cardtune.curate.templating.plan import PlanSlice

PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""Every character for which ``str.isspace()`` is true: what ``str.strip()`` removes (a test checks it)."""

HASH_FREE_STYLES = ("flan", "inline", "letters", "letters_dot", "numbers")
"""``options`` styles whose text depends on the choices only (``random`` and ``bullets`` read the row hash)."""


@dataclass(frozen=True)
class FastPart:
    """One part as a polars expression (null where a lookup is out of range) and whether it can be blank."""

    expr: pl.Expr
    may_be_blank: bool  # all literal text is whitespace: a blank render is possible and needs the empty rules


@dataclass(frozen=True)
class FastPlan:
    """A simple template, translated: its parts as expressions over the source columns."""

    template: Template
    system: FastPart | None
    user: FastPart
    completion: FastPart
    string_inputs: tuple[str, ...]
    whole: FastPart | None = None  # a `jinja` template's whole text, unsplit: each row must render one marker


def _is_int(dtype: pl.DataType) -> bool:
    return dtype.is_integer()


def _lookup(seq: tuple[str, ...], arg: nodes.Node, dtypes: Mapping[str, pl.DataType], lo: int) -> pl.Expr | None:
    """``seq[arg]`` for an integer input ``arg``: indices ``lo .. len(seq) - 1`` (Python semantics), else null."""
    if not (isinstance(arg, nodes.Name) and arg.ctx == "load" and arg.name in dtypes and _is_int(dtypes[arg.name])):
        return None
    old = list(range(lo, len(seq)))
    new = [seq[i] for i in old]
    col = pl.col(arg.name).cast(pl.Int64, strict=False)  # values beyond Int64 become null: out of range anyway
    return col.replace_strict(old, new, default=None, return_dtype=pl.String)


def _const_strings(node: nodes.Node, static: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The sequence a ``Getitem`` indexes, when it is static text: answer_choices (a list) or a literal list."""
    if isinstance(node, nodes.Name) and node.name == "answer_choices" and node.ctx == "load":
        return static
    if isinstance(node, nodes.Const) and isinstance(node.value, (list, tuple)):
        values: list[object] = list(node.value)
    elif isinstance(node, nodes.List) and all(isinstance(item, nodes.Const) for item in node.items):
        values = [item.value for item in node.items if isinstance(item, nodes.Const)]
    else:
        return None
    return tuple(v for v in values if isinstance(v, str)) if all(isinstance(v, str) for v in values) else None


def _options(node: nodes.Filter, static: tuple[str, ...] | None) -> pl.Expr | None:
    """``options("letters")`` over static choices, in a style that reads no row hash: one constant text."""
    seq = _const_strings(node.node, static) if node.node is not None else None
    if not seq or len(node.args) != 1:
        return None
    style = node.args[0]
    if not (isinstance(style, nodes.Const) and style.value in HASH_FREE_STYLES):
        return None
    try:
        text = format_options(seq, style.value, 0)
    except ValueError:  # e.g. more choices than letters: the Jinja path raises it per row
        return None
    return pl.lit(text, dtype=pl.String)


def _expr(node: nodes.Node, dtypes: Mapping[str, pl.DataType], static: tuple[str, ...] | None) -> pl.Expr | None:
    """The polars expression for one output expression, or None when the node is not recognized."""
    if isinstance(node, nodes.Name):
        if node.ctx != "load" or node.name not in dtypes:
            return None
        return pl.col(node.name) if dtypes[node.name] == pl.String else pl.col(node.name).cast(pl.String)
    if isinstance(node, nodes.Getitem):
        seq = _const_strings(node.node, static) if node.ctx == "load" else None
        # answer_choices refuses negative indices (the Jinja path raises them); a literal list keeps Python's
        choices = isinstance(node.node, nodes.Name) and node.node.name == "answer_choices"
        return _lookup(seq, node.arg, dtypes, 0 if choices else -len(seq)) if seq else None
    if not isinstance(node, nodes.Filter) or node.node is None:
        return None
    if node.kwargs or node.dyn_args is not None or node.dyn_kwargs is not None:
        return None
    if node.name == "options" and ENV.filters.get("options") is jinja_env._options_filter:
        return _options(node, static)
    if node.args:
        return None
    if node.name == "trim" and ENV.filters.get("trim") is jinja2.filters.do_trim:
        inner = _expr(node.node, dtypes, static) if isinstance(node.node, nodes.Name) else None
        return None if inner is None else inner.str.strip_chars(PY_WHITESPACE)
    if node.name == "letter" and ENV.filters.get("letter") is jinja_env._letter:
        return _lookup(tuple(LETTERS), node.node, dtypes, 0)  # _letter accepts 0 .. 25 only
    return None


def _outputs(part: Part) -> list[nodes.Node] | None:
    """The children of a body made only of ``Output`` nodes, in order (None for anything else)."""
    children: list[nodes.Node] = []
    for stmt in part.ast.body:
        if not isinstance(stmt, nodes.Output):
            return None
        children.extend(stmt.nodes)
    return children


def _literal(child: nodes.Node) -> str | None:
    if isinstance(child, nodes.TemplateData):
        return str(child.data)
    if isinstance(child, nodes.Const) and type(child.value) in (str, int):
        return str(child.value)
    return None


def _part(
    part: Part, dtypes: Mapping[str, pl.DataType], static: tuple[str, ...] | None, strip: bool
) -> FastPart | None:
    children = _outputs(part)
    return None if children is None else _pieces(children, dtypes, static, strip)


def _split_parts(
    t: Template, dtypes: Mapping[str, pl.DataType], static: tuple[str, ...] | None
) -> tuple[FastPart, FastPart, FastPart] | None:
    """A `jinja` template of ``Output`` nodes only, whose one marker is literal text: (prompt, completion, whole).

    A row value's marker does not split (the Jinja path protects it), so the literal marker splits every row's
    render at the same place; ``render_group`` still checks that each row renders exactly one marker (a value
    ending in ``|`` next to literal ``||`` would make another). Declined when a constant may print the marker.
    """
    marker, jinja = t.spec.split, t.jinja
    if jinja is None or not marker or any(marker in c for c in static or ()):
        return None
    children = _outputs(jinja)
    if children is None:
        return None
    consts = [
        text
        for node in jinja.ast.find_all(nodes.Const)
        for text in (node.value if isinstance(node.value, (list, tuple)) else [node.value])
        if isinstance(text, str)
    ]
    literals = [_literal(c) for c in children]
    data = [str(n.data) for n in jinja.ast.find_all(nodes.TemplateData)]
    if sum(text.count(marker) for text in consts + data) != 1:
        return None
    at = next((i for i, text in enumerate(literals) if text is not None and marker in text), None)
    if at is None:  # the marker sits in a constant inside an expression
        return None
    before, after = str(literals[at]).split(marker)
    prompt = [*children[:at], nodes.TemplateData(before)]
    completion = [nodes.TemplateData(after), *children[at + 1 :]]
    p, c = _pieces(prompt, dtypes, static, t.spec.strip), _pieces(completion, dtypes, static, t.spec.strip)
    whole = _pieces(children, dtypes, static, False)
    return (p, c, whole) if p is not None and c is not None and whole is not None else None


def _pieces(
    children: list[nodes.Node], dtypes: Mapping[str, pl.DataType], static: tuple[str, ...] | None, strip: bool
) -> FastPart | None:
    pieces: list[pl.Expr] = []
    literal: list[str] = []
    for child in children:
        text = _literal(child)
        if text is None:
            expr = _expr(child, dtypes, static)
            if expr is None:
                return None
            pieces.append(expr)
            continue
        literal.append(text)
        pieces.append(pl.lit(text, dtype=pl.String))
    out = pl.concat_str(pieces) if pieces else pl.lit("", dtype=pl.String)
    if strip:
        out = out.str.strip_chars(PY_WHITESPACE)
    return FastPart(out, may_be_blank=not "".join(literal).strip())


def plan(
    t: Template, schema: Mapping[str, pl.DataType], has_nulls: Mapping[str, bool], few_shot: bool
) -> FastPlan | None:
    """A fast plan for ``t`` over a source with ``schema``, or None when ``t`` needs the Jinja path.

    ``few_shot`` is whether the task configures exemplars (``Task.few_shot``); templates that get them are
    never simple.
    """
    if t.multi_turn or t.choices is not None or (len(t.turns) != 1 and t.jinja is None):
        return None
    if t.shots == "few" or (t.shots == "any" and few_shot):
        return None
    dtypes: dict[str, pl.DataType] = {}
    for name in t.inputs:
        dtype = schema.get(name)
        if dtype is None or has_nulls.get(name, True) or name in PROVIDED or name in ENV.globals:
            return None
        if dtype != pl.String and not _is_int(dtype):
            return None
        dtypes[name] = dtype
    static = t.static_choices()
    system = _part(t.system, dtypes, static, t.spec.strip) if t.system is not None else None
    if t.system is not None and system is None:
        return None
    whole: FastPart | None = None
    sides: tuple[FastPart, FastPart] | None
    if t.jinja is not None:
        split = _split_parts(t, dtypes, static)
        sides, whole = (split[:2], split[2]) if split is not None else (None, None)
    else:
        assert t.completion is not None
        user_part, completion_part = _part(t.turns[0][1], dtypes, static, t.spec.strip), None
        if user_part is not None:
            completion_part = _part(t.completion, dtypes, static, t.spec.strip)
        sides = (user_part, completion_part) if user_part is not None and completion_part is not None else None
    if sides is None:
        return None
    user, completion = sides
    strings = tuple(n for n, d in dtypes.items() if d == pl.String)
    return FastPlan(t, system, user, completion, strings, whole)


def _is_blank(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars(PY_WHITESPACE) == ""


def render_group(rows: pl.DataFrame, p: FastPlan) -> pl.DataFrame | None:
    """Render ``rows`` (one template's rows, with ``ROW``) into ``ROW, _sys, _user, _completion_text``.

    Returns None when a row would fail on the Jinja path (see the module docstring).
    """
    sys_expr = p.system.expr if p.system is not None else pl.lit(None, dtype=pl.String)
    out = rows.select(
        pl.col(ROW), sys_expr.alias(SYSTEM_TEXT), p.user.expr.alias(USER_TEXT), p.completion.expr.alias(COMPLETION_TEXT)
    )
    parts = [(SYSTEM_TEXT, p.system), (USER_TEXT, p.user), (COMPLETION_TEXT, p.completion)]
    if any(part is not None and out.get_column(col).null_count() for col, part in parts):
        return None  # a lookup out of range: the Jinja path raises it
    marker = p.template.spec.split
    if p.whole is not None and marker is not None and out.height:
        protected = rows.with_columns(
            pl.col(n).str.replace_all(marker, PROTECTOR, literal=True) for n in p.string_inputs
        ).select(p.whole.expr.str.count_matches(marker, literal=True))
        if (protected.to_series() != 1).any():
            return None  # a row renders another marker: the Jinja path raises it
    blank_parts = [col for col, part in parts if part is not None and part.may_be_blank]
    if not blank_parts or out.height == 0:
        return out
    if p.string_inputs:  # an empty render is fine only where an input itself is blank
        blank_input = pl.any_horizontal([pl.col(n).str.strip_chars(PY_WHITESPACE) == "" for n in p.string_inputs])
        keep = rows.select(blank_input.alias("b")).to_series()
    else:  # every input is a number (e.g. `What is {{ a }} plus {{ b }}?`): no input can be blank
        keep = pl.repeat(False, out.height, eager=True)
    for col in blank_parts:
        blank = out.select(_is_blank(col)).to_series()
        if (blank & ~keep).any():
            return None  # an empty render from non-empty inputs: a template bug the Jinja path reports
        if blank.any():
            out = out.with_columns(pl.when(blank).then(pl.lit("", dtype=pl.String)).otherwise(pl.col(col)).alias(col))
    return out


class FastEngine:
    """Simple templates (see the module docstring), every row of the slice at once; declines anything else."""

    name = "fast"

    def render(
        self, rows: pl.DataFrame, plan_slice: PlanSlice, template: Template | None, mode: str
    ) -> pl.DataFrame | None:
        if template is None:
            return None
        inputs = list(dict.fromkeys(template.inputs))
        nulls = {n: rows.get_column(n).null_count() > 0 for n in inputs}
        p = plan(template, rows.schema, nulls, plan_slice.plan.few_shot is not None)
        if p is None:
            return None
        sub = take(rows, plan_slice, [*plan_slice.plan.inputs, SOURCE_REF])
        out = render_group(sub.select(inputs).with_columns(plan_slice.positions()), p)
        if out is None:
            return None
        static = template.static_choices()
        choice_ids = {} if static is None else {static: 0}
        body = out.select(
            pl.lit(template.id, dtype=pl.String).alias(TEMPLATE_ID),
            pl.col(SYSTEM_TEXT, USER_TEXT, COMPLETION_TEXT),
            pl.lit(None if static is None else 0, dtype=pl.UInt32).alias(CHOICE_ID),
        )
        return assemble(sub, plan_slice, mode, body, choice_ids, None)


ENGINE = FastEngine()
