"""``cardtune validate``: every check of a card that needs no training stack.

Schema errors come from ``load_card``; this module adds the checks that read the file system: template
references resolve, and each task's source exists and (scanning one row) has every column its templates need.
It never imports torch.
"""

from __future__ import annotations

from pathlib import Path

from cardtune.curate.card import Card, load_card
from cardtune.curate.yamlsrc import Issue, UserInputError


def validate_card(path: str | Path) -> Card:
    """Load a card and run every data-free and one-row check. Raises ``UserInputError`` with all issues."""
    card = load_card(path)
    issues: list[Issue] = []
    issues.extend(check_templates(card))
    if issues:
        raise UserInputError(issues)
    return card


def check_templates(card: Card) -> list[Issue]:
    """Template references resolve (card line + did-you-mean) and each source has every declared input."""
    from cardtune.curate.card_templates import template_issues

    return template_issues(card)[1]
