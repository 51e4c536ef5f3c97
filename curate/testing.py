"""Helpers for testing templates, filters and cards — ours and our users' (like ``polars.testing``).

* ``rendered_rows`` — a frame in the row contract (``curate/rows.py``) from plain texts, for filter tests;
* ``filter_context`` — the build context a filter runs with, its inputs resolved against a folder;
* ``run_filter`` — run one registered filter by name on rows, as the pipeline does;
* ``assert_templates_lint`` — lint template files/folders and fail with every problem listed;
* ``assert_build_reproducible`` — build a card twice into a scratch folder and compare the bytes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from cardtune.curate.card.section import Section
from cardtune.curate.filters.base import BuildContext
from cardtune.curate.rows import COMPLETION_TEXT, FIELDS_TEXT, PROMPT_TEXT, SOURCE_REF, TASK, TEMPLATE_ID


def rendered_rows(
    prompts: Sequence[str | None],
    completions: Sequence[str | None] | None = None,
    fields: Sequence[str] | None = None,
    *,
    task: str = "t",
    template_id: str = "tpl",
) -> pl.DataFrame:
    """Rows with the internal flat-text columns filters read; ``source_ref`` is ``<task>:<index>``."""
    n = len(prompts)
    return pl.DataFrame(
        {
            TASK: [task] * n,
            TEMPLATE_ID: [template_id] * n,
            SOURCE_REF: [f"{task}:{i}" for i in range(n)],
            PROMPT_TEXT: list(prompts),
            COMPLETION_TEXT: list(completions) if completions is not None else ["ok"] * n,
            FIELDS_TEXT: list(fields) if fields is not None else [""] * n,
        },
        schema_overrides={PROMPT_TEXT: pl.String, COMPLETION_TEXT: pl.String, FIELDS_TEXT: pl.String},
    )


def assert_templates_lint(*paths: str | Path) -> None:
    """Lint template files or folders (parse, inputs, render fixtures, ids); raise listing every error."""
    from cardtune.curate.templating.lint import lint_paths

    report = lint_paths([Path(p) for p in paths])
    if not report.ok:
        raise AssertionError("template lint failed:\n" + "\n".join(str(e) for e in report.errors))


def assert_build_reproducible(card_path: str | Path) -> str:
    """Build a card twice (in a scratch output folder) and assert byte-identical files; returns the version id."""
    from cardtune.curate.card.load import load_card
    from cardtune.curate.pipeline import build

    card = load_card(card_path)
    scratch = Path(tempfile.mkdtemp(prefix="cardtune-repro-"))
    try:
        local = card.model_copy(update={"output": card.output.model_copy(update={"dir": str(scratch)})})
        local._path, local._lines = card._path, card._lines
        first = build(local)
        snapshot = {p.name: p.read_bytes() for p in sorted(first.version_dir.iterdir()) if p.suffix == ".parquet"}
        second = build(local, force=True)
        again = {p.name: p.read_bytes() for p in sorted(second.version_dir.iterdir()) if p.suffix == ".parquet"}
        assert first.version_id == second.version_id, "the version id changed between two builds"
        differ = sorted(name for name in snapshot if snapshot[name] != again.get(name))
        assert not differ, f"not byte-identical across builds: {differ}"
        return first.version_id
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def filter_context(
    base_dir: str | Path, *specs: Section, boilerplate: dict[str, str] | None = None, output_dir: str = "datasets"
) -> BuildContext:
    """A ``BuildContext`` for calling filters directly: the inputs the ``specs`` name resolved against ``base_dir``.

    Resolution follows the card rule (relative to the card's folder); ``base_dir`` plays the card's folder.
    """
    from cardtune.curate import filters
    from cardtune.curate.card.schema import Card
    from cardtune.curate.errors import Issue, UserInputError
    from cardtune.curate.inputs import ResolvedInputs, resolve_refs

    card = Card.model_validate({"name": "test", "tasks": [{"name": "t", "source": {"path": "-"}}]})
    card._path = (Path(base_dir) / "card.yaml").resolve()
    refs = [ref for spec in specs for f in filters.FILTERS if isinstance(spec, f.spec) for ref in f.inputs(spec)]
    issues: list[Issue] = []
    benchmarks, tokenizers, versions = resolve_refs(card, refs, Path(output_dir), issues)
    if issues:
        raise UserInputError(issues)
    inputs = ResolvedInputs(card, Path(output_dir) / card.name, {}, None, {}, benchmarks, tokenizers, versions)
    return BuildContext(inputs, boilerplate or {})


def run_filter(name: str, rows: pl.DataFrame, spec: Section, base_dir: str | Path = ".", **kwargs: Any) -> Any:
    """Run the registered filter ``name`` on ``rows`` with ``spec`` (a ``StepResult``), as the pipeline would."""
    from dataclasses import replace

    from cardtune.curate import filters

    flt = filters.by_name(name)
    result = flt.run(rows, spec, filter_context(base_dir, spec, **kwargs))
    return replace(result, report=flt.merge([result.report])) if flt.locality == "row" else result
