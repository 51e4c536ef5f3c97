"""The base of every card section model: frozen, unknown keys refused (``extra="forbid"``).

Card sections live with the code that owns them (filters' specs in ``cardtune.curate.filters``, training's in
``cardtune.train.schema``); they all derive from ``Section`` so the card loader treats them alike.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A frozen card section that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)
