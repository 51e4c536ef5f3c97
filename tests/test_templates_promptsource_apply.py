"""promptsource's whole-template form: converted templates render what promptsource's ``Template.apply`` renders.

``tests/data/promptsource/templates/`` holds real template files of the promptsource 0.2.3 release (Apache-2.0,
its LICENSE beside them) with a few rows in each dataset's schema; ``expected.json`` is promptsource's own
``Template.apply`` on those rows, produced by ``make_expected.py`` there (see its docstring).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cardtune.curate.card.schema import Source, Task
from cardtune.curate.errors import UserInputError
from cardtune.curate.templating.library import Template, load_template_file, template_bytes
from cardtune.curate.templating.promptsource import Conversion, convert_promptsource, import_promptsource
from cardtune.curate.templating.render import RenderError, render_row, render_task

DATA = Path(__file__).parent / "data" / "promptsource"
EXPECTED = json.loads((DATA / "expected.json").read_text(encoding="utf-8"))
TASK = Task(name="ps", source=Source(path="x"))


@functools.cache
def _conversion(file: str) -> Conversion:
    return import_promptsource(DATA / file)


def _by_name(file: str) -> dict[str, Template]:
    conv = _conversion(file)
    return {conv.names[t.id]: t for t in conv.templates}


def _rows(file: str) -> list[dict[str, Any]]:
    lines = (DATA / file).parent.joinpath("rows.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _render(t: Template, row: dict[str, Any], i: int) -> tuple[str, str, list[str] | None]:
    frame = pl.DataFrame([{name: row[name] for name in t.inputs}]).with_columns(pl.lit(f"ps:{i}").alias("source_ref"))
    out = render_task(frame, TASK, [t], "finetune", 0)
    return out["prompt"][0], out["completion"][0], out["answer_choices"][0]


def test_every_template_of_the_fixture_files_converts() -> None:
    whole = 0
    for path in sorted((DATA / "templates").rglob("templates.yaml")):
        conv = import_promptsource(path)
        assert conv.skipped == [], (path, conv.skipped)
        whole += sum(t.jinja is not None for t in conv.templates)
    assert whole >= 15  # `|||` inside `{% if %}` blocks, one per branch, or halves sharing a `{% set %}`
    copa = _by_name("templates/super_glue/copa/templates.yaml")
    t = copa["\u2026What could happen next, C1 or C2?"]  # `{% if question == "effect" %} ... ||| ... {% endif %}`
    assert t.jinja is not None and t.spec.split == "|||" and t.spec.prompt is None
    assert t.inputs == ["choice1", "choice2", "label", "premise", "question"]
    assert copa["exercise"].jinja is None  # a top-level `|||` still splits into prompt/completion (fast path)


@pytest.mark.parametrize(
    "case", EXPECTED["cases"], ids=lambda c: f"{c['file'].split('/')[1]}:{c['template']}:{c['row']}"
)
def test_renders_what_promptsource_apply_renders(case: dict[str, Any]) -> None:
    t = _by_name(case["file"])[case["template"]]
    row = _rows(case["file"])[case["row"]]
    assert "error" not in case
    results = [tuple(r) for r in case["results"]]
    if len(results[0]) != 2 or not all(results[0]):
        # promptsource gives this row no target (or an empty one; e.g. `label: -1`): cardtune never keeps an
        # empty example, and says which template and row
        assert all(len(r) != 2 or not all(r) for r in results)
        with pytest.raises(UserInputError, match=r"rendered no `\|\|\|` for this row|rendered empty") as err:
            _render(t, row, case["row"])
        assert f"row ps:{case['row']}" in str(err.value)
        lines = (DATA / case["file"]).read_text(encoding="utf-8").splitlines()
        jinja_line = next(i for i in range(t.line, len(lines)) if lines[i].startswith("    jinja:")) + 1
        assert re.match(rf"{re.escape(str(DATA / case['file']))}:{jinja_line}: templates\[\d+\]\.", str(err.value))
        return
    prompt, completion, choices = _render(t, row, case["row"])
    if len(results) == 1:
        assert (prompt, completion) == results[0]
    else:  # `choice`: promptsource's pick is unseeded; cardtune's stable pick is one of its outcomes
        assert (prompt, completion) in results
    if case["answer_choices"] is not None:
        assert list(choices) == case["answer_choices"]


def test_the_cases_cover_the_whole_template_form() -> None:
    """The equality test above really exercises `jinja` templates, deterministic ones, and `|||` in values."""
    whole = {(c["file"], c["template"]) for c in EXPECTED["cases"] if len(c["results"]) == 1}
    whole &= {(f, n) for f in {c["file"] for c in EXPECTED["cases"]} for n, t in _by_name(f).items() if t.jinja}
    assert len(whole) >= 8
    assert any("|||" in json.dumps(r) for r in _rows("templates/squad_v2/templates.yaml"))


def test_anchored_metadata_loads() -> None:
    """squad_v2 writes `metadata: &id001 !TemplateMetadata` once and `metadata: *id001` later."""
    text = (DATA / "templates" / "squad_v2" / "templates.yaml").read_text(encoding="utf-8")
    assert "&id001 !TemplateMetadata" in text and "*id001" in text
    conv = _conversion("templates/squad_v2/templates.yaml")
    assert len(conv.templates) == 12 and conv.skipped == []
    by_line = {t.line: t for t in conv.templates}
    anchored = next(t for line, t in by_line.items() if line < 32 < line + 30)
    aliased = [t for t in conv.templates if t.spec.metadata == anchored.spec.metadata]
    assert len(aliased) >= 2 and anchored.spec.metadata.metrics == ["Squad"]
    assert [t.id for t in load_template_file(DATA / "templates" / "squad_v2" / "templates.yaml")] == [
        t.id for t in conv.templates
    ]


def test_anchors_and_tags_in_either_order_and_no_other_tag() -> None:
    base = "dataset: x\ntemplates:\n  a: !Template\n    jinja: '{{ q }} ||| {{ a }}'\n    name: one\n"
    ok = base + "    metadata: &m !TemplateMetadata\n      metrics: [BLEU]\n"
    ok += "  b: !Template\n    jinja: '{{ q }} ||| {{ a }}'\n    name: two\n    metadata: *m\n"
    ok += "  c: !Template\n    jinja: '{{ q }} ||| {{ a }}'\n    name: three\n"
    ok += "    metadata: !TemplateMetadata &n\n      metrics: [ROUGE]\n"
    conv = convert_promptsource(ok, "x.yaml")
    assert [t.spec.metadata.metrics for t in conv.templates] == [["BLEU"], ["BLEU"], ["ROUGE"]]
    bad = base + "    metadata: &m !!python/object:os.system\n      metrics: [BLEU]\n"
    with pytest.raises(UserInputError, match=r"x.yaml:6: .*tag 'tag:yaml.org,2002:python/object:os.system'"):
        convert_promptsource(bad, "x.yaml")


def _whole_file(tmp_path: Path, jinja: str, inputs: str = "[q, a]", extra: str = "") -> Path:
    path = tmp_path / "t.yaml"
    text = f"family: t\ntemplates:\n  - id: t/x\n    inputs: {inputs}\n    jinja: {json.dumps(jinja)}\n"
    path.write_text(text + "    split: '|||'\n    strip: true\n" + extra, encoding="utf-8")
    return path


def test_the_sandbox_applies_to_the_whole_form(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as err:
        load_template_file(_whole_file(tmp_path, "{{ q.__class__ }} ||| {{ a }}"))
    assert f"{tmp_path / 't.yaml'}:5: templates[0].jinja: template 't/x': access to '__class__' is not allowed" in str(
        err.value
    )
    (t,) = load_template_file(_whole_file(tmp_path, "{{ q }}{{ a.append(1) }} ||| {{ a }}"))
    with pytest.raises(UserInputError, match=r"t.yaml:5: templates\[0\].jinja: .*sandbox: .*unsafe"):
        render_task(pl.DataFrame({"q": ["x"], "a": [[1]], "source_ref": ["r:0"]}), TASK, [t], "finetune", 0)
    (t,) = load_template_file(_whole_file(tmp_path, "{{ q * 99999999 }} ||| {{ a }}"))
    with pytest.raises(RenderError, match="jinja: sandbox: render limit"):
        render_row(t, {"q": "xy", "a": "b"})


def test_a_template_may_change_only_the_lists_it_built(tmp_path: Path) -> None:
    source = "{% set seen = [] %}{% for x in a %}{{ seen.append(x | upper) or '' }}{% endfor %}{{ q }} ||| {{ seen }}"
    (t,) = load_template_file(_whole_file(tmp_path, source))
    r = render_row(t, {"q": "Q", "a": ["p", "q"]})
    assert (r.turns[0][1], r.completion) == ("Q", "['P', 'Q']")
    text = "dataset: x\ntemplates:\n  a: !Template\n    jinja: '{{ q }}{{ a.append(1) }} ||| {{ a }}'\n    name: n\n"
    conv = convert_promptsource(text, "x.yaml")
    assert conv.skipped == [("n", "changes the row's `a` with `.append(...)`, which the sandbox refuses")]


@pytest.mark.parametrize(
    ("jinja", "row", "message"),
    [
        ("{% if a %}{{ q }} ||| {{ a }}{% endif %}", {"q": "x", "a": ""}, "rendered no `|||` for this row"),
        ("{{ q }} ||| {{ a }} ||| more", {"q": "x", "a": "y"}, "rendered `|||` 2 times for this row"),
        (
            "{{ q }} {% if a == 'z' %}|||{% endif %}",
            {"q": "x", "a": "z"},
            "jinja (the completion, after `|||`) rendered empty",
        ),
    ],
)
def test_render_errors_name_file_line_field_and_row(
    tmp_path: Path, jinja: str, row: dict[str, str], message: str
) -> None:
    (t,) = load_template_file(_whole_file(tmp_path, jinja))
    frame = pl.DataFrame({**{k: [v] for k, v in row.items()}, "source_ref": ["ps:7"]})
    with pytest.raises(UserInputError) as err:
        render_task(frame, TASK, [t], "finetune", 0)
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 't.yaml'}:5: templates[0].jinja: template 't/x': ")
    assert "row ps:7" in text
    assert message in text, text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", None),
        ("    prompt: '{{ q }}'\n", "give either `jinja`"),
    ],
)
def test_schema_of_the_whole_form(tmp_path: Path, extra: str, message: str | None) -> None:
    path = _whole_file(tmp_path, "{{ q }} ||| {{ a }}", extra=extra)
    if message is None:
        (t,) = load_template_file(path)
        assert t.turns == () and t.completion is None and t.jinja is not None
        return
    with pytest.raises(UserInputError, match=message):
        load_template_file(path)


def test_split_and_jinja_need_each_other(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "family: t\ntemplates:\n  - id: t/x\n    inputs: [q]\n    jinja: '{{ q }} ||| x'\n", encoding="utf-8"
    )
    with pytest.raises(UserInputError, match=r"t.yaml:3: templates\[0\]: .*`jinja` needs `split`"):
        load_template_file(path)
    path.write_text(
        "family: t\ntemplates:\n  - id: t/x\n    inputs: [q]\n    prompt: '{{ q }}'\n    completion: x\n"
        "    split: '|||'\n",
        encoding="utf-8",
    )
    with pytest.raises(UserInputError, match="`split` is only for a `jinja` template"):
        load_template_file(path)


def test_literal_text_and_bytes(tmp_path: Path) -> None:
    (t,) = load_template_file(_whole_file(tmp_path, "Question: {{ q }} ||| Answer: {{ a }}"))
    assert t.literal_text() == "Question: \n Answer: "
    assert b'"split": "|||"' in template_bytes(t)
    plain = _by_name("templates/super_glue/copa/templates.yaml")["exercise"]
    assert b'"jinja"' not in template_bytes(plain) and b'"split"' not in template_bytes(plain)


def test_the_fast_path_renders_a_simple_whole_template_identically(tmp_path: Path) -> None:
    (t,) = load_template_file(_whole_file(tmp_path, "Q: {{ q }} ||| {{ a | trim }}"))
    rows = pl.DataFrame(
        {"q": ["one", "two ||| three", "four"], "a": [" x ", "y", "z|||w"], "source_ref": ["r:0", "r:1", "r:2"]}
    )
    from cardtune.curate.templating import fastrender

    assert fastrender.plan(t, rows.schema, {"q": False, "a": False}, False) is not None
    fast, slow = (render_task(rows, TASK, [t], "finetune", 0, fast=f) for f in (True, False))
    assert fast.equals(slow)
    assert fast["prompt"].to_list() == ["Q: one", "Q: two ||| three", "Q: four"]
    assert fast["completion"].to_list() == ["x", "y", "z|||w"]
    # a value ending in `|` next to the literal `||` makes a second marker: the fast path declines, Jinja reports it
    (t,) = load_template_file(_whole_file(tmp_path, "{{ q }}|| {{ a }} ||| done"))
    odd = pl.DataFrame({"q": ["x|"], "a": ["y"], "source_ref": ["r:0"]})
    with pytest.raises(UserInputError, match=re.escape("rendered `|||` 2 times for this row")):
        render_task(odd, TASK, [t], "finetune", 0)


def test_the_template_docs_list_every_field_and_their_examples_work(tmp_path: Path) -> None:
    from cardtune.curate.templating.schema import TemplateFile, TemplateSpec

    doc = (Path(__file__).parents[1] / "docs" / "templates.md").read_text(encoding="utf-8")
    for name in [*TemplateFile.model_fields, *TemplateSpec.model_fields]:
        assert f"| `{name}` |" in doc, name
    first, whole = re.findall(r"```yaml\n(.*?)```", doc, re.S)[:2]  # the third is the `turns` form
    (tmp_path / "a.yaml").write_text(first, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(f"family: super_glue_copa\ntemplates:\n{whole}", encoding="utf-8")
    assert [t.id for t in load_template_file(tmp_path / "a.yaml")] == ["nli/does-it-follow"]
    (t,) = load_template_file(tmp_path / "b.yaml")
    row = _rows("templates/super_glue/copa/templates.yaml")[1]
    r = render_row(t, {k: row[k] for k in t.inputs})
    assert r.turns[0][1].startswith("I tipped the bottle. What could happen next,")
    assert r.completion == "The liquid in the bottle poured out."


def test_import_writes_the_whole_form_and_it_round_trips(tmp_path: Path) -> None:
    conv = _conversion("templates/super_glue/copa/templates.yaml")
    assert "split: '|||'" in conv.yaml_text and "jinja:" in conv.yaml_text
    assert any("as `jinja` + `split`" in line for line in conv.report())
    out = tmp_path / "copa.yaml"
    out.write_text(conv.yaml_text, encoding="utf-8")
    assert [t.spec for t in load_template_file(out)] == [t.spec for t in conv.templates]


def test_exemplars_of_a_whole_template_are_split_too(tmp_path: Path) -> None:
    (t,) = load_template_file(_whole_file(tmp_path, "{% if q %}Q: {{ q }} ||| {{ a }}{% endif %}"))
    r = render_row(t, {"q": "three?", "a": "3"}, 0, [{"q": "one?", "a": "1"}, {"q": "two?", "a": "2"}])
    assert r.turns[0][1] == "Q: one?\n1\n\nQ: two?\n2\n\nQ: three?" and r.completion == "3"
