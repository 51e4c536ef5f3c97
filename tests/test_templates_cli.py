"""`cardtune templates ...`: list, show, render previews, lint and import, with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cardtune.cli import app

DATA = Path(__file__).parent / "data" / "templates"
runner = CliRunner()


def test_list_and_family_filter() -> None:
    result = runner.invoke(app, ["templates", "list", "--family", "math"])
    assert result.exit_code == 0, result.output
    assert "math/solve-step-by-step" in result.output and "nli/" not in result.output
    bad = runner.invoke(app, ["templates", "list", "--family", "mth"])
    assert bad.exit_code == 1 and "did you mean 'math'" in bad.output


def test_show_and_unknown_id() -> None:
    result = runner.invoke(app, ["templates", "show", "nli/does-it-follow"])
    assert result.exit_code == 0 and "answer_choices" in result.output and "example row 0" in result.output
    bad = runner.invoke(app, ["templates", "show", "nli/does-it-folow"])
    assert bad.exit_code == 1 and "did you mean 'nli/does-it-follow'" in bad.output
    assert "Traceback" not in bad.output


def test_render_preview(tmp_path: Path) -> None:
    rows = [{"sentence1": f"Premise {i}.", "hypothesis": f"Hyp {i}.", "label": i % 3} for i in range(5)]
    src = tmp_path / "rows.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    args = ["templates", "render", "nli/premise-hypothesis-labels", "--source", str(src), "--n", "2"]
    result = runner.invoke(app, [*args, "--column", "premise=sentence1"])
    assert result.exit_code == 0, result.output
    assert result.output.count("assistant:") == 2 and "Premise " in result.output
    again = runner.invoke(app, [*args, "--column", "premise=sentence1"])
    assert again.output == result.output
    missing = runner.invoke(app, args)
    assert missing.exit_code == 1 and "--column premise=<column>" in missing.output


def test_lint_library_and_bad_files(tmp_path: Path) -> None:
    result = runner.invoke(app, ["templates", "lint"])
    assert result.exit_code == 0 and "0 error(s)" in result.output
    bad = runner.invoke(app, ["templates", "lint", str(DATA / "bad_syntax.yaml"), str(DATA / "escape.yaml")])
    assert bad.exit_code == 1
    assert "bad_syntax.yaml:11" in bad.output and "evil/mro" in bad.output


def test_lint_catches_inputs_whitespace_and_choices(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        """family: l
examples: [{a: "x", b: "y", label: 0}]
templates:
  - id: l/undeclared
    inputs: [a]
    prompt: "{{ a }} {{ b }}"
    completion: "{{ a }}"
  - id: l/space
    inputs: [a]
    prompt: "{{ a }}"
    completion: " {{ a }}"
  - id: l/choices
    inputs: [a, label]
    answer_choices: ["yes", "no"]
    prompt: "{{ a }}"
    completion: "maybe{{ label }}"
""",
        encoding="utf-8",
    )
    from cardtune.curate.templating.lint import lint_paths

    errors = "\n".join(str(e) for e in lint_paths([path]).errors)
    assert "'l/undeclared': uses b but does not declare it" in errors
    assert "'l/space': completion has leading/trailing whitespace" in errors
    assert "'l/choices': completion 'maybe0' (example row 0) is not one of answer_choices" in errors


def test_import_writes_our_format(tmp_path: Path) -> None:
    out = tmp_path / "rte.yaml"
    result = runner.invoke(app, ["templates", "import", str(DATA / "promptsource_rte.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped 'highlighted'" in result.output and out.is_file()
    assert runner.invoke(app, ["templates", "lint", str(out)]).exit_code == 0  # warnings only (no examples)


def test_render_preview_matches_what_the_build_renders(tmp_path: Path) -> None:
    import json
    import re

    import polars as pl
    from typer.testing import CliRunner

    from cardtune.cli import app
    from cardtune.curate.card.schema import Source, Task
    from cardtune.curate.templating.library import TemplateLibrary
    from cardtune.curate.templating.render import render_task

    rows = [
        {"premise": f"A person number {i} walks a dog.", "hypothesis": f"Someone {i} is outside.", "label": i % 3}
        for i in range(12)
    ]
    data = tmp_path / "nli.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "templates",
            "render",
            "nli/does-it-follow",
            "--source",
            str(data),
            "--n",
            "1",
            "--seed",
            "5",
            "--task",
            "nli",
        ],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    ref = re.search(r"(nli:\d+) · nli/does-it-follow", result.output)
    assert ref is not None
    frame = pl.DataFrame(rows).with_columns(pl.Series("source_ref", [f"nli:{i}" for i in range(12)]))
    template = TemplateLibrary.load().get("nli/does-it-follow")
    built = render_task(frame, Task(name="nli", source=Source(path="x")), [template], "instruction", 5)
    prompt = built.filter(pl.col("source_ref") == ref.group(1))["_prompt_text"].item()
    for line in (line.strip() for line in prompt.splitlines()):
        assert line in result.output
