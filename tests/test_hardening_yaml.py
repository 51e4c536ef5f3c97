"""Red-team regressions for YAML in cards and template files: alias bombs, recursive aliases, merge keys.

Bomb cases run in a subprocess with a timeout and a memory cap, so a regression fails instead of hanging.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardtune.cli import app
from cardtune.curate.card.load import load_card
from cardtune.curate.card.yamlsrc import MAX_DEPTH, load_located
from cardtune.curate.errors import UserInputError

runner = CliRunner()


def laughs(levels: int = 10, width: int = 10, indent: str = "") -> str:
    """The "billion laughs": level k is a list of ``width`` aliases to level k-1."""
    lines = [f"{indent}l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"{indent}l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * width)}]" for k in range(1, levels)]
    return "\n".join(lines) + "\n"


_CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from pathlib import Path
from cardtune.curate.errors import UserInputError
kind, path = sys.argv[1], Path(sys.argv[2])
start = time.perf_counter()
try:
    if kind == "card":
        from cardtune.curate.card.load import load_card
        load_card(path)
    else:
        from cardtune.curate.templating.library import load_template_file
        load_template_file(path)
    print(json.dumps({"ok": True}))
except UserInputError as exc:
    print(json.dumps({"error": str(exc), "s": time.perf_counter() - start}))
"""


def run_child(kind: str, path: Path) -> str:
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, kind, str(path)], capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {path.name} did not finish within 20 s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" in result, result
    return str(result["error"])


def test_alias_bomb_in_a_card_is_refused_with_its_line(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text("name: c\nbomb:\n" + laughs(indent="  ") + "tasks: []\n", encoding="utf-8")
    error = run_child("card", card)
    assert error.startswith(f"{card}:") and "aliases expand this document beyond 100,000 nodes" in error
    assert error.count("\n") == 0
    line = int(error.split(":")[1])
    assert 3 <= line <= 12 and "*l" in error


@pytest.mark.parametrize("promptsource", [False, True])
def test_alias_bomb_in_a_template_file_is_refused(tmp_path: Path, promptsource: bool) -> None:
    path = tmp_path / "t.yaml"
    if promptsource:  # the promptsource route walks the YAML before the card loader sees it
        body = "dataset: d\ntemplates:\n  a: !Template\n    name: a\n    jinja: 'x ||| y'\n" + laughs()
    else:
        body = "family: t\n" + laughs() + "templates: []\n"
    path.write_text(body, encoding="utf-8")
    error = run_child("template", path)
    assert error.startswith(f"{path}:") and "aliases expand this document" in error


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: c\nx: &a [1, *a]\n", 2),
        ("name: c\nx: &a\n  y: *a\n", 3),
        ("name: c\nx: &a\n  <<: *a\n", 3),
        ("name: c\nx: &a [[[*a]]]\n", 2),
    ],
)
def test_recursive_aliases_are_one_line_errors(text: str, line: int) -> None:
    with pytest.raises(UserInputError) as err:
        load_located(text, "card.yaml")
    assert str(err.value) == (
        f"card.yaml:{line}: refused YAML: recursive alias *a: it refers to a mapping or list that contains it"
    )


def test_deep_nesting_is_refused_with_its_line() -> None:
    with pytest.raises(UserInputError) as err:
        load_located("x: " + "[" * 5000 + "]" * 5000 + "\n", "card.yaml")
    assert f"nested deeper than {MAX_DEPTH} levels" in str(err.value)


def test_small_aliases_still_work() -> None:
    data = load_located("a: &a {x: 1}\nb: [*a, *a]\nc: &s text\nd: *s\n", "f.yaml").data
    assert data == {"a": {"x": 1}, "b": [{"x": 1}, {"x": 1}], "c": "text", "d": "text"}


def test_a_merge_key_then_an_override_is_valid_yaml(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"prompt": "q", "completion": "a"}\n', encoding="utf-8")
    card = tmp_path / "card.yaml"
    card.write_text(
        "name: c\n"
        "tasks:\n"
        "  - &base\n"
        "    name: a\n"
        "    source: {path: d.jsonl}\n"
        "    weight: 1.0\n"
        "  - <<: *base\n"
        "    name: b\n"
        "    weight: 2.0\n",
        encoding="utf-8",
    )
    loaded = load_card(card)
    assert [(t.name, t.weight, t.source.path) for t in loaded.tasks] == [("a", 1.0, "d.jsonl"), ("b", 2.0, "d.jsonl")]
    assert runner.invoke(app, ["validate", str(card)]).exit_code == 0


def test_merge_rules() -> None:
    text = "d: &d {x: 1, y: 2}\nf: &f {y: 5, z: 6}\ne:\n  <<: [*d, *f]\n  z: 7\n"
    located = load_located(text, "f.yaml")
    assert located.data["e"] == {"x": 1, "y": 2, "z": 7}  # earlier merged mappings win, explicit keys win over all
    assert located.line_of(("e", "z")) == 5 and located.line_of(("e", "x")) == 1


@pytest.mark.parametrize(
    ("text", "line", "first"),
    [
        ("e:\n  y: 1\n  y: 2\n", 3, 2),
        ("d: &d {x: 1}\ne:\n  <<: *d\n  x: 2\n  x: 3\n", 5, 4),
    ],
)
def test_duplicate_explicit_keys_stay_errors(text: str, line: int, first: int) -> None:
    with pytest.raises(UserInputError) as err:
        load_located(text, "f.yaml")
    assert f"f.yaml:{line}: e." in str(err.value) and f"duplicate key (first given on line {first})" in str(err.value)


def test_a_bad_merge_value_is_located() -> None:
    with pytest.raises(UserInputError, match=r"f.yaml:1: `<<` \(merge\) expects a mapping"):
        load_located("e: {<<: 5}\n", "f.yaml")
