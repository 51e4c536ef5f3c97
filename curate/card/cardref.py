"""The card field reference (``data_cards/README.md``), generated from the pydantic models.

Run ``python -m cardtune.curate.card.cardref > data_cards/README.md`` (or ``make docs``) after changing the
schema; a test fails when the committed file is stale.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cardtune.curate.card.schema import Card

INTRO = """# Card field reference

A dataset card is one YAML file. `cardtune validate CARD` checks it (all mistakes at once, each as
`file:line: field: message`); `cardtune schema` prints its JSON Schema for editor completion; `cardtune init NAME`
writes a commented starter. Paths to inputs (sources, templates, benchmarks) are relative to the card's folder;
`output.dir` is relative to the working directory. Unknown keys are errors.

Example cards in this folder: `demo.yaml` (runs on CPU in minutes), `flan-mini.yaml` (a FLAN-style multi-task
instruction mixture), `finetune-single.yaml` (one task, input→output), `finetune-multi.yaml` (a few tasks),
`lora.yaml` and `prompt-tuning.yaml` (PEFT methods).

*This file is generated from `curate/card.py` by `make docs`; do not edit it by hand.*
"""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(names) + (" \\| null" if type(None) in args else "")
    if origin is list:
        return f"list[{_type_name(args[0])}]"
    if origin is dict:
        return f"map[{_type_name(args[0])} → {_type_name(args[1])}]"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    return getattr(tp, "__name__", str(tp))


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section defaults)"
        return f"`{value!r}`"
    if field.default is PydanticUndefined:
        return ""
    return f"`{field.default!r}`" if field.default is not None else "`null`"


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """All models reachable from ``root``, in first-seen order."""
    seen: list[type[BaseModel]] = []

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in seen:
                return
            seen.append(tp)
            for f in tp.model_fields.values():
                visit(f.annotation)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    visit(root)
    return seen


def field_reference() -> str:
    """The whole reference as Markdown."""
    out = [INTRO]
    for model in _models(Card):
        doc = (model.__doc__ or "").strip().splitlines()[0]
        out += [f"## {model.__name__}", "", doc, "", "| field | type | default | description |", "|---|---|---|---|"]
        for name, f in model.model_fields.items():
            desc = (f.description or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"| `{name}` | {_type_name(f.annotation)} | {_default(f)} | {desc} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(field_reference(), end="")
