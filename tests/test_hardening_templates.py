"""Red-team regressions for templates: no nondeterminism in the output, and bounded work per render.

Denial-of-service cases run in a subprocess with a timeout and a memory cap, so a regression fails the test
instead of hanging the suite or exhausting the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from typer.testing import CliRunner

from cardtune.cli import app
from cardtune.curate.card.schema import Source, Task
from cardtune.curate.errors import UserInputError
from cardtune.curate.templating import sandbox
from cardtune.curate.templating.jinja_env import ENV
from cardtune.curate.templating.library import load_template_file
from cardtune.curate.templating.render import render_row, render_task

runner = CliRunner()


def template_file(tmp_path: Path, prompt: str, inputs: tuple[str, ...] = ("text",), name: str = "t.yaml") -> Path:
    """A one-template file (id ``t/x``) whose prompt is a block scalar starting on line 7, with one example row."""
    body = textwrap.indent(prompt, "      ")
    example = {"text": "Hello world", "xs": ["a", "b"], "n": 3}
    path = tmp_path / name
    path.write_text(
        "family: t\n"
        f"examples: [{json.dumps({k: example[k] for k in inputs})}]\n"
        "templates:\n"
        "  - id: t/x\n"
        f"    inputs: [{', '.join(inputs)}]\n"
        "    prompt: |\n"
        f"{body}\n"
        "    completion: ok\n",
        encoding="utf-8",
    )
    return path


def render_one(path: Path, **row: object) -> pl.DataFrame:
    rows = pl.DataFrame({**{k: [v] for k, v in row.items()}, "source_ref": ["t:0"]})
    return render_task(rows, Task(name="t", source=Source(path="x")), load_template_file(path), "instruction", 0)


# ---------------------------------------------------------------------------------------------- determinism


def test_the_environment_has_no_unseeded_filters_or_stateful_globals() -> None:
    assert "random" not in ENV.filters
    assert not {"lipsum", "cycler", "joiner"} & set(ENV.globals)
    assert ENV.globals["range"] is sandbox.bounded_range


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("{{ xs | random }}", "random"),
        ("{{ xs | map('random') | list }}", "random"),
        ("{{ lipsum(1) }}", "lipsum"),
        ("{% set c = cycler('a', 'b') %}{{ c.next() }}", "cycler"),
        ("{% set j = joiner(', ') %}{{ j() }}", "joiner"),
        ("{% filter random %}{{ xs }}{% endfilter %}", "random"),
        ("{% include 'other.txt' %}", "self-contained"),
    ],
)
def test_nondeterministic_features_are_refused_at_load_with_id_and_line(tmp_path: Path, line: str, name: str) -> None:
    path = template_file(tmp_path, f"First line.\n{line}", inputs=("xs",))
    with pytest.raises(UserInputError) as err:
        load_template_file(path)
    message = str(err.value)
    assert f"{path}:8: templates[0].prompt: template 't/x':" in message, message
    assert name in message and "never rendered" in message


def test_lint_and_validate_report_a_refused_filter(tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    path = template_file(tmp_path / "tpl", "{{ xs | random }}", ("xs",))
    result = runner.invoke(app, ["templates", "lint", str(path)])
    assert result.exit_code == 1
    assert f"{path}:7: templates[0].prompt: template 't/x': the `random` filter is not available" in result.output
    (tmp_path / "d.jsonl").write_text('{"xs": ["a"]}\n', encoding="utf-8")
    card = tmp_path / "card.yaml"
    card.write_text(
        "name: c\ntemplates_dir: tpl\ntasks:\n  - name: t\n    source: {path: d.jsonl}\n    templates: [t/x]\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["validate", str(card)])
    assert result.exit_code == 1
    assert "template 't/x': the `random` filter is not available" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "expr",
    [
        "{{ text.format_map }}",
        "{{ text.upper }}",
        "{{ [text.upper] }}",
        "{{ {'f': text.upper} }}",
        "{{ text.upper ~ '' }}",
        "{{ text.upper | string }}",
        "{{ text.upper | pprint }}",
        "{{ [text.upper] | join(', ') }}",
        "{{ '%s' % text.upper }}",
        "{{ '%r' | format(text.upper) }}",
        "{{ '{}'.format(text.upper) }}",
        "{{ '{!r}'.format(text.upper) }}",
        "{{ text | list | reverse }}",
        "{{ zip(text, text) }}",
        "{{ range }}",
        "{{ namespace() }}",
        "{{ self }}",
    ],
)
def test_printing_code_or_an_iterator_is_an_error_never_a_memory_address(tmp_path: Path, expr: str) -> None:
    path = template_file(tmp_path, expr)
    with pytest.raises(UserInputError) as err:
        render_one(path, text="Hello world")
    message = str(err.value)
    assert "template 't/x': prompt: sandbox: cannot print" in message and "(task 't', row t:0)" in message
    assert " at 0x" not in message and len(message.splitlines()) == 1


def test_undefined_inside_a_printed_list_is_an_error_not_the_word_undefined(tmp_path: Path) -> None:
    path = template_file(tmp_path, "{{ [text, missing] }}")
    with pytest.raises(UserInputError, match="'missing' is undefined"):
        render_one(path, text="x")


def test_ordinary_templates_render_as_before(tmp_path: Path) -> None:
    prompt = (
        "{% for x in xs %}{{ loop.index }}{{ loop.cycle('a', 'b') }}{{ x }}"
        "{% if not loop.last %}, {% endif %}{% else %}none{% endfor %}|"
        "{{ xs | join('/') }}|{{ xs | reverse | list }}|{{ range(3) | list }}|{{ 2 ** 10 }}|{{ 3 * 'ab' }}|"
        "{{ '%5.2f' % 3.14159 }}|{{ '{:>4}'.format(n) }}|{{ 'a b c' | wordwrap(3) | replace('\\n', ';') }}|"
        "{{ {'k': n} }}|{{ xs ~ n }}|{{ 'x' | center(5) }}|{{ [n, n] | sum }}|{{ xs | tojson }}|{{ n | string }}"
    )
    path = template_file(tmp_path, prompt, inputs=("xs", "n"))
    (t,) = load_template_file(path)
    r = render_row(t, {"xs": ["p", "q"], "n": 7})
    assert r.turns[0][1] == (
        "1ap, 2bq|p/q|['q', 'p']|[0, 1, 2]|1024|ababab| 3.14|   7|a b;c|{'k': 7}|['p', 'q']7|  x  |14|[\"p\", \"q\"]|7"
    )
    plain = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)
    assert r.turns[0][1] == plain.from_string(t.turns[0][1].source).render(xs=["p", "q"], n=7).strip()
    assert render_row(t, {"xs": [], "n": 1}).turns[0][1].startswith("none|")


def test_limits_are_per_render_not_per_build(tmp_path: Path) -> None:
    """30 rows of 9,000 loop iterations each: far more than MAX_STEPS in all, well under it per render."""
    path = template_file(tmp_path, "{% for i in range(9000) %}{% endfor %}{{ text }}")
    rows = pl.DataFrame({"text": [f"row {i}" for i in range(30)], "source_ref": [f"t:{i}" for i in range(30)]})
    out = render_task(rows, Task(name="t", source=Source(path="x")), load_template_file(path), "finetune", 0)
    assert out.get_column("prompt").to_list() == [f"row {i}" for i in range(30)]


def test_runaway_recursion_is_one_line(tmp_path: Path) -> None:
    path = template_file(tmp_path, "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(text) }}")
    with pytest.raises(UserInputError) as err:
        render_one(path, text="x")
    assert "template 't/x'" in str(err.value) and "RecursionError" in str(err.value)


# ---------------------------------------------------------------------------------------------- resource bounds

_CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a regression fails with MemoryError, not the host
import polars as pl
from cardtune.curate.card.schema import Source, Task
from cardtune.curate.errors import UserInputError
from cardtune.curate.templating.library import load_template_file
from cardtune.curate.templating.render import render_task
start = time.perf_counter()
try:
    templates = load_template_file(__import__("pathlib").Path(sys.argv[1]))
    loaded = time.perf_counter() - start
    rows = pl.DataFrame({"text": ["Hello world"], "source_ref": ["t:0"]})
    render_task(rows, Task(name="t", source=Source(path="x")), templates, "instruction", 0)
    print(json.dumps({"ok": True, "load_s": loaded}))
except UserInputError as exc:
    print(json.dumps({"error": str(exc), "load_s": loaded}))
"""


@pytest.mark.parametrize(
    ("prompt", "expect"),
    [
        ("{{ 9 ** (9 ** 9) }}", "`**` would build an integer"),
        ("{{ 10 ** 100000 }}", "`**` would build an integer"),
        ('{{ "%0999999999d" | format(1) }}', "format width or precision 999999999 is too large"),
        ('{{ "%0999999999d" % 1 }}', "format width or precision 999999999 is too large"),
        ('{{ "%(a(b))999999999s" % {"a(b)": 1} }}', "format width or precision 999999999 is too large"),
        ('{{ "{:0999999999d}".format(1) }}', "format width or precision"),
        ("{{ 'a' * 10 ** 9 }}", "`*` would build 1,000,000,000 characters"),
        ("{{ ['a'] * 10 ** 9 }}", "`*` would build 1,000,000,000 characters"),
        ("{{ text.center(10 ** 9) }}", "`center` would build"),
        ("{{ text | center(10 ** 9) }}", "`center` would build"),
        ("{{ text.replace('', 'x' * 10 ** 6) }}", "`replace` would build"),
        ("{{ text | indent(10 ** 8) }}", "`indent` would build"),
        ("{{ range(10 ** 6) | list }}", "range of more than 10,000 items"),
        ("{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}", "loop iterations"),
        ("{% for i in range(10000) %}{% for j in range(10000) if j < 0 %}{% endfor %}{% endfor %}", "loop iterations"),
        (
            "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
            "loop iterations and calls",
        ),
        (
            "{% set a = 'a' * 9000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c | length }}",
            "`~` would build 18,000,000 characters",
        ),
        ("{% for i in range(9000) %}{{ text * 100000 }}{% endfor %}", "printed and built more than"),
        ("{% for i in range(10000) %}" + "y" * 20000 + "{% endfor %}", "printed and built more than"),
        (
            "{% set ns = namespace(s=text) %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "would build",
        ),
        ("{% for x in [1] recursive %}{% if loop.depth < 3 %}{{ loop(range(9000)) }}{% endif %}{% endfor %}", "loop"),
        ("{{ [1, 2] | batch(10 ** 9, 0) | list }}", "`batch` / `slice`"),
        ("{{ text | tojson(indent=10 ** 8) }}", "`tojson` indent"),
    ],
)
def test_resource_bombs_end_in_one_line_quickly(tmp_path: Path, prompt: str, expect: str) -> None:
    path = template_file(tmp_path, prompt)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"rendering {prompt[:60]!r} did not finish within 20 s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["load_s"] < 5, "loading (compiling) must not evaluate anything"
    error = result.get("error", "")
    assert error.count("\n") == 0, error
    assert f"{path}:" in error and "template 't/x': prompt: sandbox: render limit: " in error, error
    assert expect in error and "(task 't', row t:0)" in error, error
