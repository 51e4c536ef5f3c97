"""The row contract shared by every curation step: column names, the rejects schema, and ``StepResult``.

Rendered rows (a polars DataFrame) carry:

* ``task`` (str), ``template_id`` (str; ``""`` for passthrough rows), ``source_ref`` (str, stable:
  ``<task>:<row index or id column value>``);
* the training payload — instruction mode: ``prompt`` (a list of ``{role, content}`` structs: an optional
  system turn, then every turn before the final assistant turn, so multi-turn and few-shot "turns" rows fit
  too) and ``completion`` (a list with the one final assistant message); finetune mode: ``prompt`` and
  ``completion`` as plain strings. One schema for every row, so TRL sees a single conversational
  prompt-completion dataset;
* conversation rows (``templating/conversation.py``: tool calls, tool results, reasoning) have messages with
  ``reasoning_content``, ``tool_calls``, ``tool_call_id`` and ``name`` too, and a ``tools`` column (JSON text of
  the tool schemas, or null); ``prompt`` + ``completion`` is the whole conversation;
* ``answer_choices`` (list[str] or null) for likelihood-ranked evaluation;
* internal columns used by filters and dropped before writing: ``_prompt_text``, ``_completion_text``
  (flat text of the payload) and ``_fields_text`` (the raw template inputs joined by newlines, for
  decontamination of raw fields).

Filters return a ``StepResult``: kept rows (same schema) plus rejects in ``REJECT_SCHEMA``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

TASK = "task"
TEMPLATE_ID = "template_id"
SOURCE_REF = "source_ref"
PROMPT = "prompt"
COMPLETION = "completion"
ANSWER_CHOICES = "answer_choices"
TOOLS = "tools"
PROMPT_TEXT = "_prompt_text"
COMPLETION_TEXT = "_completion_text"
FIELDS_TEXT = "_fields_text"
INTERNAL_COLUMNS = (PROMPT_TEXT, COMPLETION_TEXT, FIELDS_TEXT)

# Rendering's own intermediate columns (``templating/``): the row plan and the engines' rendered parts.
# None of them leaves ``render_task``.
ROW = "__cardtune_row"  # a row's position in its task's source frame
ROW_HASH = "_cardtune_row_hash"  # a row's stable hash; also the Jinja context variable option styles read
FEW_SHOT = "_few_shot"  # whether the row renders few-shot
EXEMPLARS = "_exemplars"  # the exemplar rows' positions (empty when zero-shot)
SYSTEM_TEXT = "_sys"  # the rendered system text (null when the template has none)
USER_TEXT = "_user"  # the rendered last user turn (few-shot "blocks" included)
CHOICE_ID = "_choices"  # an id into the distinct answer-choice tuples of a rendered slice
CONVERSATION = "_conv"  # passthrough: the normalized conversation

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "task": pl.String(),
    "template_id": pl.String(),
    "source_ref": pl.String(),
    "filter": pl.String(),  # quality | exact_dedup | near_dedup | decontaminate | mixture
    "reason": pl.String(),  # a short rule name, e.g. "empty_completion", "duplicate", "benchmark:gsm8k"
    "evidence": pl.String(),  # JSON text with details (matched n-gram, benchmark item id, jaccard, ...)
    "duplicate_of": pl.String(),  # source_ref of the kept row, for dedup; null otherwise
    "prompt_text": pl.String(),
    "completion_text": pl.String(),
}


def empty_rejects() -> pl.DataFrame:
    """A rejects frame with no rows."""
    return pl.DataFrame(schema=REJECT_SCHEMA)


def make_rejects(
    dropped: pl.DataFrame,
    filter_name: str,
    reason: str | pl.Expr,
    evidence: str | pl.Expr = "{}",
    duplicate_of: str | pl.Expr | None = None,
) -> pl.DataFrame:
    """Rejects for ``dropped`` rows (a frame with the row contract's columns)."""

    def lit(value: str | pl.Expr | None) -> pl.Expr:
        return value if isinstance(value, pl.Expr) else pl.lit(value, dtype=pl.String)

    return dropped.select(
        pl.col(TASK),
        pl.col(TEMPLATE_ID),
        pl.col(SOURCE_REF),
        pl.lit(filter_name, dtype=pl.String).alias("filter"),
        lit(reason).alias("reason"),
        lit(evidence).alias("evidence"),
        lit(duplicate_of).alias("duplicate_of"),
        pl.col(PROMPT_TEXT).alias("prompt_text"),
        pl.col(COMPLETION_TEXT).alias("completion_text"),
    ).cast(REJECT_SCHEMA)  # type: ignore[arg-type]


@dataclass(frozen=True)
class StepResult:
    """What a filter step returns: kept rows, rejects, and optional report details for the manifest."""

    kept: pl.DataFrame
    rejects: pl.DataFrame
    report: dict[str, object] = field(default_factory=dict)


MESSAGE_SEPARATOR = "\n\n"  # between the turns of a message list, as the renderer joins system and user text


def flat_text(column: str, dtype: pl.DataType) -> pl.Expr:
    """Flat text of a payload column: strings as they are, message lists as their texts joined by a blank line.

    A message's text is its content; a conversation row's message also shows its reasoning and its tool calls
    (``name(arguments)``, one a line), so filters see the whole conversation. The same text the filters saw when
    the rows were rendered, so stored rows read back (near-dedup ``against``, reports) measure and compare like
    fresh ones.
    """
    if isinstance(dtype, pl.List):
        return pl.col(column).list.eval(message_text(dtype.inner)).list.join(MESSAGE_SEPARATOR).fill_null("")
    return pl.col(column).cast(pl.String).fill_null("")


def message_text(dtype: Any) -> pl.Expr:
    """The text of one message (``pl.element()`` of a message list) of struct type ``dtype``."""
    el = pl.element().struct
    names = {f.name for f in dtype.fields} if isinstance(dtype, pl.Struct) else set()
    if "tool_calls" not in names:
        return el.field("content")

    def some(text: pl.Expr) -> pl.Expr:
        return pl.when(text.str.len_chars() > 0).then(text)

    fn = pl.element().struct.field("function").struct
    calls = el.field("tool_calls").list.eval(
        pl.concat_str([fn.field("name"), pl.lit("("), fn.field("arguments"), pl.lit(")")])
    )
    parts = [some(el.field("reasoning_content")), some(el.field("content")), some(calls.list.join("\n"))]
    return pl.concat_str(parts, separator="\n", ignore_nulls=True).fill_null("")


def with_flat_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the internal flat-text columns to stored rows (e.g. an earlier version read back from parquet)."""
    return frame.with_columns(
        flat_text(PROMPT, frame.schema[PROMPT]).alias(PROMPT_TEXT),
        flat_text(COMPLETION, frame.schema[COMPLETION]).alias(COMPLETION_TEXT),
        pl.lit("", dtype=pl.String).alias(FIELDS_TEXT),
    )
