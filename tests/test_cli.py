"""The CLI shell: help on every command, exit codes, init/schema/validate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cardtune.cli import app

runner = CliRunner()


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, cmd in group.commands.items():
        out.append((prefix + name, cmd))
        if hasattr(cmd, "commands"):
            out += _commands(cmd, prefix + name + " ")
    return out


def test_every_command_has_help_text() -> None:
    root = typer.main.get_command(app)
    assert hasattr(root, "commands")
    commands = _commands(root)
    names = {n for n, _ in commands}
    assert {"validate", "init", "schema"} <= names
    for name, cmd in commands:
        assert cmd.help and cmd.help.strip(), f"`cardtune {name}` has no help text"
        for param in cmd.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"`cardtune {name}` option {param.opts} has no help"


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and "cardtune 0." in result.output


def test_usage_error_exits_2() -> None:
    assert runner.invoke(app, ["validate"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


def test_init_writes_a_card_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "cards" / "mine.yaml"
    result = runner.invoke(app, ["init", "mine", "--output", str(target)])
    assert result.exit_code == 0, result.output
    text = target.read_text(encoding="utf-8")
    assert text.count("#") > 10, "the starter card should be commented"
    check = runner.invoke(app, ["validate", str(target)])
    assert check.exit_code == 0, check.output
    again = runner.invoke(app, ["init", "mine", "--output", str(target)])
    assert again.exit_code == 1 and "already exists" in again.output


def test_schema_is_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["title"] == "Card" and "tasks" in schema["properties"]


def test_validate_reports_errors_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmode: nope\ntasks: []\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(bad), str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1
    assert f"{bad}:2: mode:" in result.output
    assert "missing.yaml: card not found" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--version"], ["validate", "--help"]])
def test_python_dash_m_from_repo_root(args: list[str]) -> None:
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "cardtune", *args], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_field_reference_is_current() -> None:
    from cardtune.curate.card.cardref import field_reference

    path = Path(__file__).resolve().parent.parent / "data_cards" / "README.md"
    assert path.read_text(encoding="utf-8") == field_reference(), "stale: run `make docs`"
