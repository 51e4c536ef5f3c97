"""cardtune.curate: from a card to a versioned dataset — card schema, sources, templates, filters, mixing, store.

Never imports torch. The main entry points are re-exported here lazily (PEP 562), so importing one small module
(``cardtune.curate.card.yamlsrc`` for the CLI's error printing) does not pull in polars, numpy and Jinja.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BuildResult": "pipeline",
    "Card": "card.schema",
    "Issue": "errors",
    "Manifest": "store.manifest",
    "Template": "templating.library",
    "TemplateLibrary": "templating.library",
    "UserInputError": "errors",
    "build": "pipeline",
    "import_promptsource": "templating.promptsource",
    "lint_paths": "templating.lint",
    "load_card": "card.load",
    "load_version": "store.versions",
    "read_manifest": "store.versions",
    "render_task": "templating.render",
}
__all__ = [
    "BuildResult",
    "Card",
    "Issue",
    "Manifest",
    "Template",
    "TemplateLibrary",
    "UserInputError",
    "build",
    "import_promptsource",
    "lint_paths",
    "load_card",
    "load_version",
    "read_manifest",
    "render_task",
]

if TYPE_CHECKING:
    from cardtune.curate.card.load import load_card
    from cardtune.curate.card.schema import Card
    from cardtune.curate.errors import Issue, UserInputError
    from cardtune.curate.pipeline import BuildResult, build
    from cardtune.curate.store.manifest import Manifest
    from cardtune.curate.store.versions import load_version, read_manifest
    from cardtune.curate.templating.library import Template, TemplateLibrary
    from cardtune.curate.templating.lint import lint_paths
    from cardtune.curate.templating.promptsource import import_promptsource
    from cardtune.curate.templating.render import render_task


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cardtune.curate.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cardtune.curate' has no attribute {name!r}")
