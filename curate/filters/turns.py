"""Per-turn views of conversation rows: which rows are conversations, their turns, and the turn a word falls in.

A *conversation row* is a row passed through from a conversation source — no template (``template_id`` is empty)
and a payload that is a list of messages: what ``tasks[].conversation``, ``messages`` and ``conversations`` sources
give. Templated rows (few-shot "turns" rows included) and plain-text rows (finetune mode) are not, so the per-turn
quality rules, the per-turn evidence of dedup and decontamination and the per-role token counts of the reports
leave them exactly as they were.

A turn is one message of ``prompt + completion``, numbered by its position from 0 (a system message, when there is
one, is turn 0 but is never a *counted* turn: turn counts and per-turn bounds skip system messages, as
``max_turns`` does). A turn's text is :func:`cardtune.curate.rows.message_text`: its content, with its reasoning and
its tool calls (``name(arguments)``) for conversation-form messages — the text the filters read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from cardtune.curate.filters import textnorm
from cardtune.curate.rows import COMPLETION, PROMPT, TEMPLATE_ID, message_text

ROW, TURN, ROLE, TEXT = "row", "turn", "role", "text"


def has_messages(rows: pl.DataFrame) -> bool:
    """Whether the rows' payload columns are message lists (instruction mode) with the same message type."""
    p, c = rows.schema.get(PROMPT), rows.schema.get(COMPLETION)
    return isinstance(p, pl.List) and isinstance(c, pl.List) and p == c


def conversation_mask(rows: pl.DataFrame) -> npt.NDArray[np.bool_]:
    """Per row: whether it is a conversation row (see the module docstring)."""
    if rows.height == 0 or not has_messages(rows) or TEMPLATE_ID not in rows.columns:
        return np.zeros(rows.height, dtype=np.bool_)
    mask: npt.NDArray[np.bool_] = (rows.get_column(TEMPLATE_ID).fill_null("") == "").to_numpy()
    return mask


def turn_counts(rows: pl.DataFrame) -> list[int | None]:
    """Per row: its counted (non-system) turns when it is a conversation row, else ``None``."""
    mask = conversation_mask(rows)
    if not mask.any():
        return [None] * rows.height
    role = pl.element().struct.field("role")
    n = rows.select(
        (pl.concat_list(PROMPT, COMPLETION).list.eval(role != "system").list.sum().fill_null(0)).cast(pl.Int64)
    ).to_series()
    return [int(v) if m else None for v, m in zip(n.to_list(), mask.tolist(), strict=True)]


def turn_table(rows: pl.DataFrame, *, system: bool = True) -> pl.DataFrame:
    """One line per turn of every conversation row: ``row`` (position in ``rows``), ``turn``, ``role``, ``text``.

    ``system=False`` leaves system messages out (their turn numbers are kept, so the others keep theirs).
    """
    empty = pl.DataFrame(schema={ROW: pl.Int64, TURN: pl.Int64, ROLE: pl.String, TEXT: pl.String})
    mask = conversation_mask(rows)
    if not mask.any():
        return empty
    inner: Any = rows.schema[PROMPT].inner  # type: ignore[attr-defined]
    msgs = pl.concat_list(PROMPT, COMPLETION)
    out = (
        rows.select(
            msgs.list.eval(pl.element().struct.field("role")).alias(ROLE),
            msgs.list.eval(message_text(inner)).alias(TEXT),
        )
        .with_row_index(ROW)
        .filter(pl.Series(mask))
        .with_columns(pl.int_ranges(pl.col(ROLE).list.len()).alias(TURN))
        .explode(ROLE, TEXT, TURN)
        .select(pl.col(ROW).cast(pl.Int64), pl.col(TURN).cast(pl.Int64), ROLE, pl.col(TEXT).fill_null(""))
        .drop_nulls(TURN)
    )
    return out if system else out.filter(pl.col(ROLE) != "system")


def turn_of_word(rows: pl.DataFrame, row: int, word: int) -> tuple[int, str] | None:
    """(turn, role) of a conversation row's ``word``-th normalized word (:func:`textnorm.words`) of its flat text
    — prompt and completion texts joined, as filters read them; ``None`` past its last word."""
    turns = turn_table(rows[row : row + 1])
    if turns.height == 0:
        return None
    counts = textnorm.words(turns.get_column(TEXT)).counts
    ends = np.cumsum(counts)
    k = int(np.searchsorted(ends, word, side="right"))
    if k >= turns.height:
        return None
    return int(turns.get_column(TURN)[k]), str(turns.get_column(ROLE)[k])
