"""The row plan (template per row, row hash, shots) and the engines behind ``render_task``'s one interface."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cardtune.curate.templating as templating_pkg
from cardtune.curate import rows as row_columns
from cardtune.curate.card.schema import FewShot, Source, Task
from cardtune.curate.errors import UserInputError
from cardtune.curate.rows import EXEMPLARS, FEW_SHOT, ROW, ROW_HASH, SOURCE_REF, TEMPLATE_ID
from cardtune.curate.templating.engine import RowFailure
from cardtune.curate.templating.fastrender import FastEngine
from cardtune.curate.templating.jinja_env import stable_hash
from cardtune.curate.templating.library import Template, TemplateLibrary, load_template_file
from cardtune.curate.templating.passthrough import PassthroughEngine
from cardtune.curate.templating.plan import RowPlan, row_hash, template_choices
from cardtune.curate.templating.render import ENGINES, JinjaEngine, render_row, render_task

LIB = TemplateLibrary.load()


def nli_rows(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "premise": [f"Premise {i} is about a red bicycle." for i in range(n)],
            "hypothesis": [f"Hypothesis {i}." for i in range(n)],
            "label": [i % 3 for i in range(n)],
            "source_ref": [f"nli:{i}" for i in range(n)],
        }
    )


def plan_of(rows: pl.DataFrame, templates: list[Template], few: FewShot | None = None, seed: int = 5) -> RowPlan:
    return RowPlan("nli", seed, tuple(templates), few, rows.get_column(SOURCE_REF))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**40), task=st.text(min_size=1), ref=st.text(), tid=st.text(), n=st.integers(1, 9))
def test_row_hash_and_template_choice_are_the_stable_hashes(seed: int, task: str, ref: str, tid: str, n: int) -> None:
    try:
        expected = stable_hash(seed, task, ref, tid)
    except UnicodeEncodeError:  # lone surrogates: no hash either way
        with pytest.raises(UnicodeEncodeError):
            row_hash(seed, task, ref, tid)
        return
    assert row_hash(seed, task, ref, tid) == expected
    assert template_choices(seed, task, [ref, ref], n) == [stable_hash(seed, task, ref) % n if n > 1 else 0] * 2


def test_plan_frame_holds_every_rows_template_hash_and_shots() -> None:
    templates = LIB.match("nli/*")
    rows = nli_rows(200)
    plan = plan_of(rows, templates, FewShot(k=2, fraction=0.5))
    frame = plan.frame()
    assert frame.columns == [ROW, TEMPLATE_ID, ROW_HASH, FEW_SHOT, EXEMPLARS]
    assert frame[ROW].to_list() == list(range(200))
    slices = plan.slices()
    assert sorted(i for s in slices for i in s.rows) == list(range(200))
    for s in slices:
        assert list(s.rows) == sorted(s.rows) and s.template is templates[s.index]
    out = render_task(
        rows, Task(name="nli", source=Source(path="x"), few_shot=FewShot(k=2, fraction=0.5)), templates, "finetune", 5
    )
    assert out[TEMPLATE_ID].to_list() == frame[TEMPLATE_ID].to_list()
    by_id = {t.id: t for t in templates}
    for row in frame.iter_rows(named=True):
        t = by_id[row[TEMPLATE_ID]]
        assert row[ROW_HASH] == row_hash(5, "nli", f"nli:{row[ROW]}", t.id)
        if row[FEW_SHOT]:
            shots = row[EXEMPLARS]
            assert len(shots) == 2 == len(set(shots)) and row[ROW] not in shots and all(0 <= j < 200 for j in shots)
        else:
            assert row[EXEMPLARS] == []
        if t.shots == "zero" or t.spec.messages is not None:
            assert not row[FEW_SHOT]
    assert 0.3 < frame.filter(pl.col(FEW_SHOT)).height / frame.height < 0.7


def test_render_row_with_the_plans_row_hash_is_what_render_task_renders() -> None:
    t = LIB.get("nli/does-it-follow")  # ``options`` reads the row hash
    rows = nli_rows(20)
    out = render_task(rows, Task(name="nli", source=Source(path="x")), [t], "finetune", 5)
    (part,) = plan_of(rows, [t]).slices()
    for i, h in zip(part.rows, part.row_hashes, strict=True):
        r = render_row(t, {n: rows[n][i] for n in t.inputs}, h)
        assert out["prompt"][i] == r.prompt_text() and out["completion"][i] == r.completion


def test_too_few_rows_for_few_shot_is_reported_by_the_engine_not_the_plan() -> None:
    t = LIB.get("nli/does-it-follow")
    plan = plan_of(nli_rows(2), [t], FewShot(k=3, fraction=1.0))
    (part,) = plan.slices()
    assert part.few == [True, True] and part.exemplars == [(), ()]
    with pytest.raises(RowFailure, match="needs more than 3 rows") as exc:
        JinjaEngine().render(nli_rows(2), part, t, "finetune")
    assert exc.value.row == 0


def test_engines_share_one_interface_and_decline_what_they_cannot_render() -> None:
    assert [e.name for e in ENGINES] == ["fast", "jinja", "passthrough"]
    rows = nli_rows(12)
    simple, fallback = LIB.get("nli/premise-hypothesis-labels"), LIB.get("nli/does-it-follow")
    for t in (simple, fallback):
        (part,) = plan_of(rows, [t]).slices()
        assert PassthroughEngine().render(rows, part, t, "finetune") is None
        jinja = JinjaEngine().render(rows, part, t, "finetune")
        assert jinja is not None
        fast = FastEngine().render(rows, part, t, "finetune")
        assert (fast is None) == (t is fallback)
        if fast is not None:
            assert fast.equals(jinja)
    conv = pl.DataFrame({"prompt": ["p"], "completion": ["c"], "source_ref": ["c:0"]})
    (part,) = RowPlan("c", 0, (), None, conv[SOURCE_REF]).slices()
    assert part.template is None
    assert FastEngine().render(conv, part, None, "finetune") is None
    assert JinjaEngine().render(conv, part, None, "finetune") is None
    out = PassthroughEngine().render(conv, part, None, "finetune")
    assert out is not None and out.equals(render_task(conv, Task(name="c", source=Source(path="x")), [], "finetune", 0))


def _write(tmp_path: Path, name: str, body: str) -> Template:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"family: f\ntemplates:\n  - id: f/{name}\n    inputs: [x, label]\n{body}", encoding="utf-8")
    return load_template_file(path)[0]


@pytest.mark.parametrize("fast", [True, False])
def test_the_first_bad_row_of_the_task_is_reported_whichever_template_it_has(tmp_path: Path, fast: bool) -> None:
    simple = _write(
        tmp_path,
        "simple",
        '    answer_choices: ["a", "b"]\n    prompt: "{{ x }}"\n    completion: "{{ answer_choices[label] }}"\n',
    )
    branchy = _write(
        tmp_path,
        "branchy",
        "    prompt: \"{% if x %}{{ x }}{% endif %}\"\n    completion: \"{{ ['p', 'q'][label] }}\"\n",
    )
    n = 60
    rows = pl.DataFrame(
        {"x": [f"t{i}" for i in range(n)], "label": [0] * n, "source_ref": [f"t:{i}" for i in range(n)]}
    )
    plan = plan_of(rows, [simple, branchy]).frame()
    # a bad label on the last row of each template, and on one early row of the template listed second
    last = {tid: g[ROW].max() for (tid,), g in plan.group_by(TEMPLATE_ID)}
    early = plan.filter(pl.col(TEMPLATE_ID) == branchy.id)[ROW][0]
    bad = {*last.values(), early}
    rows = rows.with_columns(pl.Series("label", [5 if i in bad else 0 for i in range(n)]))
    with pytest.raises(UserInputError) as exc:
        render_task(rows, Task(name="nli", source=Source(path="x")), [simple, branchy], "finetune", 5, fast=fast)
    assert f"row t:{min(bad)})" in str(exc.value) and branchy.id in str(exc.value)


def test_intermediate_column_names_are_spelled_once() -> None:
    names = [
        getattr(row_columns, n)
        for n in ("ROW", "ROW_HASH", "FEW_SHOT", "EXEMPLARS", "SYSTEM_TEXT", "USER_TEXT", "CHOICE_ID", "CONVERSATION")
    ]
    for path in Path(templating_pkg.__file__).resolve().parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for name in names:
            assert f'"{name}"' not in text, f"{path.name} spells {name!r}: import it from curate/rows.py"
