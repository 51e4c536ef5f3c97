"""Red-team regressions for names, paths and what `validate` must catch before `build`/`tune` (issue 10)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardtune.cli import app
from cardtune.curate.card.load import load_card
from cardtune.curate.card.validate import validate_card
from cardtune.curate.errors import UserInputError
from cardtune.curate.pipeline import build
from cardtune.curate.templating.library import MAX_WALK, template_files

runner = CliRunner()


def card_dir(tmp_path: Path, body: str, rows: list[dict[str, str]] | None = None) -> Path:
    rows = rows if rows is not None else [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(10)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = tmp_path / "card.yaml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["..", ".", "...", ".hidden", "a/b", ""])
def test_dataset_names_are_one_safe_path_component(tmp_path: Path, name: str) -> None:
    path = card_dir(tmp_path, f"name: {json.dumps(name)}\ntasks:\n  - name: t\n    source: {{path: d.jsonl}}\n")
    with pytest.raises(UserInputError) as info:
        load_card(path)
    assert info.value.issues[0].loc == ("name",) and info.value.issues[0].line == 1


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b"])
def test_init_refuses_unsafe_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init", name])
    assert result.exit_code == 2 and "one folder name" in result.output
    assert not any(tmp_path.iterdir())


def test_init_and_schema_refuse_bad_outputs_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing").mkdir()
    result = runner.invoke(app, ["init", "x", "-o", "existing"])
    assert result.exit_code == 1 and "is a directory" in result.output and "Traceback" not in result.output
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # running as root: permissions do not stop us; use a path under a file
            target = tmp_path / "afile" / "card.yaml"
            (tmp_path / "afile").write_text("x")
        else:
            target = locked / "card.yaml"
        for args in (["init", "x", "-o", str(target)], ["schema", "-o", str(target)]):
            result = runner.invoke(app, args)
            assert result.exit_code == 1 and "cannot write" in result.output, result.output
            assert result.exception is None or isinstance(result.exception, SystemExit)
    finally:
        locked.chmod(0o700)


def test_output_dir_tilde_is_expanded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    card = card_dir(tmp_path, "name: t\ntasks:\n  - name: t\n    source: {path: d.jsonl}\noutput: {dir: ~/versions}\n")
    result = build(card)
    assert result.version_dir.parent == tmp_path / "home" / "versions" / "t"
    assert not (tmp_path / "~").exists()


def test_templates_dir_search_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="file-system root"):
        template_files(Path("/"))
    big = tmp_path / "big"
    big.mkdir()
    for i in range(MAX_WALK + 1):
        (big / f"f{i}.txt").touch()
    started = time.perf_counter()
    with pytest.raises(UserInputError, match=f"more than {MAX_WALK}"):
        template_files(big)
    assert time.perf_counter() - started < 10
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / ".git").mkdir()
    (tmp_path / "t" / ".git" / "x.yaml").write_text("not a template")
    (tmp_path / "t" / "a.yaml").write_text("x")
    assert template_files(tmp_path / "t") == [tmp_path / "t" / "a.yaml"]  # hidden folders are skipped


def test_validate_catches_a_task_with_nothing_to_render(tmp_path: Path) -> None:
    rows = [{"question": "q", "answer": "a"}]
    card = card_dir(tmp_path, "name: t\ntasks:\n  - name: qa\n    source: {path: d.jsonl}\n", rows)
    with pytest.raises(UserInputError) as info:
        validate_card(card)
    (issue,) = info.value.issues
    assert issue.line == 3 and "no `templates`" in issue.message and "question, answer" in issue.message


def test_validate_catches_a_missing_chat_template_and_model_path(tmp_path: Path) -> None:
    card = card_dir(
        tmp_path,
        "name: t\ntasks:\n  - name: t\n    source: {path: d.jsonl}\n"
        "train:\n  chat_template: my.jinja\n  model: ./models/tiny\n",
    )
    with pytest.raises(UserInputError) as info:
        validate_card(card)
    assert {i.loc for i in info.value.issues} == {("train", "chat_template"), ("train", "model")}  # both at once
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    with pytest.raises(UserInputError, match=r"card\.yaml:6: train\.chat_template: .*my\.jinja: file not found"):
        validate_card(card)
    card.write_text(card.read_text().replace("my.jinja", "chatml2"))
    with pytest.raises(UserInputError, match="neither a built-in"):
        validate_card(card)


@pytest.mark.parametrize(
    ("file", "text", "extra", "message"),
    [
        ("e.json", "[]", "", r"e\.json: the file holds no rows"),
        ("r.csv", "a,b\n1,2\n3\n", "    columns: {prompt: a, completion: b}\n", r"r\.csv:3: ragged row: 1 fields, header has 2"),
        ("n.jsonl", '{"id": 1, "prompt": "a", "completion": "b"}\n{"id": null, "prompt": "c", "completion": "d"}\n',
         "", r"id_column 'id' is null in row 2"),
        ("x.parquet", "not parquet", "", r"x\.parquet: not a readable Parquet file"),
        ("u.jsonl", '{"prompt": "\xff"}', "", r"u\.jsonl: not UTF-8"),
    ],
)  # fmt: skip
def test_bad_source_files_are_one_line_errors(tmp_path: Path, file: str, text: str, extra: str, message: str) -> None:
    raw = text.encode("latin-1") if file == "u.jsonl" else text.encode()
    (tmp_path / file).write_bytes(raw)
    id_column = ", id_column: id" if file == "n.jsonl" else ""
    card = tmp_path / "card.yaml"
    card.write_text(f"name: t\nmode: finetune\ntasks:\n  - name: t\n    source: {{path: {file}{id_column}}}\n{extra}")
    result = runner.invoke(app, ["build", str(card), "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    import re

    assert re.search(message, result.output), result.output


def test_a_limit_beyond_int64_is_a_card_error(tmp_path: Path) -> None:
    card = card_dir(
        tmp_path, "name: t\ntasks:\n  - name: t\n    source: {path: d.jsonl, limit: 99999999999999999999999}\n"
    )
    with pytest.raises(UserInputError) as info:
        load_card(card)
    assert info.value.issues[0].loc == ("tasks", 0, "source", "limit") and info.value.issues[0].line == 4


def test_a_control_character_in_a_card_is_one_line_at_its_line(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text("name: t\ntasks:\n  - name: t\x00\n    source: {path: d.jsonl}\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(card)])
    assert result.exit_code == 1 and "card.yaml:3: invalid YAML: control character #x0000" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_messages_for_the_wrong_kind_of_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    card = card_dir(tmp_path, "name: t\nmode: finetune\ntasks:\n  - name: t\n    source: {path: d.jsonl}\n")
    version = build(card).version_dir
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 1 and "not a dataset version directory" in result.output
    (tmp_path / "reports").mkdir()
    result = runner.invoke(app, ["report", str(version), "-o", str(tmp_path / "reports")])
    assert result.exit_code == 0 and (tmp_path / "reports" / "report.html").is_file()
    assert ".tmp" not in result.output
    result = runner.invoke(app, ["eval", str(version)])
    assert result.exit_code == 1 and "a dataset version, not a run" in result.output


def test_a_benchmark_with_an_unknown_extension_takes_the_format_the_hint_names(tmp_path: Path) -> None:
    (tmp_path / "b.xml").write_text('{"q": "a question"}\n', encoding="utf-8")
    body = (
        "name: t\nmode: finetune\ntasks:\n  - name: t\n    source: {path: d.jsonl}\n"
        "filters:\n  decontaminate:\n    benchmarks: [{name: b, path: b.xml, fields: [q]}]\n"
    )
    card = card_dir(tmp_path, body)
    with pytest.raises(UserInputError, match=r"card\.yaml:8: .*set `format:` to one of"):
        validate_card(card)
    card.write_text(body.replace("path: b.xml,", "path: b.xml, format: jsonl,"), encoding="utf-8")
    validate_card(card)
    card.write_text(body.replace("path: b.xml,", "path: b.xml, format: jsnl,"), encoding="utf-8")
    with pytest.raises(UserInputError, match="did you mean 'jsonl'"):
        load_card(card)


def test_validate_names_a_missing_source_and_benchmark_once_each(tmp_path: Path) -> None:
    body = (
        "name: t\nmode: finetune\ntasks:\n  - name: t\n    source: {path: nope.jsonl}\n"
        "filters:\n  decontaminate:\n    benchmarks: [{name: b, path: evals/missing.jsonl, fields: [q]}]\n"
    )
    card = card_dir(tmp_path, body)
    result = runner.invoke(app, ["validate", str(card)])
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(lines) == 2, result.output
    assert "card.yaml:5: tasks[0].source:" in lines[0] and ": :" not in result.output  # no doubled prefix
    assert "card.yaml:8: filters.decontaminate.benchmarks[0]:" in lines[1] and "not found" in lines[1]
