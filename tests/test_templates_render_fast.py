"""The vectorized fast path renders exactly what the Jinja path renders: every column, every error, row order."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from cardtune.curate.card.schema import FewShot, Source, Task
from cardtune.curate.errors import UserInputError
from cardtune.curate.templating import fastrender
from cardtune.curate.templating.library import Template, TemplateLibrary, load_template_file
from cardtune.curate.templating.render import render_task

LIB = TemplateLibrary.load()
MODES = ("instruction", "finetune")


def _dtype(value: object) -> pl.DataType:
    if isinstance(value, bool):
        return pl.Boolean()
    if isinstance(value, int):
        return pl.Int64()
    if isinstance(value, str):
        return pl.String()
    return pl.List(pl.String)


def schema_of(t: Template) -> dict[str, pl.DataType]:
    """Input dtypes as the template file's example rows have them."""
    example = t.examples[0] if t.examples else {}
    return {n: _dtype(example.get(n, "")) for n in t.inputs}


def plan_of(t: Template, schema: dict[str, pl.DataType] | None = None, few: bool = False) -> object:
    schema = schema or schema_of(t)
    return fastrender.plan(t, schema, dict.fromkeys(schema, False), few)


SIMPLE = [t for t in LIB if plan_of(t) is not None]


def outcome(rows: pl.DataFrame, task: Task, templates: list[Template], mode: str, fast: bool) -> pl.DataFrame | str:
    """The rendered frame, or the error text."""
    try:
        return render_task(rows, task, templates, mode, seed=3, fast=fast)
    except UserInputError as exc:
        return f"UserInputError: {exc}"


def _parquet(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd", statistics=True)
    return buf.getvalue()


def assert_same(rows: pl.DataFrame, templates: list[Template], few: FewShot | None = None) -> None:
    task = Task(name="t", source=Source(path="x"), few_shot=few)
    for mode in MODES:
        fast, slow = outcome(rows, task, templates, mode, True), outcome(rows, task, templates, mode, False)
        if isinstance(fast, str) or isinstance(slow, str):
            assert fast == slow
        else:
            assert_frame_equal(fast, slow, check_exact=True)
            assert _parquet(fast) == _parquet(slow)  # what a build writes (IPC bytes depend on buffer layout)


def test_the_library_mostly_takes_the_fast_path() -> None:
    assert len(SIMPLE) >= 60, [t.id for t in LIB if t not in SIMPLE]
    assert "nli/premise-hypothesis-labels" in {t.id for t in SIMPLE}


def test_python_whitespace_set_is_complete() -> None:
    expected = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
    assert expected == fastrender.PY_WHITESPACE


TRICKY = ["", " ", "\n", " \t\n ", "{{ x }}", "{% if %}", "a\r\nb", "\x1c", "\u3000x\u2028", "ünï", "None", "0"]
TEXT = st.one_of(
    st.sampled_from(TRICKY),
    st.text(alphabet=st.sampled_from([*"ab {}%#\n\t\r", "\x1c", "\u2028", "\u3000", "é", "🙂"]), max_size=12),
    st.text(max_size=20),
)


def _int_strategy(t: Template) -> st.SearchStrategy[int]:
    n = len(t.static_choices() or ("a", "b"))
    return st.one_of(st.integers(0, n - 1), st.integers(-n, n - 1), st.integers(-30, 30))


@st.composite
def template_rows(draw: st.DrawFn) -> tuple[Template, pl.DataFrame]:
    t = draw(st.sampled_from(SIMPLE))
    schema = schema_of(t)
    n = draw(st.integers(1, 6))
    data: dict[str, list[Any]] = {}
    for name, dtype in schema.items():
        strategy = _int_strategy(t) if dtype == pl.Int64 else TEXT
        data[name] = draw(st.lists(strategy, min_size=n, max_size=n))
    data["source_ref"] = [f"t:{i}" for i in range(n)]
    return t, pl.DataFrame(data, schema={**schema, "source_ref": pl.String})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=template_rows())
def test_fast_path_matches_jinja_on_random_rows(case: tuple[Template, pl.DataFrame]) -> None:
    t, rows = case
    assert_same(rows, [t])


def _random_rows(templates: list[Template], n: int, seed: int) -> pl.DataFrame:
    """Rows for every input of ``templates`` (mostly valid, a few blank strings), ints within range."""
    rng = random.Random(seed)
    schema: dict[str, pl.DataType] = {}
    for t in templates:
        schema.update(schema_of(t))
    n_choices = min((len(t.static_choices() or "ab") for t in templates), default=2)
    data: dict[str, list[Any]] = {}
    for name, dtype in schema.items():
        if dtype == pl.Int64:
            data[name] = [rng.randrange(n_choices) for _ in range(n)]
        elif dtype == pl.String:
            data[name] = [rng.choice([*TRICKY[4:], "word " * rng.randint(1, 5)]) for _ in range(n)]
        else:
            data[name] = [[rng.choice(TRICKY[4:]) for _ in range(rng.randint(1, 4))] for _ in range(n)]
    data["source_ref"] = [f"t:{i}" for i in range(n)]
    return pl.DataFrame(data, schema={**schema, "source_ref": pl.String})


@pytest.mark.parametrize("t", SIMPLE, ids=lambda t: t.id)
def test_every_simple_library_template_matches_jinja(t: Template, monkeypatch: pytest.MonkeyPatch) -> None:
    results: list[object] = []
    real = fastrender.render_group

    def spy(rows: pl.DataFrame, p: fastrender.FastPlan) -> pl.DataFrame | None:
        results.append(out := real(rows, p))
        return out

    monkeypatch.setattr(fastrender, "render_group", spy)
    assert_same(_random_rows([t], 40, seed=len(t.id)), [t])
    assert results and all(r is not None for r in results)  # the rows really took the fast path


@pytest.mark.parametrize("family", sorted(LIB.families()))
def test_mixed_families_keep_row_order(family: str) -> None:
    templates = LIB.match(f"{family}/*")
    rows = _random_rows(templates, 300, seed=1)
    assert_same(rows, templates)
    out = outcome(rows, Task(name="t", source=Source(path="x")), templates, "instruction", fast=True)
    if not isinstance(out, str):  # random dialogue histories can render empty: an error on both paths
        assert out["source_ref"].to_list() == rows["source_ref"].to_list()
        assert out["template_id"].n_unique() > 1


def write(tmp_path: Path, body: str, inputs: str = "[x, label]", extra: str = "", name: str = "t") -> Template:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"family: f\ntemplates:\n  - id: f/{name}\n    inputs: {inputs}\n{extra}{body}",
        encoding="utf-8",
    )
    return load_template_file(path)[0]


def _xl(n: int = 20) -> pl.DataFrame:
    return pl.DataFrame(
        {"x": [f"text {i}" if i % 4 else "  " for i in range(n)], "label": [i % 3 for i in range(n)]}
    ).with_columns(pl.format("t:{}", pl.int_range(n)).alias("source_ref"))


FALLBACK = {
    "if": '    prompt: "{% if x %}{{ x }}{% endif %} {{ label }}"\n    completion: ok\n',
    "options-random": (
        '    answer_choices: ["a", "b", "c"]\n    prompt: "{{ x }} {{ answer_choices | options }}"\n'
        '    completion: "{{ answer_choices[label] }}"\n'
    ),
    "options-bullets": (
        '    answer_choices: ["a", "b", "c"]\n    prompt: "{{ x }} {{ answer_choices | options(\'bullets\') }}"\n'
        '    completion: "{{ label }}"\n'
    ),
    "choice": "    prompt: \"{{ x }} {{ ['a', 'b'] | choice }}\"\n    completion: \"{{ label }}\"\n",
    "dynamic-choices": (
        '    answer_choices: "yes ||| {{ x }}"\n    prompt: "{{ x }}"\n    completion: "{{ answer_choices[label] }}"\n'
    ),
    "attribute": '    prompt: "{{ x.upper() }}"\n    completion: "{{ label }}"\n',
    "upper-filter": '    prompt: "{{ x | upper }}"\n    completion: "{{ label }}"\n',
    "few-shot": '    metadata: {shots: few}\n    prompt: "Q: {{ x }}"\n    completion: "{{ label }}"\n',
    "messages": (
        '    messages:\n      - {role: user, content: "{{ x }}"}\n      - {role: assistant, content: "{{ label }}"}\n'
    ),
}


@pytest.mark.parametrize("name", sorted(FALLBACK))
def test_fallback_boundaries_render_through_jinja_identically(tmp_path: Path, name: str) -> None:
    t = write(tmp_path, FALLBACK[name])
    assert plan_of(t, {"x": pl.String(), "label": pl.Int64()}) is None
    rows = _xl().with_columns(pl.col("label").clip(0, 1)) if name == "dynamic-choices" else _xl()
    assert_same(rows, [t])


def test_few_shot_tasks_and_unsupported_dtypes_fall_back(tmp_path: Path) -> None:
    t = write(tmp_path, '    prompt: "Q: {{ x }}"\n    completion: "{{ label }}"\n')
    assert plan_of(t, {"x": pl.String(), "label": pl.Int64()}) is not None
    assert plan_of(t, {"x": pl.String(), "label": pl.Int64()}, few=True) is None
    for dtype in (pl.Float64(), pl.Boolean(), pl.List(pl.String), pl.Categorical()):
        assert plan_of(t, {"x": pl.String(), "label": dtype}) is None
    assert fastrender.plan(t, {"x": pl.String(), "label": pl.Int64()}, {"x": True, "label": False}, False) is None
    assert_same(_xl(), [t], few=FewShot(k=2, fraction=0.5))
    assert_same(_xl().with_columns(pl.col("label").cast(pl.Float64)), [t])
    assert_same(_xl().with_columns(pl.col("label").cast(pl.UInt8)), [t])
    assert_same(_xl().with_columns(pl.col("label") > 0), [t])


def test_nullable_inputs_fall_back(tmp_path: Path) -> None:
    t = write(tmp_path, '    prompt: "Q: {{ x }}"\n    completion: "{{ label }}"\n', extra="    nullable: [x]\n")
    rows = _xl().with_columns(pl.when(pl.col("label") == 1).then(None).otherwise(pl.col("x")).alias("x"))
    assert_same(rows, [t])
    out = render_task(rows, Task(name="t", source=Source(path="x")), [t], "finetune", 0)
    assert "Q: None" in out["prompt"].to_list()


def test_mixed_simple_and_fallback_templates_keep_order(tmp_path: Path) -> None:
    simple = write(tmp_path, '    prompt: "S {{ x }}"\n    completion: "{{ label }}"\n', name="simple")
    branchy = write(tmp_path, FALLBACK["if"], name="branchy")
    assert plan_of(simple, {"x": pl.String(), "label": pl.Int64()}) is not None
    rows = _xl(200)
    assert_same(rows, [simple, branchy])
    out = render_task(rows, Task(name="t", source=Source(path="x")), [simple, branchy], "finetune", 3)
    assert out["source_ref"].to_list() == rows["source_ref"].to_list()
    assert set(out["template_id"]) == {"f/simple", "f/branchy"}
    for tid, prompt in zip(out["template_id"], out["prompt"], strict=True):
        assert prompt.startswith("S ") == (tid == "f/simple")


def test_errors_are_the_jinja_paths(tmp_path: Path) -> None:
    t = write(
        tmp_path,
        '    answer_choices: ["a", "b"]\n    prompt: "{{ x }}"\n    completion: "{{ answer_choices[label] }}"\n',
    )
    rows = _xl()  # labels 0..2: 2 is out of range
    fast, slow = (outcome(rows, Task(name="t", source=Source(path="x")), [t], "finetune", f) for f in (True, False))
    assert isinstance(fast, str) and fast == slow and "t:2" in fast and "f/t" in fast
    letter = write(tmp_path, '    prompt: "{{ x }}"\n    completion: "{{ label | letter }}"\n')
    assert_same(_xl().with_columns(pl.col("label") * 13), [letter])  # 26 is past Z
    blank = write(tmp_path, '    prompt: "{{ x }}"\n    completion: "{{ label }}{{ x | trim }}"\n')
    assert_same(_xl(), [blank])
    empty = write(tmp_path, '    prompt: "{{ x }}"\n    completion: " {{ y }}\\n"\n', inputs="[x, y]")
    rows = pl.DataFrame({"x": ["a", "b", " "], "y": ["1", "\u3000", "z"], "source_ref": ["e:0", "e:1", "e:2"]})
    assert_same(
        rows, [empty]
    )  # e:1's completion and e:2's prompt render "" (an input is blank): kept; Jinja drops the trailing newline
    out = render_task(rows, Task(name="t", source=Source(path="x")), [empty], "finetune", 0)
    assert out["completion"].to_list() == [" 1", "", " z"] and out["prompt"].to_list() == ["a", "b", ""]
    bug = write(
        tmp_path,
        '    answer_choices: ["yes", " "]\n    prompt: "{{ x }}"\n    completion: "{{ answer_choices[label] }}"\n',
    )
    rows = pl.DataFrame({"x": ["a", "b"], "label": [0, 1], "source_ref": ["e:0", "e:1"]})
    assert_same(rows, [bug])  # e:1: an empty render from non-empty inputs is an error on both paths
    assert "rendered empty" in str(outcome(rows, Task(name="t", source=Source(path="x")), [bug], "finetune", True))
    assert_same(rows.head(1), [bug])


def test_strip_option_and_trailing_newlines(tmp_path: Path) -> None:
    t = write(tmp_path, '    strip: true\n    prompt: "  {{ x }}\\n\\n"\n    completion: "\\u3000{{ label }} \\n"\n')
    rows = _xl().with_columns(pl.col("x") + "\x1c")
    assert plan_of(t, {"x": pl.String(), "label": pl.Int64()}) is not None
    assert_same(rows, [t])
    out = render_task(rows, Task(name="t", source=Source(path="x")), [t], "finetune", 0)
    assert out["completion"][1] == "1" and out["prompt"][1] == "text 1"


def test_empty_task() -> None:
    t = LIB.get("nli/premise-hypothesis-labels")
    rows = pl.DataFrame(schema={**schema_of(t), "source_ref": pl.String})
    assert_same(rows, [t])
    assert_same(rows, LIB.match("nli/*"))


FALLBACK_TURNS = (
    '{role: user, content: "{{ x }}"}\n      - {role: assistant, content: ok}\n      - {role: user, content: "more"}'
)


def test_mixed_with_multi_turn_and_system_templates(tmp_path: Path) -> None:
    simple = write(tmp_path, '    prompt: "S {{ x }}"\n    completion: "{{ label }}"\n', name="simple")
    system = write(
        tmp_path, '    system: "be {{ x }}"\n    prompt: "Y {{ x }}"\n    completion: "{{ label }}"\n', name="sys"
    )
    multi = write(tmp_path, FALLBACK["messages"].replace('{role: user, content: "{{ x }}"}', FALLBACK_TURNS), name="m")
    assert plan_of(system, {"x": pl.String(), "label": pl.Int64()}) is not None
    assert_same(_xl(60), [simple, system, multi])
    assert_same(_xl(60), [simple, system])


def test_prompt_messages_match_the_reference_expression() -> None:
    from cardtune.curate.templating.engine import _msg, _simple_messages

    body = pl.DataFrame({"_sys": [None, "s1", "s2", None, ""], "_user": ["u0", "u1", "", "u3", "u4"]})
    user = pl.concat_list([_msg("user", pl.col("_user"))])
    with_sys = pl.concat_list([_msg("system", pl.col("_sys")), _msg("user", pl.col("_user"))])
    reference = body.select(pl.when(pl.col("_sys").is_null()).then(user).otherwise(with_sys).alias("prompt"))
    for frame in (body, body.head(0), body.filter(pl.col("_sys").is_null()), body.filter(pl.col("_sys").is_not_null())):
        expected = reference.filter(pl.Series(body["_user"].is_in(frame["_user"].implode())))
        assert_frame_equal(_simple_messages(frame).to_frame(), expected if frame.height else reference.head(0))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_tasks_where_some_templates_get_no_rows(tmp_path: Path, n: int) -> None:
    simple = write(tmp_path, '    prompt: "S {{ x }}"\n    completion: "{{ label }}"\n', name="simple")
    branchy = write(tmp_path, FALLBACK["if"], name="branchy")
    other = write(tmp_path, '    prompt: "O {{ x }}"\n    completion: "{{ label }}"\n', name="other")
    for templates in ([simple, branchy], [branchy, simple], [simple, other], [other, branchy, simple]):
        assert_same(_xl(n), templates)


@settings(max_examples=60, deadline=None)
@given(
    xs=st.lists(TEXT.filter(str.strip), min_size=1, max_size=5),
    label=st.integers(-(2**63), 2**63 - 1),
)
def test_integers_and_trim_render_like_jinja(
    tmp_path_factory: pytest.TempPathFactory, xs: list[str], label: int
) -> None:
    t = write(
        tmp_path_factory.mktemp("t"),
        '    answer_choices: ["a", "b"]\n    prompt: "{{ x | trim }}|{{ label }}|{{ 7 }}"\n'
        '    completion: "{{ label | trim }} {{ answer_choices[label % 2] if false else x }}"\n',
    )
    simple = write(
        tmp_path_factory.mktemp("s"), '    prompt: "[{{ x | trim }}] {{ label }}"\n    completion: "{{ label }}"\n'
    )
    assert plan_of(simple, {"x": pl.String(), "label": pl.Int64()}) is not None
    rows = pl.DataFrame({"x": xs, "label": [label] * len(xs), "source_ref": [f"r:{i}" for i in range(len(xs))]})
    assert_same(rows, [t])
    assert_same(rows, [simple])
