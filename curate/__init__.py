"""cardtune.curate: from a card to a versioned dataset — card schema, sources, templates, filters, mixing, store.

Never imports torch. The main entry points are re-exported here; each lives in a small module of its own.
"""

from cardtune.curate.card import Card, load_card
from cardtune.curate.lint import lint_paths
from cardtune.curate.pipeline import BuildResult, build
from cardtune.curate.promptsource import import_promptsource
from cardtune.curate.render import render_task
from cardtune.curate.store import load_version, read_manifest
from cardtune.curate.templating import Template, TemplateLibrary
from cardtune.curate.yamlsrc import Issue, UserInputError

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
