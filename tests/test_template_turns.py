"""The `turns:` template form: one user/assistant pair per element of list inputs (a per-row number of turns).

Schema errors naming the field; a 3-turn row rendered exactly; every per-row error naming template, file line,
task and row; lint (variables, examples); the fast path declining; boilerplate; a card built end to end whose
parquet holds the conversation; and the instruction-mode loss mask covering every assistant turn.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cardtune.curate.card.schema import Source, Task
from cardtune.curate.errors import UserInputError
from cardtune.curate.pipeline import build
from cardtune.curate.templating.fastrender import plan as fast_plan
from cardtune.curate.templating.library import Template, TemplateLibrary, load_template_file, template_bytes
from cardtune.curate.templating.lint import lint_paths
from cardtune.curate.templating.plan import few_shot_params
from cardtune.curate.templating.preview import preview_row
from cardtune.curate.templating.render import RenderError, render_row, render_task

STORY_QA = """\
family: coqa
examples:
  - story: Cotton is a white kitten who lives in a barn.
    questions: ["What color is Cotton?", "Where does she live?", "Is she a dog?"]
    answers: [white, in a barn, "no"]
templates:
  - id: coqa/story-qa
    inputs: [story, questions, answers]
    system: "Answer questions about the story."
    turns:
      over: [questions, answers]
      user: "{% if turn.first %}{{ story }}\\n\\n{% endif %}{{ turn.questions }}"
      assistant: "{{ turn.answers }}"
"""
ROW = {
    "story": "Cotton is a white kitten who lives in a barn.",
    "questions": ["What color is Cotton?", "Where does she live?", "Is she a dog?"],
    "answers": ["white", "in a barn", "no"],
}


def _file(tmp_path: Path, text: str = STORY_QA, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _one(tmp_path: Path, text: str = STORY_QA) -> Template:
    (t,) = load_template_file(_file(tmp_path, text))
    return t


def _template(body: str, inputs: str = "[story, questions, answers]") -> str:
    return f"family: coqa\ntemplates:\n  - id: coqa/x\n    inputs: {inputs}\n{body}"


TURNS = "    turns:\n      over: [questions, answers]\n      user: '{{ turn.questions }}'\n      assistant: '{{ turn.answers }}'\n"


# ---------------------------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    ("body", "inputs", "expected"),
    [
        (TURNS + "    prompt: '{{ story }}'\n", None, "give either `turns` or `prompt`, not both"),
        (TURNS + "    completion: '{{ story }}'\n", None, "give either `turns` or `completion`, not both"),
        (
            TURNS + "    messages: [{role: user, content: hi}, {role: assistant, content: '{{ story }}'}]\n",
            None,
            "give either `turns` or `messages`, not both",
        ),
        (TURNS + "    jinja: '{{ story }} ||| x'\n    split: '|||'\n", None, "give either `turns` or `jinja`, `split`"),
        (
            "    turns:\n      over: [questions, notes]\n      user: '{{ turn.questions }}'\n      assistant: x\n",
            None,
            "turns.over names ['notes'] that are not in inputs",
        ),
        (
            "    turns:\n      over: [questions, questions]\n      user: '{{ turn.questions }}'\n      assistant: x\n",
            None,
            "turns.over: names repeat",
        ),
        (
            "    turns:\n      over: [index, answers]\n      user: '{{ turn.index }}'\n      assistant: x\n",
            "[index, answers]",
            "turns.over: ['index'] clash with what `turn` holds itself",
        ),
        (
            "    turns:\n      over: [values]\n      user: '{{ turn.values }}'\n      assistant: x\n",
            "[values]",
            "turns.over: ['values'] clash",
        ),
        (TURNS, "[story, questions, answers, turn]", "inputs: `turn` is the name a turns template reads"),
        (TURNS + "    metadata: {shots: few}\n", None, "multi-turn (turns) templates are zero-shot"),
        (TURNS + "    few_shot: {style: turns}\n", None, "few_shot does not apply to a turns template"),
        ("    turns:\n      over: []\n      user: x\n      assistant: y\n", None, "at least 1 item"),
        ("    turns:\n      over: [questions]\n      user: '{{ turn.questions }}'\n", None, "assistant"),
    ],
)
def test_schema_errors_name_the_field(tmp_path: Path, body: str, inputs: str | None, expected: str) -> None:
    path = _file(tmp_path, _template(body, inputs or "[story, questions, answers]"))
    with pytest.raises(UserInputError) as err:
        load_template_file(path)
    text = str(err.value)
    assert expected in text, text
    assert text.startswith(f"{path}:"), text
    assert "templates[0]" in text, text


def test_system_may_not_read_turn(tmp_path: Path) -> None:
    path = _file(tmp_path, _template("    system: 'Turn {{ turn.number }}'\n" + TURNS, "[questions, answers]"))
    with pytest.raises(UserInputError) as err:
        load_template_file(path)
    assert f"{path}:5: templates[0].system: template 'coqa/x': `turn` is only defined in turns.user" in str(err.value)


def test_other_forms_keep_their_bytes(tmp_path: Path) -> None:
    (t,) = load_template_file(_file(tmp_path, _template("    prompt: '{{ story }}'\n    completion: x\n", "[story]")))
    assert b'"turns"' not in template_bytes(t)  # version ids of existing cards do not change
    assert b'"turns": {"assistant": "{{ turn.answers }}"' in template_bytes(_one(tmp_path))


# ---------------------------------------------------------------------------------------------- rendering


def test_a_three_turn_row_renders_every_turn(tmp_path: Path) -> None:
    t = _one(tmp_path)
    r = render_row(t, ROW)
    assert r.system == "Answer questions about the story."
    assert r.turns == (
        ("user", "Cotton is a white kitten who lives in a barn.\n\nWhat color is Cotton?"),
        ("assistant", "white"),
        ("user", "Where does she live?"),
        ("assistant", "in a barn"),
        ("user", "Is she a dog?"),
    )
    assert r.completion == "no"
    assert render_row(t, ROW) == r  # deterministic


def test_render_task_emits_the_messages_shape(tmp_path: Path) -> None:
    t = _one(tmp_path)
    rows = pl.DataFrame([ROW, {**ROW, "questions": ["Who?"], "answers": ["Cotton"]}]).with_columns(
        pl.Series("source_ref", ["coqa:0", "coqa:1"])
    )
    out = render_task(rows, _task(), [t], "instruction", seed=0)
    first, second = out.iter_rows(named=True)
    assert first["prompt"] == [
        {"role": "system", "content": "Answer questions about the story."},
        {"role": "user", "content": "Cotton is a white kitten who lives in a barn.\n\nWhat color is Cotton?"},
        {"role": "assistant", "content": "white"},
        {"role": "user", "content": "Where does she live?"},
        {"role": "assistant", "content": "in a barn"},
        {"role": "user", "content": "Is she a dog?"},
    ]
    assert first["completion"] == [{"role": "assistant", "content": "no"}]
    assert second["prompt"] == [
        {"role": "system", "content": "Answer questions about the story."},
        {"role": "user", "content": "Cotton is a white kitten who lives in a barn.\n\nWho?"},
    ]
    assert second["completion"] == [{"role": "assistant", "content": "Cotton"}]
    again = render_task(rows, _task(), [t], "instruction", seed=0)
    assert again.equals(out)
    fine = render_task(rows, _task(), [t], "finetune", seed=0).row(0, named=True)
    assert fine["prompt"] == (
        "Answer questions about the story.\n\nCotton is a white kitten who lives in a barn.\n\nWhat color is Cotton?"
        "\n\nwhite\n\nWhere does she live?\n\nin a barn\n\nIs she a dog?"
    )
    assert fine["completion"] == "no"


def test_turn_positions_mappings_and_numbers(tmp_path: Path) -> None:
    text = _template(
        "    turns:\n      over: [dialog, score]\n"
        "      user: '{{ turn.number }}/{{ turn.count }} i={{ turn.index }} {{ turn.dialog.q }}"
        "{% if turn.last %} (last){% endif %}'\n"
        "      assistant: '{{ turn.dialog.a }} ({{ turn[\"score\"] }})'\n",
        "[dialog, score]",
    )
    t = _one(tmp_path, text)
    r = render_row(t, {"dialog": [{"q": "Hi?", "a": "Hello."}, {"q": "Bye?", "a": "Bye."}], "score": [1, 2.5]})
    assert r.turns == (("user", "1/2 i=0 Hi?"), ("assistant", "Hello. (1)"), ("user", "2/2 i=1 Bye? (last)"))
    assert r.completion == "Bye. (2.5)"
    assert t.variables() == {"dialog", "score"}
    whole = _one(
        tmp_path,
        _template("    turns:\n      over: [a, b]\n      user: '{{ turn | tojson }}'\n      assistant: x\n", "[a, b]"),
    )
    assert whole.variables() == {"a", "b"}  # `turn` used whole reads every `over` input
    assert render_row(whole, {"a": ["p"], "b": [3]}).turns == (
        ("user", '{"a": "p", "b": 3, "count": 1, "first": true, "index": 0, "last": true, "number": 1}'),
    )


def _task() -> Task:
    return Task(name="coqa", source=Source(path="x.jsonl"), templates=["coqa/*"])


def _fail(t: Template, row: dict[str, Any]) -> str:
    frame = pl.DataFrame([ROW, row], strict=False).with_columns(pl.Series("source_ref", ["coqa:0", "coqa:1"]))
    with pytest.raises(UserInputError) as err:
        render_task(frame, _task(), [t], "instruction", seed=0)
    return str(err.value)


@pytest.mark.parametrize(
    ("change", "field", "line", "expected"),
    [
        (
            {"answers": ["white", "in a barn"]},
            "over",
            11,
            "the `over` lists differ in length for this row (questions has 3, answers has 2)",
        ),
        ({"questions": [], "answers": []}, "over", 11, "'questions' and 'answers' are empty for this row: no turns"),
        ({"answers": ["white", None, "no"]}, "over", 11, "answers[1] is null (filter such rows out, or list 'answers'"),
        ({"answers": ["white", "  ", "no"]}, "assistant", 13, "turns.assistant rendered empty for turn 2 of 3"),
        ({"questions": ["a", "", "c"]}, "user", 12, "turns.user rendered empty for turn 2 of 3"),
    ],
)
def test_row_errors_name_template_line_task_and_row(
    tmp_path: Path, change: dict[str, Any], field: str, line: int, expected: str
) -> None:
    path = tmp_path / "t.yaml"
    text = _fail(_one(tmp_path), {**ROW, **change})
    assert text.startswith(f"{path}:{line}: templates[0].turns.{field}: template 'coqa/story-qa': "), text
    assert expected in text, text
    assert text.endswith("(task 'coqa', row coqa:1)"), text


def test_a_value_that_is_not_a_list_is_an_error(tmp_path: Path) -> None:
    t = _one(tmp_path)
    with pytest.raises(RenderError) as err:
        render_row(t, {**ROW, "answers": "white"})
    issue = err.value.issue("coqa", "coqa:7")
    assert (issue.line, issue.loc) == (11, ("templates", 0, "turns", "over"))
    assert "input 'answers' is a str ('white'), not a list" in issue.message
    assert issue.message.endswith("(task 'coqa', row coqa:7)")
    with pytest.raises(RenderError) as err:
        render_row(t, {**ROW, "answers": None})  # a null one too, even for a nullable input
    assert "input 'answers' is null, not a list" in err.value.message


def test_a_null_column_value_names_the_row(tmp_path: Path) -> None:
    text = _fail(_one(tmp_path), {**ROW, "answers": None})
    assert "task 'coqa', row coqa:1: input 'answers' of template 'coqa/story-qa' is null" in text


def test_nullable_allows_null_elements(tmp_path: Path) -> None:
    text = STORY_QA.replace(
        "    inputs: [story, questions, answers]\n",
        "    inputs: [story, questions, answers]\n    nullable: [answers]\n",
    ).replace('assistant: "{{ turn.answers }}"', "assistant: \"{{ turn.answers or 'unknown' }}\"")
    r = render_row(_one(tmp_path, text), {**ROW, "answers": ["white", None, "no"]})
    assert r.turns[3] == ("assistant", "unknown")


def test_an_undefined_turn_field_names_the_turn(tmp_path: Path) -> None:
    t = _one(tmp_path, STORY_QA.replace("{{ turn.answers }}", "{{ turn.answer }}"))
    with pytest.raises(RenderError) as err:
        render_row(t, ROW)
    assert "turns.assistant:" in err.value.message and "'answer'" in err.value.message
    assert err.value.message.endswith("(turn 1 of 3)")


# ---------------------------------------------------------------------------------------------- other paths


def test_never_fast_never_few_shot_and_boilerplate(tmp_path: Path) -> None:
    t = _one(tmp_path)
    plain = "    turns:\n      over: [questions]\n      user: '{{ story }}'\n      assistant: '{{ story }}'\n"
    simple = _one(tmp_path, _template(plain, "[story, questions]"))  # parts the fast path could translate
    schema = {"story": pl.String, "questions": pl.String}
    assert fast_plan(simple, schema, dict.fromkeys(schema, False), few_shot=False) is None
    assert few_shot_params(t, None) is None
    rows = [{**ROW, "source_ref": f"coqa:{i}"} for i in range(4)]
    assert preview_row(t, rows, 0, shots=2).shots == 0  # the studio's preview gives it no exemplars either
    with pytest.raises(ValueError, match="zero-shot"):
        render_row(t, ROW, 0, [ROW])
    assert t.multi_turn
    assert t.literal_text() == "Answer questions about the story."
    text = STORY_QA.replace("{{ turn.answers }}", "The answer: {{ turn.answers }}")
    assert _one(tmp_path, text).literal_text() == "Answer questions about the story.\nThe answer: "


def test_fast_and_jinja_engines_agree(tmp_path: Path) -> None:
    t = _one(tmp_path)
    rows = pl.DataFrame([ROW] * 3).with_columns(pl.Series("source_ref", ["c:0", "c:1", "c:2"]))
    assert render_task(rows, _task(), [t], "instruction", 0).equals(
        render_task(rows, _task(), [t], "instruction", 0, fast=False)
    )


def test_lint_checks_variables_and_renders_examples(tmp_path: Path) -> None:
    ok = lint_paths([_file(tmp_path, STORY_QA, "ok.yaml")])
    assert ok.ok and not ok.warnings, ok.errors
    unused = STORY_QA.replace("{% if turn.first %}{{ story }}\\n\\n{% endif %}", "")
    report = lint_paths([_file(tmp_path, unused, "unused.yaml")])
    assert [i.message for i in report.errors] == [
        "template 'coqa/story-qa': declares input(s) story that no part of the template uses"
    ]
    stray = STORY_QA.replace("{{ turn.answers }}", "{{ turn.answers }} {{ turn.story }}")
    messages = [i.message for i in lint_paths([_file(tmp_path, stray, "stray.yaml")]).errors]
    assert "template 'coqa/story-qa': reads turn.story, but `turn` holds only the turns.over inputs" in messages[0]
    assert any("'dict object' has no attribute 'story'" in m and "(example row 0)" in m for m in messages)
    bad_row = STORY_QA.replace('answers: [white, in a barn, "no"]', "answers: [white]")
    messages = [str(i) for i in lint_paths([_file(tmp_path, bad_row, "bad.yaml")]).errors]
    assert len(messages) == 1 and "turns.over: " in messages[0] and "(example row 0)" in messages[0], messages
    spaced = STORY_QA.replace("answers: [white,", "answers: [' white',")
    messages = [i.message for i in lint_paths([_file(tmp_path, spaced, "spaced.yaml")]).errors]
    assert messages == [
        "template 'coqa/story-qa': an assistant turn has leading/trailing whitespace on example row 0: ' white'"
    ]


def test_the_shipped_template_and_the_docs_example() -> None:
    t = TemplateLibrary.load().get("dialogue/story-qa")
    assert t.over is not None and t.over.names == ("questions", "answers")
    r = render_row(t, dict(t.examples[0]))
    assert [role for role, _ in r.turns] == ["user", "assistant", "user", "assistant", "user"]
    doc = (Path(__file__).parents[1] / "docs" / "templates.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "turns:" in b]
    (documented,) = _docs_templates(block)
    assert render_row(documented, ROW).turns[-1] == ("user", "Is she a dog?")


def _docs_templates(block: str) -> list[Template]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "doc.yaml"
        path.write_text(f"family: dialogue\ntemplates:\n{block}", encoding="utf-8")
        return load_template_file(path)


# ---------------------------------------------------------------------------------------------- a build


CARD = """\
name: coqa-tiny
templates_dir: tpl
tasks:
  - name: coqa
    source: {{path: coqa.jsonl}}
    templates: [coqa/story-qa]
mixture: {{seed: 1}}
split: {{eval_fraction: 0.0, seed: 1}}
output: {{dir: {out}}}
"""


def test_a_card_builds_the_conversations(tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    _file(tmp_path / "tpl", STORY_QA, "coqa.yaml")
    rows = [
        {
            "story": f"Story {i}: a kitten called Cotton{i} lives in barn {i}.",
            "questions": [f"Who lives in barn {i}?", "Is it a kitten?", "What is its name?"][: 1 + i % 3],
            "answers": [f"Cotton{i}", "yes", f"Cotton{i}"][: 1 + i % 3],
        }
        for i in range(6)
    ]
    (tmp_path / "coqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    card = tmp_path / "card.yaml"
    card.write_text(CARD.format(out=tmp_path / "datasets"), encoding="utf-8")
    result = build(card)
    train = pl.read_parquet(result.version_dir / "train.parquet")
    assert train.height == 6
    by_ref = {r["source_ref"]: r for r in train.iter_rows(named=True)}
    two = next(r for r in by_ref.values() if r["prompt"][1]["content"].startswith("Story 1:"))
    assert [m["content"] for m in two["prompt"]] == [
        "Answer questions about the story.",
        "Story 1: a kitten called Cotton1 lives in barn 1.\n\nWho lives in barn 1?",
        "Cotton1",
        "Is it a kitten?",
    ]
    assert two["completion"] == [{"role": "assistant", "content": "yes"}]
    assert sorted(len(r["prompt"]) for r in by_ref.values()) == [2, 2, 4, 4, 6, 6]
    assert build(card, force=True).version_id == result.version_id


# ---------------------------------------------------------------------------------------------- training masks


def test_every_assistant_turn_is_trained(tmp_path: Path) -> None:
    from test_train_turns import _expected_by_text, _loaded

    from cardtune.train import chat, models, parity

    t = _one(tmp_path)
    frame = pl.DataFrame([ROW]).with_columns(pl.Series("source_ref", ["coqa:0"]))
    row = render_task(frame, _task(), [t], "instruction", seed=0).row(0, named=True)
    msgs = [*row["prompt"], *row["completion"]]
    loaded = _loaded("chatml")
    tok, stops = loaded.tokenizer, models.stop_token_ids(loaded)
    policy = chat.TurnPolicy()
    ids, mask = chat.conversation_features(tok, row, {}, stops, policy)
    assert mask == _expected_by_text(tok, msgs, "<|im_end|>", policy)
    trained = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert trained.count("<|im_end|>") == 3
    for answer in ("white", "in a barn", "no"):
        assert answer in trained
    assert "What color" not in trained and "Cotton is a white kitten" not in trained
    assert "Answer questions" not in trained
    last = chat.conversation_features(tok, row, {}, stops, chat.TurnPolicy(turns="last"))[1]
    assert sum(last) < sum(mask) and tok.decode([i for i, m in zip(ids, last, strict=True) if m]).startswith("no")
    assert parity.check_parity(tok, [row], conversational=True, stop_ids=stops, policy=policy).turns_checked == 3
