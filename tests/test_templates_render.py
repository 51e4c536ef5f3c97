"""Rendering rows: row contract shapes, stable choices, byte-identical reruns, and every bad-input error."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardtune.curate.card.schema import FewShot, Source, Task
from cardtune.curate.errors import UserInputError
from cardtune.curate.templating.library import Template, TemplateLibrary, load_template_file, load_templates
from cardtune.curate.templating.render import render_row, render_task

DATA = Path(__file__).parent / "data" / "templates"
LIB = TemplateLibrary.load()
CONTRACT = [
    "task",
    "template_id",
    "source_ref",
    "prompt",
    "completion",
    "answer_choices",
    "_prompt_text",
    "_completion_text",
    "_fields_text",
]


def nli_rows(n: int, task: str = "nli") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "premise": [f"Premise number {i} talks about a red bicycle." for i in range(n)],
            "hypothesis": [f"Hypothesis {i}." for i in range(n)],
            "label": [i % 3 for i in range(n)],
            "source_ref": [f"{task}:{i}" for i in range(n)],
        }
    )


def task(name: str = "nli", few_shot: FewShot | None = None) -> Task:
    return Task(name=name, source=Source(path="x.jsonl"), templates=["nli/*"], few_shot=few_shot)


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_instruction_mode_emits_conversational_prompt_and_completion() -> None:
    out = render_task(nli_rows(50), task(), LIB.resolve(["nli/*"]), "instruction", seed=1)
    assert out.columns == CONTRACT
    assert out.schema["prompt"] == pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    for row in out.iter_rows(named=True):
        roles = [m["role"] for m in row["prompt"]]
        assert roles in (["user"], ["system", "user"])
        assert [m["role"] for m in row["completion"]] == ["assistant"]
        assert row["completion"][0]["content"] == row["_completion_text"]
        assert row["prompt"][-1]["content"] in row["_prompt_text"]
    assert out["template_id"].n_unique() > 1  # several templates in use


def test_finetune_mode_emits_strings_and_choices() -> None:
    templates = [LIB.get("nli/premise-hypothesis-labels")]
    out = render_task(nli_rows(6), task(), templates, "finetune", seed=1)
    assert out.schema["prompt"] == pl.String and out.schema["completion"] == pl.String
    first = out.row(0, named=True)
    assert first["prompt"].startswith("You are a careful annotator")  # system text leads the plain prompt
    assert first["completion"] == "entailment"
    assert first["answer_choices"] == ["entailment", "neutral", "contradiction"]
    assert "Premise number 0" in first["_fields_text"] and "Hypothesis 0." in first["_fields_text"]


def test_reruns_are_byte_identical_and_seed_matters() -> None:
    templates = LIB.resolve(["nli/*"])
    a = render_task(nli_rows(200), task(), templates, "instruction", seed=7)
    b = render_task(nli_rows(200), task(), templates, "instruction", seed=7)
    assert a.write_ipc(None).getvalue() == b.write_ipc(None).getvalue()
    c = render_task(nli_rows(200), task(), templates, "instruction", seed=8)
    assert a["template_id"].to_list() != c["template_id"].to_list()


def test_choice_depends_on_row_key_not_position_or_other_rows() -> None:
    templates = LIB.resolve(["nli/*"])
    full = render_task(nli_rows(100), task(), templates, "instruction", seed=3)
    part = render_task(nli_rows(100).reverse().head(40), task(), templates, "instruction", seed=3)
    by_ref = dict(zip(full["source_ref"], full["_prompt_text"], strict=True))
    assert all(by_ref[r] == p for r, p in zip(part["source_ref"], part["_prompt_text"], strict=True))


def test_few_shot_exemplars_come_from_the_pool_never_the_row_itself() -> None:
    templates = [LIB.get("nli/premise-hypothesis-labels")]
    out = render_task(nli_rows(30), task(few_shot=FewShot(k=2, fraction=1.0)), templates, "finetune", seed=5)
    for i, text in enumerate(out["_prompt_text"]):
        assert text.count("Premise: ") == 3  # two exemplars + the row
        own = f"Premise number {i} talks"
        assert text.count(own) == 1 and text.rindex("Premise: ") == text.index(own) - len("Premise: ")


def test_few_shot_fraction_and_zero_shot_templates() -> None:
    templates = LIB.resolve(["nli/*"])
    out = render_task(nli_rows(300), task(few_shot=FewShot(k=1, fraction=0.5)), templates, "finetune", seed=5)
    counts = [t.count("Premise number") for t in out["_prompt_text"]]
    shots = sum(c > 1 for c in counts)
    assert 60 < shots < 240
    inverted = out.filter(pl.col("template_id") == "nli/write-entailed")["_prompt_text"]
    assert all(t.count("Premise number") == 1 for t in inverted)  # shots: zero


def test_few_shot_turns_style(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """family: fs
templates:
  - id: fs/turns
    inputs: [q, a]
    few_shot: {style: turns}
    metadata: {shots: few}
    prompt: "{{ q }}"
    completion: "{{ a }}"
""",
    )
    rows = pl.DataFrame({"q": ["q0", "q1", "q2", "q3"], "a": ["a0", "a1", "a2", "a3"], "source_ref": list("wxyz")})
    out = render_task(rows, Task(name="fs", source=Source(path="x")), load_template_file(path), "instruction", 0)
    prompt = out.row(0, named=True)["prompt"]
    assert [m["role"] for m in prompt] == ["user", "assistant"] * 3 + ["user"]
    assert prompt[-1]["content"] == "q0" and all(m["content"] not in ("q0", "a0") for m in prompt[:-1])


@settings(max_examples=40, deadline=None)
@given(
    premise=st.text(min_size=1, max_size=40).filter(str.strip),
    hypothesis=st.text(min_size=1, max_size=40).filter(str.strip),
    label=st.integers(0, 2),
    seed=st.integers(-(2**31), 2**31),
)
def test_rendering_never_emits_undefined(premise: str, hypothesis: str, label: int, seed: int) -> None:
    rows = pl.DataFrame({"premise": [premise], "hypothesis": [hypothesis], "label": [label], "source_ref": ["r:0"]})
    for t in LIB.resolve(["nli/*"]):
        out = render_task(rows, task(), [t], "finetune", seed=seed)
        text = out["_prompt_text"][0] + out["_completion_text"][0]
        assert "Undefined" not in text and "None" not in text.replace(premise, "").replace(hypothesis, "")
        assert premise in text or hypothesis in text


def test_missing_input_column_names_task_template_and_field() -> None:
    rows = nli_rows(3).drop("hypothesis").with_columns(pl.col("premise").alias("hypotesis"))
    with pytest.raises(UserInputError) as err:
        render_task(rows, task(), [LIB.get("nli/does-it-follow")], "instruction", 0)
    msg = str(err.value)
    assert "task 'nli'" in msg and "'hypothesis'" in msg and "nli/does-it-follow" in msg and "nli:0" in msg
    assert "did you mean 'hypotesis'" in msg


def test_null_input_names_task_row_and_field() -> None:
    rows = nli_rows(5).with_columns(
        pl.when(pl.int_range(5) == 3).then(None).otherwise(pl.col("premise")).alias("premise")
    )
    with pytest.raises(UserInputError, match=r"task 'nli', row nli:3: input 'premise'"):
        render_task(rows, task(), [LIB.get("nli/does-it-follow")], "instruction", 0)


def test_empty_render_is_an_error_with_file_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'family: e\ntemplates:\n  - id: e/x\n    inputs: [x]\n    prompt: "say {{ x }}"\n'
        "    completion: \"{% if x == 'ok' %}{{ x }}{% endif %}\"\n",
    )
    # a template bug: the input is not empty, yet the completion renders empty
    rows = pl.DataFrame({"x": ["ok", "fine"], "source_ref": ["e:0", "e:1"]})
    with pytest.raises(UserInputError) as err:
        render_task(rows, Task(name="e", source=Source(path="x")), load_template_file(path), "instruction", 0)
    msg = str(err.value)
    assert f"{path}:6: templates[0].completion: template 'e/x'" in msg
    assert "rendered empty" in msg and "row e:1" in msg


def test_empty_input_renders_for_the_quality_filter(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'family: e\ntemplates:\n  - id: e/x\n    inputs: [q, x]\n    prompt: "say {{ q }}"\n    completion: "{{ x | trim }}"\n',
    )
    rows = pl.DataFrame({"q": ["a", "b"], "x": ["ok", "   "], "source_ref": ["e:0", "e:1"]})
    out = render_task(rows, Task(name="e", source=Source(path="x")), load_template_file(path), "finetune", 0)
    assert out["completion"].to_list() == ["ok", ""]


def test_runtime_error_names_template_part_line_task_and_row(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "family: r\ntemplates:\n  - id: r/x\n    inputs: [d]\n    prompt: |\n      one\n      {{ d.missing }}\n    completion: ok\n",
    )
    rows = pl.DataFrame({"d": [{"present": 1}], "source_ref": ["r:0"]})
    with pytest.raises(UserInputError) as err:
        render_task(rows, Task(name="r", source=Source(path="x")), load_template_file(path), "instruction", 0)
    assert f"{path}:7: templates[0].prompt: template 'r/x': prompt:" in str(err.value)
    assert "missing" in str(err.value) and "(task 'r', row r:0)" in str(err.value)


def test_syntax_error_gives_file_line_and_id() -> None:
    with pytest.raises(UserInputError) as err:
        load_template_file(DATA / "bad_syntax.yaml")
    assert f"{DATA / 'bad_syntax.yaml'}:11: templates[1].prompt: template 'bad/broken': Jinja syntax error" in str(
        err.value
    )


def test_sandbox_escape_is_rejected_before_rendering() -> None:
    with pytest.raises(UserInputError) as err:
        load_template_file(DATA / "escape.yaml")
    assert (
        "template 'evil/mro'" in str(err.value)
        and "'__class__'" in str(err.value)
        and "never rendered" in str(err.value)
    )


def test_sandbox_escape_at_runtime_is_a_security_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "family: s\ntemplates:\n  - id: s/x\n    inputs: [x]\n    prompt: \"{{ x | attr('__class__') }}\"\n    completion: ok\n",
    )
    rows = pl.DataFrame({"x": ["a"], "source_ref": ["s:0"]})
    with pytest.raises(UserInputError, match=r"template 's/x': prompt: sandbox: .*unsafe"):
        render_task(rows, Task(name="s", source=Source(path="x")), load_template_file(path), "instruction", 0)


def test_schema_errors_are_located_with_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, "family: s\ntemplates:\n  - id: s/x\n    inputs: [x]\n    promt: hi\n    completion: ok\n")
    with pytest.raises(UserInputError) as err:
        load_template_file(path)
    assert f"{path}:5: templates[0].promt: unknown field (did you mean 'prompt'?)" in str(err.value)


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    body = "family: d\ntemplates:\n  - id: d/x\n    inputs: [x]\n    prompt: '{{ x }}'\n    completion: ok\n"
    write(tmp_path / "lib", body, "a.yaml")
    write(tmp_path / "lib", body, "b.yaml")
    with pytest.raises(UserInputError, match="duplicate template id 'd/x'"):
        TemplateLibrary(load_templates([tmp_path / "lib"]))


def test_messages_template_and_options_styles() -> None:
    t = LIB.get("dialogue/friendly-assistant")
    rows = pl.DataFrame(
        {"history": [["hi", "hello!", "how are you?"]], "response": ["Great, thanks."], "source_ref": ["d:0"]}
    )
    out = render_task(rows, Task(name="d", source=Source(path="x")), [t], "instruction", 0)
    assert [m["role"] for m in out["prompt"][0]] == ["system", "user"]
    assert out["prompt"][0][1]["content"] == "how are you?"
    assert out.row(0, named=True)["completion"] == [{"role": "assistant", "content": "Great, thanks."}]
    styles = {
        render_row(LIB.get("nli/does-it-follow"), {"premise": "p", "hypothesis": "h", "label": 0}, h)
        .turns[0][1]
        .split("\n")[-1]
        for h in range(0, 1 << 14, 97)
    }
    assert len(styles) > 3  # bullets, letters, numbers, inline, FLAN header ... all appear


def _passthrough_task() -> Task:
    return Task(name="chat", source=Source(path="x"))


def test_passthrough_messages_and_sharegpt() -> None:
    msgs = [
        [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ]
    ]
    out = render_task(
        pl.DataFrame({"messages": msgs, "source_ref": ["c:0"]}), _passthrough_task(), [], "instruction", 0
    )
    assert out.columns == CONTRACT
    assert [m["role"] for m in out["prompt"][0]] == ["system", "user"] and out["_completion_text"][0] == "hello"
    conv = [[{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]]
    out = render_task(
        pl.DataFrame({"conversations": conv, "source_ref": ["c:0"]}), _passthrough_task(), [], "instruction", 0
    )
    row = out.row(0, named=True)
    assert row["prompt"] == [{"role": "user", "content": "q"}]
    assert row["completion"] == [{"role": "assistant", "content": "a"}]
    bad = [[{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]]
    with pytest.raises(UserInputError, match=r"row c:0: .*unknown `from`"):
        render_task(
            pl.DataFrame({"conversations": bad, "source_ref": ["c:0"]}), _passthrough_task(), [], "instruction", 0
        )
    developer = [[{"role": "developer", "content": "be brief"}, *msgs[0][1:]]]
    out = render_task(
        pl.DataFrame({"messages": developer, "source_ref": ["c:0"]}), _passthrough_task(), [], "instruction", 0
    )
    assert out["prompt"][0][0] == {"role": "system", "content": "be brief"}  # OpenAI's developer = system
    robot = [[*msgs[0][:2], {"role": "robot", "content": "beep"}, {"role": "assistant", "content": "a"}]]
    with pytest.raises(UserInputError, match=r"task 'chat', row c:1: turn 3: role 'robot' is not system, user or"):
        render_task(
            pl.DataFrame({"messages": [msgs[0], robot[0]], "source_ref": ["c:0", "c:1"]}),
            _passthrough_task(),
            [],
            "instruction",
            0,
        )
    ends_user = [[{"role": "user", "content": "q"}, {"role": "user", "content": "q2"}]]
    with pytest.raises(UserInputError, match="does not end with an assistant turn"):
        render_task(
            pl.DataFrame({"messages": ends_user, "source_ref": ["c:0"]}), _passthrough_task(), [], "instruction", 0
        )


def test_passthrough_prompt_completion_columns() -> None:
    rows = pl.DataFrame({"prompt": ["p"], "completion": ["c"], "source_ref": ["c:0"]})
    ft = render_task(rows, _passthrough_task(), [], "finetune", 0)
    assert ft.row(0, named=True)["prompt"] == "p" and ft["template_id"][0] == ""
    inst = render_task(rows, _passthrough_task(), [], "instruction", 0)
    assert inst.row(0, named=True)["prompt"] == [{"role": "user", "content": "p"}]
    with pytest.raises(UserInputError, match="needs a `messages` or `conversations` column"):
        render_task(rows.rename({"prompt": "question"}), _passthrough_task(), [], "instruction", 0)


def test_template_bytes_change_with_text_only() -> None:
    from cardtune.curate.templating.library import template_bytes

    t = LIB.get("nli/does-it-follow")
    assert json.loads(template_bytes(t))["id"] == t.id
    assert t.digest() == LIB.get("nli/does-it-follow").digest() != LIB.get("nli/true-false-neither").digest()


def test_render_row_matches_render_task() -> None:
    t: Template = LIB.get("topic/which-section")
    rows = pl.DataFrame({"text": ["Stocks fell."], "label": [2], "source_ref": ["t:0"]})
    out = render_task(rows, Task(name="t", source=Source(path="x")), [t], "finetune", 11)
    from cardtune.curate.templating.jinja_env import stable_hash

    r = render_row(t, {"text": "Stocks fell.", "label": 2}, stable_hash(11, "t", "t:0", t.id))
    assert out["_prompt_text"][0] == r.prompt_text() and out["_completion_text"][0] == r.completion == "Business"
