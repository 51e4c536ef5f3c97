"""The shipped ``cardtune.curate.testing`` helpers work and can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardtune.curate.testing import assert_build_reproducible, assert_templates_lint, rendered_rows
from cardtune.templates import library_path

ROOT = Path(__file__).resolve().parent.parent


def test_rendered_rows_has_the_filter_columns() -> None:
    frame = rendered_rows(["a", "b"], ["x", None], task="q")
    assert frame["source_ref"].to_list() == ["q:0", "q:1"]
    assert frame["_completion_text"].to_list() == ["x", None]


def test_build_reproducible_on_the_demo_card() -> None:
    assert len(assert_build_reproducible(ROOT / "data_cards" / "demo.yaml")) == 16


def test_templates_lint_passes_on_the_library_and_fails_on_a_bad_file(tmp_path: Path) -> None:
    assert_templates_lint(library_path())
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "family: b\ntemplates:\n  - id: b/x\n    inputs: [a]\n    prompt: '{{ a }} {{ b }}'\n    completion: '{{ a }}'\n",
        encoding="utf-8",
    )
    with pytest.raises(AssertionError, match="template lint failed"):
        assert_templates_lint(bad)
