"""cardtune.curate: from a card to a versioned dataset — card schema, sources, templates, filters, mixing, store.

Never imports torch. The main entry points are re-exported here lazily (PEP 562), so importing one small module
(``cardtune.curate.yamlsrc`` for the CLI's error printing) does not pull in polars, numpy and Jinja.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BuildResult": "pipeline",
    "Card": "card",
    "Issue": "yamlsrc",
    "Template": "templating",
    "TemplateLibrary": "templating",
    "UserInputError": "yamlsrc",
    "build": "pipeline",
    "import_promptsource": "promptsource",
    "lint_paths": "lint",
    "load_card": "card",
    "load_version": "store",
    "read_manifest": "store",
    "render_task": "render",
}
__all__ = [
    "BuildResult",
    "Card",
    "Issue",
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
    from cardtune.curate.card import Card, load_card
    from cardtune.curate.lint import lint_paths
    from cardtune.curate.pipeline import BuildResult, build
    from cardtune.curate.promptsource import import_promptsource
    from cardtune.curate.render import render_task
    from cardtune.curate.store import load_version, read_manifest
    from cardtune.curate.templating import Template, TemplateLibrary
    from cardtune.curate.yamlsrc import Issue, UserInputError


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cardtune.curate.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cardtune.curate' has no attribute {name!r}")
