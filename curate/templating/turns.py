"""The `turns` template form's per-row data: how many turns a row has, and what ``turn`` holds in each.

Owns ``Over`` (a compiled `turns` template's `over` names and where they sit in the file), ``turn_mappings``
(a row's `over` values → one ``turn`` mapping per turn: each `over` name's i-th element plus ``index``,
``number``, ``first``, ``last``, ``count``; or ``TurnsError`` saying what is wrong with the row: a value that is
not a list, lists of different lengths, an empty list, a null element outside `nullable`) and ``turn_fields``
(which ``turn.<name>`` a Jinja source reads, for the used-variables check of lint).

The schema is ``schema.TurnsForm``; compiling is ``library.templates_from_located`` (the user part is the
template's one prompt-side turn, the assistant part its completion); rendering each turn is ``render._turns``.
This module runs no template code.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes

from cardtune.curate.errors import Loc
from cardtune.curate.templating.schema import TURN, TURN_KEYS


@dataclass(frozen=True)
class Over:
    """The `over` list inputs of a compiled `turns` template, and the file line and location of `turns.over`."""

    names: tuple[str, ...]
    loc: Loc  # ("templates", i, "turns", "over")
    line: int


class TurnsError(Exception):
    """A row's `over` values cannot make turns (the message says which input and why)."""


def turn_mappings(names: tuple[str, ...], nullable: Collection[str], row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One ``turn`` mapping per turn of ``row``: its `over` values zipped, with the turn's position."""
    lengths: dict[str, int] = {}
    for name in names:
        value = row.get(name)
        if not isinstance(value, (list, tuple)):
            what = "null" if value is None else f"a {type(value).__name__} ({_short(value)})"
            raise TurnsError(f"input {name!r} is {what}, not a list (a turns template reads one element per turn)")
        lengths[name] = len(value)
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{n} has {k}" for n, k in lengths.items())
        raise TurnsError(f"the `over` lists differ in length for this row ({sizes}); turn i reads element i of each")
    count = lengths[names[0]]
    if count == 0:
        raise TurnsError(
            f"{' and '.join(repr(n) for n in names)} {'is' if len(names) == 1 else 'are'} empty for this row: "
            "no turns, so no assistant turn to train on (filter such rows out of the task's source)"
        )
    for name in names:
        if name in nullable:
            continue
        for j, value in enumerate(row[name]):
            if value is None:
                raise TurnsError(
                    f"{name}[{j}] is null (filter such rows out, or list {name!r} under the template's `nullable`)"
                )
    columns = [row[name] for name in names]
    return [
        {
            **{name: col[i] for name, col in zip(names, columns, strict=True)},
            "index": i,
            "number": i + 1,
            "first": i == 0,
            "last": i == count - 1,
            "count": count,
        }
        for i in range(count)
    ]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def turn_fields(ast: nodes.Template) -> tuple[set[str], bool]:
    """(names read as ``turn.<name>`` or ``turn["name"]``, whether ``turn`` is also used another way)."""
    fields: set[str] = set()
    direct: set[int] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        if not isinstance(node, (nodes.Getattr, nodes.Getitem)):
            continue
        inner = node.node
        if not (isinstance(inner, nodes.Name) and inner.name == TURN):
            continue
        if isinstance(node, nodes.Getattr):
            fields.add(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            fields.add(node.arg.value)
        else:
            continue
        direct.add(id(inner))
    whole = any(n.name == TURN and id(n) not in direct for n in ast.find_all(nodes.Name))
    return fields - set(TURN_KEYS), whole
