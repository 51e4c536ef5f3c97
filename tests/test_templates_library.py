"""The shipped template library: every template lints, and the library has the breadth the docs promise."""

from __future__ import annotations

import pytest

from cardtune.curate.templating.library import Template, TemplateLibrary, shipped_dir
from cardtune.curate.templating.lint import lint_templates

LIBRARY = TemplateLibrary.load()


@pytest.mark.parametrize("template", list(LIBRARY), ids=lambda t: t.id)
def test_shipped_template_lints_clean(template: Template) -> None:
    report = lint_templates([template])
    assert report.errors == [], "\n".join(str(e) for e in report.errors)
    assert report.warnings == [], "shipped templates must have example rows to render"


def test_library_breadth() -> None:
    families = LIBRARY.families()
    assert len(families) >= 12, sorted(families)
    small = {f: len(ts) for f, ts in families.items() if len(ts) < 6}
    assert not small, f"families with fewer than 6 templates: {small}"
    for family, templates in families.items():
        assert any(t.spec.metadata.original_task is False for t in templates), f"{family}: no inversion template"
        assert any(t.spec.metadata.original_task for t in templates), f"{family}: no original-task template"


def test_library_is_found_through_the_package() -> None:
    assert (shipped_dir() / "nli" / "entailment.yaml").is_file()
    assert all(str(t.file).startswith(str(shipped_dir())) for t in LIBRARY)


def test_ids_unique_and_prefixed_by_family() -> None:
    ids = [t.id for t in LIBRARY]
    assert len(ids) == len(set(ids))
    assert all(t.id.startswith(t.family + "/") for t in LIBRARY)


def test_literal_text_is_the_boilerplate_only() -> None:
    t = LIBRARY.get("nli/does-it-follow")
    text = t.literal_text()
    assert "Based on the paragraph above, can we conclude that" in text
    assert "it is not possible to tell" in text  # answer choices count as boilerplate
    assert "{{" not in text and "premise" not in text


def test_resolve_globs_families_and_did_you_mean() -> None:
    assert [t.id for t in LIBRARY.resolve(["nli/does-it-follow"])] == ["nli/does-it-follow"]
    assert len(LIBRARY.resolve(["nli/*"])) == len(LIBRARY.families()["nli"])
    assert LIBRARY.resolve(["sentiment"]) == LIBRARY.resolve(["sentiment/*"])
    both = LIBRARY.resolve(["nli/*", "nli/does-it-follow"])
    assert len(both) == len({t.id for t in both})
    from cardtune.curate.errors import UserInputError

    with pytest.raises(UserInputError, match="did you mean 'nli/does-it-follow'"):
        LIBRARY.resolve(["nli/does-it-folow"])
