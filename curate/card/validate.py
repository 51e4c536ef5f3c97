"""``cardtune validate``: every check of a card that needs no training stack.

Schema errors come from ``load_card``; this module adds the checks that read the file system: template
references resolve, and each task's source exists and (scanning one row) has every column its templates need.
It never imports torch.
"""

from __future__ import annotations

from pathlib import Path

from cardtune.curate.card.load import load_card
from cardtune.curate.card.schema import Card
from cardtune.curate.errors import Issue, UserInputError
from cardtune.curate.inputs import ResolvedInputs, resolve_inputs, resolve_train_inputs


def validate_card(path: str | Path) -> Card:
    """Load a card and run every data-free and one-row check. Raises ``UserInputError`` with all issues."""
    card = load_card(path)
    issues: list[Issue] = []
    inputs = resolve_inputs(card, issues)
    issues.extend(check_templates(card, inputs))
    try:
        resolve_train_inputs(card)  # model, chat template file, base run: the same rule, caught before `tune`
    except UserInputError as exc:
        issues.extend(exc.issues)
    if issues:
        raise UserInputError(issues)
    return card


def check_templates(card: Card, inputs: ResolvedInputs | None = None) -> list[Issue]:
    """Template references resolve (card line + did-you-mean) and each source has every declared input; held-out
    and eval-only templates (``held_out_templates``, ``eval.templates``) resolve too."""
    from cardtune.curate.templating.card_templates import template_issues
    from cardtune.curate.templating.unseen import split_templates

    inputs = inputs if inputs is not None else resolve_inputs(card)
    by_task, issues = template_issues(card, inputs)
    if not issues:
        issues.extend(split_templates(card, inputs, by_task)[2])
    return issues
