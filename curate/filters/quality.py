"""Quality rules: empty or prompt-echoing completions, length bounds in characters and tokens, repetition.

Each dropped row is a reject whose reason names the first rule it broke, in this order: ``empty_completion``,
``completion_equals_prompt``, ``too_short_chars``, ``too_long_chars``, ``too_few_tokens``, ``too_many_tokens``,
``turn_too_short_chars``, ``turn_too_long_chars``, ``repetition``; the evidence holds the measured value and the
bound. For multi-turn rows the completion is the final assistant turn. The per-turn bounds apply to conversation
rows only (:mod:`cardtune.curate.filters.turns`: passed-through message lists): every non-system turn's text is
measured, and the evidence names the first turn out of bounds (``turn``, its position in prompt + completion from 0,
``role``, ``value``, ``bound``); other rows never break them. Token bounds count prompt + completion tokens (no special tokens) with :func:`cardtune.curate.tokens.count_tokens` — the named tokenizer (a local ``tokenizer.json`` or
directory, or a hub id) is loaded lazily and cached by :mod:`tokens`, which a core install may lack.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from cardtune.curate import tokens
from cardtune.curate.card.section import Section
from cardtune.curate.errors import UserInputError
from cardtune.curate.filters import textnorm, turns
from cardtune.curate.filters.base import BuildContext, Filter, InputRef

if TYPE_CHECKING:
    from cardtune.curate.inputs import NamedInput
from cardtune.curate.rows import COMPLETION_TEXT, PROMPT_TEXT, StepResult, make_rejects

_BATCH = 32_768
_LOC = ("filters", "quality", "tokenizer")
LATE_FIELDS = ("min_turn_chars", "max_turn_chars")


class Quality(Section):
    """Quality rules; each drop is a reject with its rule as the reason."""

    min_chars: int = Field(1, ge=0, description="Minimum characters of prompt + completion. Default: 1.")
    max_chars: int | None = Field(None, ge=1, description="Maximum characters of prompt + completion. Default: none.")
    min_tokens: int | None = Field(None, ge=0, description="Minimum tokens (needs `tokenizer`). Default: none.")
    max_tokens: int | None = Field(None, ge=1, description="Maximum tokens (needs `tokenizer`). Default: none.")
    tokenizer: str | None = Field(None, description="Tokenizer for the token bounds. Default: none.")
    drop_empty_completion: bool = Field(True, description="Drop empty or whitespace-only completions. Default: true.")
    drop_completion_equals_prompt: bool = Field(
        True, description="Drop rows whose completion equals the prompt. Default: true."
    )
    max_repetition: float | None = Field(
        None, gt=0, le=1, description="Maximum fraction of repeated word n-grams in the completion. Default: none."
    )
    repetition_ngram: int = Field(3, ge=1, description="n for the repetition rule. Default: 3.")
    min_turn_chars: int | None = Field(
        None,
        ge=0,
        description="Conversation rows (passed-through message lists) only: minimum characters of every turn "
        "(each non-system message: its content, reasoning and tool calls). Default: none.",
    )
    max_turn_chars: int | None = Field(
        None,
        ge=1,
        description="Conversation rows only: maximum characters of every turn (e.g. a pasted tool output). "
        "Default: none.",
    )

    @model_serializer(mode="wrap")
    def _late_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)  # fields added after the first release are hashed only when set: old ids stay
        if isinstance(data, dict):
            for key in LATE_FIELDS:
                if data.get(key) is None:
                    data.pop(key, None)
        return data

    @model_validator(mode="after")
    def _tokenizer(self) -> Quality:
        if (self.min_tokens is not None or self.max_tokens is not None) and self.tokenizer is None:
            raise ValueError("`min_tokens`/`max_tokens` need a `tokenizer`")
        return self


def token_counts(texts: pl.Series, tokenizer: NamedInput) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Tokens per text with the named tokenizer (:func:`tokens.count_tokens`); load errors point at the card key."""
    try:
        counts: np.ndarray[Any, np.dtype[np.int64]] = tokens.count_tokens(texts, tokenizer)
    except UserInputError as exc:
        raise UserInputError([replace(i, loc=i.loc or _LOC) for i in exc.issues]) from None
    return counts


def repetition(texts: pl.Series, n: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Fraction of each text's word n-grams that repeat an earlier n-gram of the same text (0 when none).

    Distinct n-grams per text are counted by one sort of ``(text index << 32) | (hash >> 32)`` keys: texts stay
    in order, so the sort mostly merges short runs (a hash-table ``unique`` over (text, hash) pairs was 3×
    slower at 1M texts). Two different n-grams of one text collide in the top 32 hash bits with probability
    ~k²/2³³ for k n-grams — negligible for a length-bounded rule.
    """
    if len(texts) > _BATCH:  # batches keep the word arrays small (fewer page faults, bounded memory)
        return np.concatenate([repetition(texts.slice(i, _BATCH), n) for i in range(0, len(texts), _BATCH)])
    grams = textnorm.ngrams(textnorm.words(texts), n)
    counts = np.diff(grams.doc_offsets)
    if len(grams.hashes) == 0:
        return np.zeros(len(texts), dtype=np.float64)
    docs = np.repeat(np.arange(len(texts), dtype=np.uint64), counts)
    keys = np.sort((docs << np.uint64(32)) | (grams.hashes.astype(np.uint64) >> np.uint64(32)), kind="stable")
    first = np.empty(len(keys), dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    distinct = np.bincount((keys[first] >> np.uint64(32)).astype(np.int64), minlength=len(texts))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, 1.0 - distinct / np.maximum(counts, 1), 0.0)


def quality_filter(df: pl.DataFrame, spec: Quality, ctx: BuildContext) -> StepResult:
    """Apply the card's quality rules; see the module docstring for the rules and their order."""
    prompt = df.get_column(PROMPT_TEXT).cast(pl.String).fill_null("")
    completion = df.get_column(COMPLETION_TEXT).cast(pl.String).fill_null("")
    chars = (prompt.str.len_chars() + completion.str.len_chars()).to_numpy().astype(np.int64)
    stripped = completion.str.strip_chars()
    rules: list[tuple[str, np.ndarray[Any, np.dtype[np.bool_]], np.ndarray[Any, Any] | None, object]] = []
    if spec.drop_empty_completion:
        rules.append(("empty_completion", (stripped.str.len_chars() == 0).to_numpy(), None, None))
    if spec.drop_completion_equals_prompt:
        same = (stripped == prompt.str.strip_chars()).to_numpy() & (stripped.str.len_chars() > 0).to_numpy()
        rules.append(("completion_equals_prompt", same, None, None))
    rules.append(("too_short_chars", chars < spec.min_chars, chars, spec.min_chars))
    if spec.max_chars is not None:
        rules.append(("too_long_chars", chars > spec.max_chars, chars, spec.max_chars))
    if spec.tokenizer is not None and (spec.min_tokens is not None or spec.max_tokens is not None):
        tok = ctx.inputs.tokenizer(spec.tokenizer)
        n_tokens = token_counts(prompt, tok) + token_counts(completion, tok)
        if spec.min_tokens is not None:
            rules.append(("too_few_tokens", n_tokens < spec.min_tokens, n_tokens, spec.min_tokens))
        if spec.max_tokens is not None:
            rules.append(("too_many_tokens", n_tokens > spec.max_tokens, n_tokens, spec.max_tokens))
    rules += turn_rules(df, spec)
    if spec.max_repetition is not None:
        rep = repetition(completion, spec.repetition_ngram)
        rules.append(("repetition", rep > spec.max_repetition, np.round(rep, 4), spec.max_repetition))

    reason = np.full(df.height, None, dtype=object)
    evidence = np.full(df.height, None, dtype=object)
    counts: dict[str, int] = {}
    for name, hit, value, bound in rules:
        new = hit & (reason == None)  # noqa: E711 - elementwise comparison on an object array
        counts[name] = int(new.sum())
        reason[new] = name
        for i in np.flatnonzero(new).tolist():
            if value is not None and isinstance(value[i], tuple):  # a per-turn rule: (turn, role, chars)
                turn, role, chars = value[i]
                evidence[i] = json.dumps({"rule": name, "turn": turn, "role": role, "value": chars, "bound": bound})
            elif value is not None:
                evidence[i] = f'{{"rule": "{name}", "value": {value[i]}, "bound": {bound}}}'
            else:
                evidence[i] = f'{{"rule": "{name}"}}'

    drop = reason != None  # noqa: E711
    dropped = df.filter(pl.Series(drop)).with_columns(
        pl.Series("__reason", reason[drop].tolist(), dtype=pl.String),
        pl.Series("__ev", evidence[drop].tolist(), dtype=pl.String),
    )
    rejects = make_rejects(dropped, "quality", pl.col("__reason"), evidence=pl.col("__ev"))
    report: dict[str, object] = {"dropped": int(drop.sum()), "by_rule": counts}
    return StepResult(kept=df.filter(pl.Series(~drop)), rejects=rejects, report=report)


def turn_rules(df: pl.DataFrame, spec: Quality) -> list[tuple[str, npt.NDArray[np.bool_], npt.NDArray[Any], object]]:
    """The per-turn bounds: per row whether some turn breaks them, and (turn, role, chars) of the first that does."""
    bounds = [("turn_too_short_chars", spec.min_turn_chars, -1), ("turn_too_long_chars", spec.max_turn_chars, 1)]
    bounds = [b for b in bounds if b[1] is not None]
    if not bounds:
        return []
    table = turns.turn_table(df, system=False)
    chars = table.get_column(turns.TEXT).str.len_chars().cast(pl.Int64)
    out: list[tuple[str, npt.NDArray[np.bool_], npt.NDArray[Any], object]] = []
    for name, bound, sign in bounds:
        assert bound is not None
        bad = table.with_columns(chars.alias("chars")).filter(pl.col("chars") * sign > bound * sign)
        first = bad.unique(turns.ROW, keep="first", maintain_order=True)  # turns are in order within a row
        hit = np.zeros(df.height, dtype=np.bool_)
        value = np.full(df.height, None, dtype=object)
        for row, turn, role, n in first.select(turns.ROW, turns.TURN, turns.ROLE, "chars").iter_rows():
            hit[row] = True
            value[row] = (turn, role, n)
        out.append((name, hit, value, bound))
    return out


def _inputs(spec: Quality) -> list[InputRef]:
    return [InputRef("tokenizer", spec.tokenizer, _LOC)] if spec.tokenizer is not None else []


QUALITY = Filter(
    name="quality",
    key=("quality",),
    spec=Quality,
    run=quality_filter,
    locality="row",
    title="quality",
    on_by_default=True,
    inputs=_inputs,
    summary="Quality rules (length bounds, empty completions, repetition)",
)
