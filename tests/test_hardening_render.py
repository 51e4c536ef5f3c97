"""Red-team regressions in rendering (issue 10): integer-only templates build; a negative label is an error."""

from __future__ import annotations

import polars as pl
import pytest

from cardtune.curate.card.schema import Task
from cardtune.curate.card.yamlsrc import load_located
from cardtune.curate.errors import UserInputError
from cardtune.curate.templating.library import templates_from_located
from cardtune.curate.templating.render import render_task

TEMPLATES = """\
family: arith
templates:
  - id: arith/plus
    inputs: [a, b, c]
    prompt: "What is {{ a }} plus {{ b }}?"
    completion: "{{ c }}"
  - id: arith/label
    inputs: [q, label]
    answer_choices: ["no", "yes"]
    prompt: "{{ q }}"
    completion: "{{ answer_choices[label] }}"
  - id: arith/literal
    inputs: [q, label]
    prompt: "{{ q }}"
    completion: "{{ ['no', 'yes'][label] }}"
"""
LIB = {t.id: t for t in templates_from_located(load_located(TEMPLATES, "arith.yaml"), "arith.yaml")}
TASK = Task(name="t", source={"path": "x.jsonl"})  # type: ignore[arg-type]


def rows(**columns: list[object]) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    return pl.DataFrame(columns).with_columns(pl.format("t:{}", pl.int_range(n)).alias("source_ref"))


@pytest.mark.parametrize("mode", ["instruction", "finetune"])
def test_a_template_whose_inputs_are_all_integers_builds(mode: str) -> None:
    """Was `cannot return empty fold` from the fast path."""
    out = render_task(rows(a=[1, 2], b=[3, 4], c=[4, 6]), TASK, [LIB["arith/plus"]], mode, seed=1)
    completions = out["completion"].to_list()
    assert [c if isinstance(c, str) else c[0]["content"] for c in completions] == ["4", "6"]


def test_a_negative_label_is_an_error_naming_the_row_not_the_last_choice() -> None:
    data = rows(q=["a", "b", "c"], label=[0, -1, 1])
    with pytest.raises(UserInputError, match=r"answer_choices\[-1\]: a negative index.*row t:1"):
        render_task(data, TASK, [LIB["arith/label"]], "finetune", seed=1)
    ok = render_task(rows(q=["a", "b"], label=[0, 1]), TASK, [LIB["arith/label"]], "finetune", seed=1)
    assert ok["completion"].to_list() == ["no", "yes"]
    assert render_task(data, TASK, [LIB["arith/literal"]], "finetune", seed=1)["completion"].to_list() == [
        "no",
        "yes",  # a literal list keeps Python's indexing: -1 is its last item, as in Jinja
        "yes",
    ]


def passthrough_rows(**columns: list[object]) -> pl.DataFrame:
    return rows(**columns)


@pytest.mark.parametrize(
    ("columns", "mode", "message"),
    [
        ({"messages": [[{"content": "hi"}, {"role": "assistant", "content": "x"}]]}, "instruction", "no `role`"),
        ({"prompt": ["a"], "completion": [5]}, "finetune", r"`completion` must be text, got Int64"),
        ({"prompt": ["a"], "completion": [5]}, "instruction", r"`completion` must be text or a list"),
        (
            {"messages": [[{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                           {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]]},
            "instruction",
            "message content must be text",
        ),
    ],
)  # fmt: skip
def test_passthrough_refuses_what_it_would_otherwise_mangle(
    columns: dict[str, list[object]], mode: str, message: str
) -> None:
    with pytest.raises(UserInputError, match=message):
        render_task(passthrough_rows(**columns), TASK, [], mode, seed=1)


@pytest.mark.parametrize(
    ("value", "message"),
    [({"name": "x"}, r"prints input 'v' whole, but it is a struct column"), (b"\x00\x01", r"prints bytes.*row t:0")],
    ids=["struct", "binary"],
)
def test_a_struct_or_binary_column_is_not_printed_as_a_python_repr(value: object, message: str) -> None:
    text = TEMPLATES + '  - id: arith/raw\n    inputs: [q, v]\n    prompt: "{{ q }}"\n    completion: "{{ v }}"\n'
    lib = {t.id: t for t in templates_from_located(load_located(text, "arith.yaml"), "arith.yaml")}
    with pytest.raises(UserInputError, match=message):
        render_task(rows(q=["a"], v=[value]), TASK, [lib["arith/raw"]], "finetune", seed=1)
    if isinstance(value, dict):  # its fields print fine
        field = text.replace('completion: "{{ v }}"', 'completion: "{{ v.name }}"')
        lib = {t.id: t for t in templates_from_located(load_located(field, "arith.yaml"), "arith.yaml")}
        assert (
            render_task(rows(q=["a"], v=[value]), TASK, [lib["arith/raw"]], "finetune", seed=1)["completion"][0] == "x"
        )
