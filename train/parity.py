"""The chat-template parity check: the most common silent failure in supervised fine-tuning, caught before step 1.

For a sample of rows (the first row of every task × template, then seeded others), tokenized exactly as TRL's
``SFTTrainer`` tokenizes them:

1. the tokenized prompt must be a prefix of the tokenized prompt + completion — and, in instruction mode, the
   prompt is rendered with ``apply_chat_template(..., add_generation_prompt=True)``, which is what the model sees
   at inference, so this also proves the training context equals the inference context;
2. the tokens the loss trains on (everything after the prompt) must be exactly the completion followed by an
   end-of-turn / EOS token the model stops generating at (trailing whitespace after it is allowed).

TRL itself only warns once when (1) fails and trains anyway; a template without an end-of-turn in the completion
trains a model that never stops. Failures raise ``UserInputError`` showing the offending tokens.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cardtune.curate.errors import UserInputError
from cardtune.train.lengths import with_eos

SAMPLE = 32


@dataclass(frozen=True)
class ParityResult:
    """What was checked: rows and the stop tokens accepted as end of the completion."""

    rows_checked: int
    stop_tokens: list[str]


def sample_indices(tasks: Sequence[Any], template_ids: Sequence[Any], n: int = SAMPLE, seed: int = 0) -> list[int]:
    """Row indices: the first row of each (task, template_id), then seeded others, up to ``n`` (sorted)."""
    picked: dict[tuple[str, str], int] = {}
    for i, key in enumerate(zip(tasks, template_ids, strict=True)):
        picked.setdefault((str(key[0] or ""), str(key[1] or "")), i)
    chosen = list(picked.values())[:n]
    taken = set(chosen)
    rest = [i for i in range(len(tasks)) if i not in taken]
    random.Random(seed).shuffle(rest)
    chosen += rest[: max(0, n - len(chosen))]
    return sorted(chosen)


def sample_rows(rows: Sequence[dict[str, Any]], n: int = SAMPLE, seed: int = 0) -> list[dict[str, Any]]:
    """The rows ``sample_indices`` picks."""
    idx = sample_indices([r.get("task") for r in rows], [r.get("template_id") for r in rows], n, seed)
    return [rows[i] for i in idx]


def token_ids(tokenizer: Any, row: dict[str, Any], conversational: bool) -> tuple[list[int], list[int]]:
    """(prompt ids, prompt+completion ids) as TRL's SFTTrainer builds them."""
    if conversational:
        try:
            prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True)["input_ids"]
            full = tokenizer.apply_chat_template(list(row["prompt"]) + list(row["completion"]))["input_ids"]
        except Exception as exc:  # jinja2 TemplateError, or the template's own raise_exception
            raise UserInputError(f"chat template failed to render row {row.get('source_ref', '?')}: {exc}") from None
        return list(prompt), list(full)
    eos = tokenizer.eos_token or ""
    completion = with_eos(row["completion"], eos)
    return list(tokenizer(row["prompt"])["input_ids"]), list(tokenizer(row["prompt"] + completion)["input_ids"])


def check_parity(
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    *,
    conversational: bool,
    stop_ids: set[int],
    seed: int = 0,
) -> ParityResult:
    """Raise ``UserInputError`` (showing tokens) unless every sampled row passes both parity rules."""
    if conversational and not getattr(tokenizer, "chat_template", None):
        raise UserInputError(
            "the tokenizer has no chat template: set `train.chat_template` to chatml, llama-3, mistral, alpaca or "
            "a .jinja file"
        )
    sample = sample_rows(rows, seed=seed)
    for row in sample:
        prompt, full = token_ids(tokenizer, row, conversational)
        where = f"row {row.get('source_ref', '?')} (template {row.get('template_id') or '-'})"
        if conversational and len(full) <= len(prompt) and full == prompt[: len(full)]:
            raise UserInputError(
                f"chat-template parity: {where}: rendering the conversation with its assistant turn gives no more "
                f"tokens than the prompt alone ({len(full)} vs {len(prompt)}): the chat template drops assistant "
                "turns, so nothing would be trained. Use a template that renders assistant messages."
            )
        if full[: len(prompt)] != prompt:
            differ = (i for i, (a, b) in enumerate(zip(prompt, full, strict=False)) if a != b)
            k = min(next(differ, min(len(prompt), len(full))), len(full), len(prompt))
            raise UserInputError(
                f"chat-template parity: {where}: the tokenized prompt is not a prefix of the tokenized "
                f"prompt + completion, so the model would train on a context it never sees at inference.\n"
                f"  prompt (inference) from token {k}: {_show(tokenizer, prompt[max(0, k - 3) : k + 6])}\n"
                f"  training sequence from token {k}:  {_show(tokenizer, full[max(0, k - 3) : k + 6])}\n"
                + (
                    "  fix the template so the generation prompt renders exactly as the start of the assistant turn"
                    if conversational
                    else "  tokens merge across the prompt/completion boundary: end prompts with a newline or "
                    "start completions with a space"
                )
            )
        _check_trained(tokenizer, row, full[len(prompt) :], conversational, stop_ids, where)
    return ParityResult(len(sample), [str(tokenizer.convert_ids_to_tokens(i)) for i in sorted(stop_ids)])


def _check_trained(
    tokenizer: Any, row: dict[str, Any], trained: list[int], conversational: bool, stop_ids: set[int], where: str
) -> None:
    expected = row["completion"][-1]["content"] if conversational else row["completion"]
    eos = tokenizer.eos_token or ""
    if not conversational and eos and expected.endswith(eos):
        expected = expected[: -len(eos)]
    stops = [i for i, t in enumerate(trained) if t in stop_ids]
    if not stops:
        raise UserInputError(
            f"chat-template parity: {where}: the trained tokens do not end with an end-of-turn/EOS token, so the "
            f"model would never learn to stop.\n  trained tokens: {_show(tokenizer, trained)}\n"
            f"  stop tokens: {[tokenizer.convert_ids_to_tokens(i) for i in sorted(stop_ids)]}"
        )
    first = stops[0]
    body = tokenizer.decode(trained[:first], skip_special_tokens=False)
    tail = tokenizer.decode(trained[first + 1 :], skip_special_tokens=False)
    if body.strip() != expected.strip() or tail.strip():
        raise UserInputError(
            f"chat-template parity: {where}: the tokens trained by the loss are not exactly the completion plus "
            f"its end-of-turn token.\n  trained tokens: {_show(tokenizer, trained)}\n  expected: {expected!r} "
            "followed by a stop token"
        )


def _show(tokenizer: Any, ids: Sequence[int]) -> str:
    toks = tokenizer.convert_ids_to_tokens(list(ids))
    texts = [tokenizer.convert_tokens_to_string([t]) for t in toks]
    return "[" + ", ".join(repr(t) for t in texts) + "]"
