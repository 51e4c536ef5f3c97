"""Fuzzing the CLI with generated cards, template files and source rows.

Every outcome of `cardtune validate` and `cardtune build` must be success, or error lines with exit 1 or 2:
never a traceback, never a file written outside the project and its output root, never a half-written version.
CI runs a bounded number of examples; `CARDTUNE_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_cli.py` runs longer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cardtune.cli import app

EXAMPLES = int(os.environ.get("CARDTUNE_FUZZ_EXAMPLES", "20"))
# CI: no shrinking (a failure prints the generated project as it is); the long opt-in run shrinks.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate) if EXAMPLES <= 50 else tuple(Phase)
runner = CliRunner()

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=2),
)
cell = st.one_of(
    st.text(max_size=30),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-2, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.sampled_from(["role", "content", "from", "value"]), st.text(max_size=8), max_size=2),
)
JINJA = [
    "{{ a }}",
    "{{ b | upper }}",
    "{{ a | trim }}",
    "{% if a %}yes{% else %}no{% endif %}",
    "{{ c }}",
    "{{",
    "}}",
    "{% for x in a %}{{ x }}{% endfor %}",
    "{{ answer_choices[label] }}",
    "{{ answer_choices | options }}",
    "{{ a.__class__ }}",
    "{{ a ~ b }}",
    "{{ label + 1 }}",
    " words ",
    "\n",
    "Q: ",
    "{% raw %}{{{% endraw %}",
]
jinja = st.lists(st.sampled_from(JINJA), min_size=0, max_size=5).map("".join)


@st.composite
def projects(draw: st.DrawFn) -> dict[str, Any]:
    keys = ["a", "b", "label", "prompt", "completion"]
    rows = draw(st.lists(st.dictionaries(st.sampled_from(keys), cell, min_size=0, max_size=5), min_size=0, max_size=12))
    template = {
        "id": draw(st.sampled_from(["t/x", "t/x", "bad id", "t/"])),
        "inputs": draw(st.lists(st.sampled_from(["a", "b", "label"]), max_size=3, unique=True)),
        "prompt": draw(jinja),
        "completion": draw(jinja),
    }
    if draw(st.booleans()):
        template["answer_choices"] = draw(st.lists(st.text(min_size=1, max_size=6), min_size=0, max_size=3))
    task: dict[str, Any] = {"name": "t", "source": {"path": draw(st.sampled_from(["d.jsonl", "d.jsonl", "nope.csv"]))}}
    if draw(st.booleans()):
        task["templates"] = draw(st.sampled_from([["t/x"], ["t/*"], ["nli/*"], ["t/y"]]))
    if draw(st.booleans()):
        task["columns"] = draw(
            st.dictionaries(st.sampled_from(["a", "b", "prompt"]), st.sampled_from(keys), max_size=2)
        )
    card: dict[str, Any] = {
        "name": "fuzz",
        "templates_dir": "tpl",
        "tasks": [task],
        "mixture": {"seed": 1},
        "split": {"eval_fraction": 0.1},
        "output": {"dir": "out"},
    }
    if draw(st.booleans()):
        card["filters"] = {
            "quality": draw(st.sampled_from([None, {"min_chars": 1}, {"max_repetition": 0.5}])),
            "dedup": {"near": draw(st.sampled_from([None, {"threshold": 0.8}]))},
        }
    # mutate a few fields to junk: the schema must reject it with a line, never crash
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(["name", "mixture", "split", "task", "source", "weight", "total", "limit"]))
        value = draw(junk)
        if where == "task":
            task[draw(st.sampled_from(["name", "weight", "held_out", "few_shot", "templates"]))] = value
        elif where == "source":
            task["source"][draw(st.sampled_from(["path", "limit", "id_column", "format", "hf"]))] = value
        elif where in ("weight", "limit"):
            (task if where == "weight" else task["source"])[where] = value
        elif where == "total":
            card["mixture"]["total"] = value
        else:
            card[where] = value
    garbage = draw(st.one_of(st.none(), st.binary(min_size=1, max_size=20)))
    text_edit = draw(st.one_of(st.none(), st.tuples(st.integers(0, 400), st.text(min_size=1, max_size=3))))
    return {"rows": rows, "template": template, "card": card, "garbage": garbage, "text_edit": text_edit}


def write_project(root: Path, p: dict[str, Any]) -> Path:
    (root / "tpl").mkdir()
    (root / "tpl" / "t.yaml").write_text(
        yaml.safe_dump({"family": "t", "templates": [p["template"]]}), encoding="utf-8"
    )
    with (root / "d.jsonl").open("wb") as fh:
        for row in p["rows"]:
            fh.write(json.dumps(row).encode() + b"\n")
        if p["garbage"] is not None:
            fh.write(p["garbage"] + b"\n")
    text = yaml.safe_dump(p["card"], allow_unicode=True, sort_keys=False)
    if p["text_edit"] is not None:
        at, insert = p["text_edit"]
        text = text[:at] + insert + text[at:]
    card = root / "card.yaml"
    card.write_text(text, encoding="utf-8")
    return card


def listing(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def check_outcome(result: Any, command: str) -> None:
    assert result.exit_code in (0, 1, 2), f"{command}: exit {result.exit_code}\n{result.output}"
    if result.exit_code != 0:
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{command} raised {type(result.exception).__name__}: {result.exception}\n{result.output}"
        )
    assert "Traceback" not in result.output, f"{command}:\n{result.output}"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=EXAMPLES <= 50,
    phases=PHASES,
)
@given(projects())
def test_validate_and_build_end_in_success_or_one_line_errors(p: dict[str, Any]) -> None:
    root = Path(tempfile.mkdtemp(prefix="cardtune-fuzz-"))
    old = Path.cwd()
    try:
        card = write_project(root, p)
        before = listing(root)
        os.chdir(root)
        check_outcome(runner.invoke(app, ["validate", str(card)]), "validate")
        assert listing(root) == before, "validate wrote files"
        result = runner.invoke(app, ["build", str(card), "--quiet"])
        check_outcome(result, "build")
        new = listing(root) - before
        assert all(path.parts[0] == "out" for path in new), f"build wrote outside the output root: {sorted(new)}"
        out = root / "out"
        if out.exists():
            for version in out.glob("*/*"):
                assert not version.name.startswith(".tmp-"), f"staging dir left behind: {version}"
                assert (version / "manifest.json").is_file(), f"version without a manifest: {version}"
            if result.exit_code != 0:
                assert not list(out.glob("*/*/manifest.json")), "a failed build published a version"
    finally:
        os.chdir(old)
        shutil.rmtree(root, ignore_errors=True)
