"""The length check: before training, count the rows longer than ``max_length`` and say what happens to them.

Lengths are measured as TRL tokenizes (chat template for conversational rows, prompt + completion + EOS for
plain ones), in one batched pass of the fast tokenizer. ``train.overlong: truncate`` keeps TRL's behaviour
(truncate at ``max_length``; a row whose prompt alone fills ``max_length`` has no completion token left and TRL
skips it); ``drop`` removes overlong rows here. If no row would keep a trained token, that is an error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cardtune.curate.errors import UserInputError


@dataclass(frozen=True)
class LengthReport:
    """Counts over the training rows."""

    rows: int
    max_length: int
    overlong: int
    prompt_overlong: int  # prompt alone >= max_length: nothing of the completion would be trained
    action: str  # truncate | drop
    kept: int
    longest: int
    tokens: int  # tokens the trainer will see per epoch (after truncation / dropping)

    def message(self) -> str:
        """One line for the console."""
        if not self.overlong:
            return f"lengths: all {self.rows} rows fit max_length={self.max_length} (longest {self.longest} tokens)"
        what = (
            f"truncated to {self.max_length} tokens"
            + (f" ({self.prompt_overlong} lose their whole completion and are skipped)" if self.prompt_overlong else "")
            if self.action == "truncate"
            else "dropped (train.overlong: drop)"
        )
        return f"lengths: {self.overlong} of {self.rows} rows exceed max_length={self.max_length}: {what}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def with_eos(completion: str, eos: str) -> str:
    """A plain-text completion as TRL trains it: ending in the EOS token (added once)."""
    return completion if completion.endswith(eos) else completion + eos


def lengths(tokenizer: Any, dataset: Any, conversational: bool) -> tuple[list[int], list[int]]:
    """(prompt lengths, prompt+completion lengths) in tokens for every row of ``dataset``."""
    prompts, completions = list(dataset["prompt"]), list(dataset["completion"])
    if conversational and "tools" in dataset.column_names:  # conversation rows: each with its own tools
        from cardtune.train import chat

        pairs = [chat.conversation_ids(tokenizer, row, {}) for row in dataset]
        return [len(p) for p, _ in pairs], [len(f) for _, f in pairs]
    if conversational:
        p_text = tokenizer.apply_chat_template(prompts, add_generation_prompt=True, tokenize=False)
        f_text = tokenizer.apply_chat_template(
            [list(p) + list(c) for p, c in zip(prompts, completions, strict=True)], tokenize=False
        )
        add_special = False
    else:
        eos = tokenizer.eos_token or ""
        p_text = list(prompts)
        f_text = [p + with_eos(c, eos) for p, c in zip(prompts, completions, strict=True)]
        add_special = True
    p_ids = tokenizer(p_text, add_special_tokens=add_special)["input_ids"]
    f_ids = tokenizer(f_text, add_special_tokens=add_special)["input_ids"]
    return [len(x) for x in p_ids], [len(x) for x in f_ids]


def check_lengths(
    tokenizer: Any, dataset: Any, *, conversational: bool, max_length: int | None, overlong: str
) -> tuple[Any, LengthReport]:
    """Apply ``train.overlong`` and return (dataset to train on, report). Raises if nothing would be trained."""
    p_len, f_len = lengths(tokenizer, dataset, conversational)
    n = len(f_len)
    limit = max_length if max_length is not None else max(f_len, default=0)
    over = [i for i, x in enumerate(f_len) if x > limit]
    prompt_over = [i for i, x in enumerate(p_len) if x >= limit]
    if overlong == "drop":
        keep = [i for i, x in enumerate(f_len) if x <= limit]
        tokens = sum(f_len[i] for i in keep)
    else:
        bad = set(prompt_over)
        keep = [i for i in range(n) if i not in bad]
        tokens = sum(min(f_len[i], limit) for i in keep)
    if n and not keep:
        shortest = min(p_len)
        raise UserInputError(
            f"train.sft.max_length={limit} leaves no completion token to train on: "
            + (
                f"every prompt is at least that long (shortest prompt: {shortest} tokens); raise max_length"
                if overlong == "truncate"
                else f"every row is longer (shortest row: {min(f_len)} tokens); raise max_length or use overlong: truncate"
            )
        )
    if len(keep) < n:
        dataset = dataset.select(keep)
    report = LengthReport(
        rows=n,
        max_length=limit,
        overlong=len(over),
        prompt_overlong=len(prompt_over),
        action=overlong,
        kept=len(keep),
        longest=max(f_len, default=0),
        tokens=tokens,
    )
    return dataset, report
