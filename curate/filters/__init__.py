"""The filter registry: every filter, in the order the pipeline runs them.

``FILTERS`` is the one list of filters. The card's ``filters:`` section is built from it
(:func:`filters_model`), the pipeline runs the enabled ones in this order (:func:`enabled`), and the manifest,
``cardtune inspect`` and the HTML report list filters in this order. Adding a filter is one new module that
declares a :class:`~cardtune.curate.filters.base.Filter` plus one line here (see ``docs/architecture.md``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, create_model

from cardtune.curate.card.section import Section
from cardtune.curate.errors import UserInputError, did_you_mean
from cardtune.curate.filters.base import BuildContext, Filter
from cardtune.curate.filters.decontaminate import DECONTAMINATE
from cardtune.curate.filters.exact_dedup import EXACT_DEDUP
from cardtune.curate.filters.max_turns import MAX_TURNS
from cardtune.curate.filters.near_dedup import NEAR_DEDUP
from cardtune.curate.filters.quality import QUALITY

FILTERS: tuple[Filter[Any], ...] = (
    QUALITY,
    MAX_TURNS,
    EXACT_DEDUP,
    NEAR_DEDUP,
    DECONTAMINATE,
)

# Sections that group several filters under one key of `filters:` (e.g. `dedup: {exact, near}`).
GROUPS: dict[str, str] = {"dedup": "Duplicate removal."}

__all__ = ["FILTERS", "GROUPS", "BuildContext", "Filter", "by_name", "enabled", "filters_model", "names"]


def names() -> list[str]:
    """Filter names in pipeline order."""
    return [f.name for f in FILTERS]


def by_name(name: str) -> Filter[Any]:
    """A filter by name (did-you-mean on a typo)."""
    for f in FILTERS:
        if f.name == name:
            return f
    raise UserInputError(f"unknown filter {name!r}" + did_you_mean(name, names()) + f" (filters: {', '.join(names())})")


def enabled(filters: Any, registry: tuple[Filter[Any], ...] = FILTERS) -> list[tuple[Filter[Any], Any]]:
    """(filter, its spec) for every filter a card's ``filters`` section turns on, in pipeline order."""
    out = []
    for f in registry:
        spec = f.spec_of(filters)
        if spec is not None:
            out.append((f, spec))
    return out


def _field(f: Filter[Any]) -> tuple[Any, Any]:
    if f.on_by_default:
        return (
            f.spec | None,
            Field(default_factory=f.spec, description=f"{f.summary}; `null` turns it off. Default: on."),
        )
    return (f.spec | None, Field(None, description=f"{f.summary}. Default: off."))


def filters_model(registry: tuple[Filter[Any], ...] = FILTERS, module: str = __name__) -> type[Section]:
    """The pydantic model of the card's ``filters:`` section, one field (or group) per registered filter.

    The models are named as attributes of ``module`` (``Filters`` and one per group, e.g. ``Dedup``): the module
    that creates them must bind those names, so a card pickles (worker processes receive it).
    """
    top: dict[str, Any] = {}
    grouped: dict[str, dict[str, Any]] = {}
    for f in registry:
        if len(f.key) == 1:
            top[f.key[0]] = _field(f)
        else:
            head, leaf = f.key
            if head not in top:
                top[head] = None  # keep the group where its first filter sits
            grouped.setdefault(head, {})[leaf] = _field(f)
    for head, fields in grouped.items():
        defaults = ", ".join(f"{k} {'on' if registry_on(registry, (head, k)) else 'off'}" for k in fields)
        model = create_model(
            head.capitalize(), __base__=Section, __doc__=GROUPS.get(head, head), __module__=module, **fields
        )
        top[head] = (model, Field(default_factory=model, description=f"{GROUPS.get(head, head)} Default: {defaults}."))
    order = " → ".join(f.title for f in registry)
    return create_model(
        "Filters", __base__=Section, __doc__=f"Filters run in order: {order}.", __module__=module, **top
    )


def registry_on(registry: tuple[Filter[Any], ...], key: tuple[str, ...]) -> bool:
    """Whether the filter at ``key`` is on by default."""
    return any(f.key == key and f.on_by_default for f in registry)
