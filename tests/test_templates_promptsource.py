"""promptsource import: a real-format templates.yaml converts, skips are reported, unsafe YAML is refused."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cardtune.curate.card.schema import Source, Task
from cardtune.curate.errors import UserInputError
from cardtune.curate.templating.library import load_template_file
from cardtune.curate.templating.promptsource import convert_promptsource, import_promptsource
from cardtune.curate.templating.render import render_task

FIXTURE = Path(__file__).parent / "data" / "templates" / "promptsource_rte.yaml"


def test_converts_and_reports_what_was_skipped() -> None:
    conv = import_promptsource(FIXTURE)
    ids = [t.id for t in conv.templates]
    assert conv.family == "super_glue_rte" and conv.dataset == "super_glue" and conv.subset == "rte"
    assert "super_glue_rte/mnli-crowdsource" in ids and "super_glue_rte/gpt-3-style" in ids
    assert "super_glue_rte/should-assume" in ids  # `{% if %}|||...{% endif %}` is re-split, not lost
    assert conv.skipped == [("highlighted", "uses the `highlight` filter (HTML markup for promptsource's viewer)")]
    assert any("choice" in note for note in conv.notes["super_glue_rte/generate-hypothesis"])
    assert any("_do_eval" in n for n in conv.notes["super_glue_rte/does-the-previous-passage-support-the-claim-that"])
    report = "\n".join(conv.report())
    assert "6 converted, 1 skipped" in report and "skipped 'highlighted'" in report


def test_converted_templates_render_like_promptsource() -> None:
    by_id = {t.id: t for t in import_promptsource(FIXTURE).templates}
    rows = pl.DataFrame(
        {
            "premise": ["The cat sat on the mat."],
            "hypothesis": ["A cat is sitting."],
            "label": [1],
            "source_ref": ["rte:0"],
        }
    )
    t = by_id["super_glue_rte/mnli-crowdsource"]
    assert t.inputs == ["hypothesis", "label", "premise"]
    assert t.spec.answer_choices == ["Yes", "No"]
    assert t.spec.metadata.metrics == ["Accuracy"] and t.spec.metadata.reference
    out = render_task(rows, Task(name="rte", source=Source(path="x")), [t], "finetune", 0)
    assert out["_prompt_text"][0].startswith("The cat sat on the mat. Using only the above description")
    assert out["_completion_text"][0] == "No"  # parts are stripped, as promptsource does
    dyn = by_id["super_glue_rte/which-is-supported"]
    out = render_task(rows, Task(name="rte", source=Source(path="x")), [dyn], "finetune", 0)
    assert out["answer_choices"][0].to_list() == ["A cat is sitting.", "not A cat is sitting."]
    assert t.line == 4 and t.file == str(FIXTURE)  # errors point at the promptsource file


def test_loading_the_file_directly_uses_the_importer() -> None:
    assert [t.id for t in load_template_file(FIXTURE)] == [t.id for t in import_promptsource(FIXTURE).templates]


def test_yaml_text_is_our_format_and_round_trips(tmp_path: Path) -> None:
    conv = import_promptsource(FIXTURE)
    out = tmp_path / "rte.yaml"
    out.write_text(conv.yaml_text, encoding="utf-8")
    assert [t.spec for t in load_template_file(out)] == [t.spec for t in conv.templates]


def test_arbitrary_tags_are_refused() -> None:
    text = FIXTURE.read_text(encoding="utf-8").replace("!TemplateMetadata", "!!python/object/apply:os.system", 1)
    with pytest.raises(UserInputError, match=r"promptsource_rte.yaml:\d+: .*tag 'tag:yaml.org,2002:python/object"):
        convert_promptsource(text, str(FIXTURE))


def test_not_a_promptsource_file() -> None:
    with pytest.raises(UserInputError, match="not a promptsource file"):
        convert_promptsource("dataset: x\n", "f.yaml")


def test_an_unsafe_answer_choices_skips_that_template_not_the_file() -> None:
    text = """dataset: x
templates:
  a: !Template
    answer_choices: '{{ "".__class__ }}'
    id: a
    jinja: '{{ premise }} ||| {{ answer_choices[label] }}'
    name: unsafe
  b: !Template
    answer_choices: yes ||| no
    id: b
    jinja: '{{ premise }} ||| {{ answer_choices[label] }}'
    name: fine
"""
    conv = convert_promptsource(text, "x/templates.yaml")
    assert [t.id for t in conv.templates] == ["x/fine"]
    assert conv.skipped == [("unsafe", "answer_choices accesses '__class__', which the sandbox forbids")]
