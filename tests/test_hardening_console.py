"""Red-team regression: user text (paths, names, ids) is printed verbatim, never as rich markup or emoji."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardtune._console import esc, print_issues
from cardtune.cli import app
from cardtune.curate.errors import UserInputError

runner = CliRunner()
NAME = "a:thumbs_up:[red].jsonl"


def test_an_error_naming_a_file_prints_the_name_verbatim(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text(f"name: c\ntasks:\n  - name: t\n    source: {{path: {json.dumps(NAME)}}}\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(card)])
    assert result.exit_code == 1
    assert f"source '{NAME}'" in result.output, result.output
    assert "\N{THUMBS UP SIGN}" not in result.output


def test_print_issues_keeps_markup_and_emoji_codes(capsys: pytest.CaptureFixture[str]) -> None:
    print_issues(UserInputError(f"{NAME}: [bold]not bold[/bold] :x: :smile:"))
    err = capsys.readouterr().err
    assert f"error: {NAME}: [bold]not bold[/bold] :x: :smile:" in err


def test_ok_line_prints_a_card_path_with_markup_verbatim(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"prompt": "q", "completion": "a"}\n', encoding="utf-8")
    card = tmp_path / "c[bold]:smile:.yaml"
    card.write_text("name: c\ntasks:\n  - name: t\n    source: {path: d.jsonl}\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(card)])
    assert result.exit_code == 0, result.output
    joined = result.output.replace("\n", "")
    assert joined.startswith("ok ") and f"{card}:" in joined and "[bold]:smile:" in joined


def test_esc_is_identity_on_plain_text() -> None:
    assert esc("plain/path.jsonl") == "plain/path.jsonl"
