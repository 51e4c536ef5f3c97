"""Regenerate ``expected.json``: promptsource 0.2.3's own ``Template.apply`` on the rows beside each template file.

This is how the committed outputs were produced; the tests never run it (they need no promptsource). It
imports ``promptsource/templates.py`` from the release's sdist, unchanged, and reads each ``templates.yaml``
here as promptsource does (``yaml.load(..., FullLoader)`` with its ``!Template`` classes). Run it in a
separate environment, since promptsource 0.2.3 declares Python < 3.10 and heavy dependencies (only pandas,
PyYAML, Jinja2 and setuptools' ``pkg_resources`` are imported by ``templates.py``)::

    pip download --no-deps --no-binary :all: --ignore-requires-python promptsource==0.2.3 -d /tmp/ps
    tar xzf /tmp/ps/promptsource-0.2.3.tar.gz -C /tmp/ps
    python -m venv /tmp/psenv && /tmp/psenv/bin/pip install jinja2==3.1.6 pyyaml pandas "setuptools<81"
    /tmp/psenv/bin/python tests/data/promptsource/make_expected.py /tmp/ps/promptsource-0.2.3

Per template and row it records every distinct result of ``apply(row)`` over ``SEEDS`` seeds of Python's
``random`` (one result: the template is deterministic; several: it uses ``choice``/``random``), and
``get_answer_choices_list(row)``. When ``apply(row)`` raises with its default ``truncate=True`` (it appends
``| string | truncate(2048)`` to every ``{{ }}``, which can change an expression's meaning), the result of
``apply(row, truncate=False)`` is recorded with ``"truncate": false``; an error of both is recorded as such.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SEEDS = 300


def _apply(template: Any, row: dict[str, Any], truncate: bool) -> list[list[str]]:
    results: list[list[str]] = []
    for seed in range(SEEDS):
        random.seed(seed)
        result = [str(part) for part in template.apply(dict(row), truncate=truncate)]
        if result not in results:
            results.append(result)
    return results


def main(sdist: Path) -> None:
    sys.path.insert(0, str(sdist))
    import jinja2
    import yaml
    from promptsource import templates as ps  # noqa: F401  (registers the !Template YAML classes)

    cases = []
    for path in sorted((HERE / "templates").rglob("templates.yaml")):
        with path.open(encoding="utf-8") as f:
            data = yaml.load(f, Loader=yaml.FullLoader)
        rows = [json.loads(line) for line in (path.parent / "rows.jsonl").read_text(encoding="utf-8").splitlines()]
        for template in sorted(data["templates"].values(), key=lambda t: t.name):
            for i, row in enumerate(rows):
                case: dict[str, Any] = {"file": path.relative_to(HERE).as_posix(), "template": template.name, "row": i}
                try:
                    case["results"] = _apply(template, row, truncate=True)
                except Exception:
                    try:
                        case["results"], case["truncate"] = _apply(template, row, truncate=False), False
                    except Exception as exc:
                        case["error"] = f"{type(exc).__name__}: {exc}"
                if "error" not in case:
                    case["answer_choices"] = template.get_answer_choices_list(dict(row))
                cases.append(case)
    out = {
        "produced_by": "tests/data/promptsource/make_expected.py (promptsource 0.2.3 Template.apply)",
        "jinja2": jinja2.__version__,
        "seeds": SEEDS,
        "cases": cases,
    }
    (HERE / "expected.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(cases)} cases -> {HERE / 'expected.json'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
