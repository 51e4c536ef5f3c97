"""The chat-template parity check: the most common silent failure in supervised fine-tuning, caught before step 1.

For a sample of rows (the first row of every task × template, then seeded others), tokenized exactly as training
tokenizes them (``cardtune.train.chat``: TRL's rule, with ``train.chat_template_kwargs``), one function per check:

1. ``_check_assistant_rendered``: the training render must have more tokens than the prompt alone;
2. ``_check_prefix``: the tokenized prompt must be a prefix of the tokenized prompt + completion. In instruction
   mode the prompt is rendered with ``add_generation_prompt=True``, which is what the model sees at inference, so
   this proves the training context equals the inference context; a mismatch says whether the earlier turns
   changed or the generation prompt differs (``the generation prompt opens X, the training render does not``);
3. ``_check_trained``: the trained tokens (everything after the prompt, up to and including the first stop
   token) must contain the completion verbatim and end at a stop token: EOS, a built-in template's end-of-turn,
   or one declared in ``train.chat_template.end_of_turn``. Fixed template text around the completion (an empty
   ``<think></think>`` block, a channel header) is allowed and reported; it must be the same on every row.
   Tokens after the stop token are not trained (``chat.trained_mask``) and not checked.

A failure is a ``ParityFailure`` naming its cause class (``CAUSES``); ``check_parity`` raises it as a
``ParityError`` (a ``UserInputError``) showing the offending tokens. ``check_row`` returns it instead, for tools
that survey many templates. TRL itself only warns once when (2) fails and trains anyway; a template without an
end-of-turn in the completion trains a model that never stops.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cardtune.curate.errors import UserInputError
from cardtune.train import chat
from cardtune.train.lengths import with_eos

SAMPLE = 32
CAUSES = {
    "no_chat_template": "the tokenizer has no chat template",
    "render_error": "the template fails to render (often a template variable the card does not set)",
    "drops_assistant": "the training render has no assistant turn",
    "history_changed": "the training render changes the turns before the completion",
    "generation_prompt_mismatch": "the generation prompt differs from the start of the rendered assistant turn",
    "boundary_merge": "prompt and completion tokens merge across the boundary (plain text)",
    "end_of_turn_not_a_token": "the template's end-of-turn marker is not a single token of the tokenizer",
    "end_of_turn_not_declared": "the template's end-of-turn marker is a token, but not one the model stops at",
    "no_end_of_turn": "the assistant turn ends with no end-of-turn or EOS token",
    "stop_before_completion": "a stop token comes before the completion",
    "completion_not_verbatim": "the trained tokens do not contain the completion verbatim",
    "template_text_varies": "the template text trained around the completion differs between rows",
    # per-turn checks (train.turns: all; train/parity_turns.py)
    "turn_history_changed": "the conversation up to an assistant turn (with the generation prompt) is not a prefix "
    "of the whole conversation's rendering",
    "mask_mismatch": "the trained tokens are not exactly the assistant spans of the conversation",
    "generation_blocks_mismatch": "the template's {% generation %} blocks do not match the assistant turns",
}
_DECLARE = "train.chat_template: {path: FILE, end_of_turn: [MARKER], add_special_tokens: true}"


@dataclass(frozen=True)
class ParityFailure:
    """Why a row fails: its cause class (a key of ``CAUSES``), where, and the message shown to the user."""

    cause: str
    where: str
    detail: str

    @property
    def message(self) -> str:
        return f"chat-template parity: {self.where}: {self.detail}"


class ParityError(UserInputError):
    """A parity failure as a user error; ``.failure.cause`` names its class."""

    def __init__(self, failure: ParityFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass(frozen=True)
class RowParity:
    """A row that passed: template text trained before/after the completion, and untrained text after the stop."""

    before: str
    after: str
    stop: str
    untrained: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParityResult:
    """What was checked: rows, the stop tokens accepted as end of the completion, template text trained around
    the completion (``(before, after)``, the same on every row) and notes worth showing."""

    rows_checked: int
    stop_tokens: list[str]
    around_completion: tuple[str, str] = ("", "")
    untrained_after_stop: str = ""
    notes: list[str] = field(default_factory=list)
    turns_checked: int = 0  # assistant turns checked one by one (train.turns: all)


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


def token_ids(
    tokenizer: Any, row: dict[str, Any], conversational: bool, kwargs: dict[str, Any] | None = None
) -> tuple[list[int], list[int]]:
    """(prompt ids, prompt+completion ids) as training tokenizes them. Template errors are ``UserInputError``."""
    if conversational:
        try:
            return chat.conversation_ids(tokenizer, row, kwargs or {})
        except Exception as exc:  # jinja2 TemplateError, the template's own raise_exception, a None it iterates
            where = f"row {row.get('source_ref', '?')}"
            raise ParityError(_render_failure(tokenizer, exc, kwargs or {}, where)) from None
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
    kwargs: dict[str, Any] | None = None,
    policy: chat.TurnPolicy | None = None,
) -> ParityResult:
    """Raise ``ParityError`` (showing tokens) unless every sampled row passes every check; with a ``policy`` of
    ``turns: all``, every assistant turn of each sampled row is checked too (``parity_turns``)."""
    from cardtune.train import parity_turns

    sample = sample_rows(rows, seed=seed)
    passed: list[RowParity] = []
    turns = 0
    for row in sample:
        outcome = check_row(tokenizer, row, conversational=conversational, stop_ids=stop_ids, kwargs=kwargs)
        if isinstance(outcome, ParityFailure):
            raise ParityError(outcome)
        passed.append(outcome)
        if conversational and policy is not None and policy.turns == "all":
            checked = parity_turns.check_turns(tokenizer, row, stop_ids, kwargs or {}, policy)
            if isinstance(checked, ParityFailure):
                raise ParityError(checked)
            turns += checked
    plain = [(r, p) for r, p in zip(sample, passed, strict=True) if not _structured(r, conversational)]
    varies = _check_fixed([r for r, _ in plain], [p for _, p in plain])
    if varies is not None:
        raise ParityError(varies)
    first = passed[0] if passed else RowParity("", "", "", "")
    notes = sorted({n for p in passed for n in p.notes})
    stops = [str(tokenizer.convert_ids_to_tokens(i)) for i in sorted(stop_ids)]
    return ParityResult(len(sample), stops, (first.before, first.after), first.untrained, notes, turns)


def _structured(row: dict[str, Any], conversational: bool) -> bool:
    """A final turn with reasoning or tool calls: its trained text holds more than the content (not template text)."""
    last = row["completion"][-1] if conversational and row.get("completion") else {}
    return bool(isinstance(last, dict) and (last.get("tool_calls") or last.get("reasoning_content")))


def check_row(
    tokenizer: Any,
    row: dict[str, Any],
    *,
    conversational: bool,
    stop_ids: set[int],
    kwargs: dict[str, Any] | None = None,
) -> RowParity | ParityFailure:
    """Every check on one row: what passed, or the first failure (never raises for a template's fault)."""
    where = f"row {row.get('source_ref', '?')} (template {row.get('template_id') or '-'})"
    if conversational and not getattr(tokenizer, "chat_template", None):
        return ParityFailure(
            "no_chat_template",
            where,
            "the tokenizer has no chat template: set `train.chat_template` to chatml, llama-3, mistral, alpaca or "
            "a .jinja file",
        )
    try:
        if conversational:
            prompt, full = chat.conversation_ids(tokenizer, row, kwargs or {})
        else:
            prompt, full = token_ids(tokenizer, row, conversational)
    except Exception as exc:  # jinja2 TemplateError, the template's own raise_exception, a None it iterates
        if conversational:
            from cardtune.train.parity_turns import failing_turn

            msgs = list(row["prompt"]) + list(row["completion"])
            turn = failing_turn(tokenizer, msgs, chat.render_kwargs(row, kwargs or {}))
            where += f", turn {turn}" if turn else ""
        return _render_failure(tokenizer, exc, kwargs or {}, where)
    failure = _check_assistant_rendered(prompt, full, conversational, where) or _check_prefix(
        tokenizer, row, prompt, full, conversational, kwargs or {}, where
    )
    if failure is not None:
        return failure
    return _check_trained(tokenizer, row, full[len(prompt) :], conversational, stop_ids, where)


def render_failure(tokenizer: Any, exc: Exception, kwargs: dict[str, Any], where: str) -> ParityFailure:
    """A ``render_error``: the template's message, and the template variables the card does not set."""
    return _render_failure(tokenizer, exc, kwargs, where)


def _render_failure(tokenizer: Any, exc: Exception, kwargs: dict[str, Any], where: str) -> ParityFailure:
    unset = sorted(chat.template_variables(str(tokenizer.chat_template or "")) - set(kwargs))
    hint = (
        f"; the template reads variables the card does not set ({', '.join(unset)}): set the ones it needs in "
        "`train.chat_template_kwargs`"
        if unset
        else ""
    )
    return ParityFailure("render_error", where, f"the chat template failed to render: {exc}{hint}")


def _check_assistant_rendered(
    prompt: list[int], full: list[int], conversational: bool, where: str
) -> ParityFailure | None:
    if conversational and len(full) <= len(prompt) and full == prompt[: len(full)]:
        return ParityFailure(
            "drops_assistant",
            where,
            f"rendering the conversation with its assistant turn gives no more tokens than the prompt alone "
            f"({len(full)} vs {len(prompt)}): the chat template drops assistant turns, so nothing would be "
            "trained. Use a template that renders assistant messages.",
        )
    return None


def _check_prefix(
    tokenizer: Any,
    row: dict[str, Any],
    prompt: list[int],
    full: list[int],
    conversational: bool,
    kwargs: dict[str, Any],
    where: str,
) -> ParityFailure | None:
    """The prompt (what inference sees) must be a prefix of the training sequence; say where they part."""
    if full[: len(prompt)] == prompt:
        return None
    k = chat.common_prefix(prompt, full)
    shown = (
        f"\n  prompt (inference) from token {k}: {_show(tokenizer, prompt[max(0, k - 3) : k + 6])}"
        f"\n  training sequence from token {k}:  {_show(tokenizer, full[max(0, k - 3) : k + 6])}"
    )
    if not conversational:
        return ParityFailure(
            "boundary_merge",
            where,
            "the tokenized prompt is not a prefix of the tokenized prompt + completion, so the model would train "
            f"on a context it never sees at inference.{shown}\n  tokens merge across the prompt/completion "
            "boundary: end prompts with a newline or start completions with a space",
        )
    history = chat.chat_ids(tokenizer, row["prompt"], chat.render_kwargs(row, kwargs))
    opens = chat.common_prefix(history, prompt)  # where the generation prompt starts
    if k < opens:
        return ParityFailure(
            "history_changed",
            where,
            "the tokenized prompt is not a prefix of the tokenized prompt + completion: the training render "
            f"changes the turns before the completion, so the model would train on a context it never sees at "
            f"inference.{shown}\n  fix the template so earlier turns render the same whether or not an assistant "
            "turn follows",
        )
    gen, got = _parting_text(tokenizer, prompt, full)
    return ParityFailure(
        "generation_prompt_mismatch",
        where,
        f"the tokenized prompt is not a prefix of the tokenized prompt + completion: the generation prompt opens "
        f"{gen!r}, the training render does not (it has {got!r} there), so the model would train on a context it "
        f"never sees at inference.{shown}\n  fix the template so the generation prompt renders exactly as the start "
        "of the assistant turn (or set the template variable that makes them agree in "
        "`train.chat_template_kwargs`, e.g. `enable_thinking: false`)",
    )


def _expected(tokenizer: Any, row: dict[str, Any], conversational: bool) -> str:
    if conversational and not str(row["completion"][-1].get("content") or "").strip():  # a tool call: its name
        calls = row["completion"][-1].get("tool_calls") or [{}]
        return str((calls[0].get("function") or {}).get("name") or "")
    expected = row["completion"][-1]["content"] if conversational else row["completion"]
    eos = tokenizer.eos_token or ""
    if not conversational and eos and expected.endswith(eos):
        expected = expected[: -len(eos)]
    return str(expected).strip()


def _check_trained(
    tokenizer: Any, row: dict[str, Any], trained: list[int], conversational: bool, stop_ids: set[int], where: str
) -> RowParity | ParityFailure:
    """The trained span: the completion verbatim, fixed template text around it, ending at a stop token."""
    expected = _expected(tokenizer, row, conversational)
    stops = [i for i, t in enumerate(trained) if t in stop_ids]
    if not stops:
        return _missing_stop(tokenizer, trained, expected, stop_ids, where)
    first = stops[0]
    body = tokenizer.decode(trained[:first], skip_special_tokens=False)
    untrained = tokenizer.decode(trained[first + 1 :], skip_special_tokens=False)
    stop = str(tokenizer.convert_ids_to_tokens(trained[first]))
    at = _find(body, expected)
    if at < 0:
        if expected in untrained:
            return ParityFailure(
                "stop_before_completion",
                where,
                f"the stop token {stop!r} comes before the completion, so the model would stop before answering."
                f"\n  trained tokens: {_show(tokenizer, trained)}\n  expected {expected!r} before the first stop",
            )
        return ParityFailure(
            "completion_not_verbatim",
            where,
            "the tokens trained by the loss do not contain the completion verbatim (the template rewrites it)."
            f"\n  trained tokens: {_show(tokenizer, trained)}\n  expected: {expected!r} followed by a stop token",
        )
    before, after = body[:at], body[at + len(expected) :]
    notes = tuple(
        f"{m!r} in the trained template text is {len(tokenizer.encode(m, add_special_tokens=False))} tokens of "
        "this tokenizer (declare it in train.chat_template.end_of_turn if it ends turns)"
        for m in chat.marker_like(after)
        if len(tokenizer.encode(m, add_special_tokens=False)) > 1
    )
    return RowParity(before, after, stop, untrained, notes)


def _missing_stop(tokenizer: Any, trained: list[int], expected: str, stop_ids: set[int], where: str) -> ParityFailure:
    """No stop token among the trained tokens: name the marker the template ends the turn with, if any."""
    text = tokenizer.decode(trained, skip_special_tokens=False)
    at = _find(text, expected)
    rest = text[at + len(expected) :] if at >= 0 and expected else text
    shown = f"\n  trained tokens: {_show(tokenizer, trained)}\n  stop tokens: " + str(
        [tokenizer.convert_ids_to_tokens(i) for i in sorted(stop_ids)]
    )
    marker = chat.end_marker(rest) or next(iter(chat.marker_like(rest)), None)
    if marker is not None:
        pieces = tokenizer.encode(marker, add_special_tokens=False)
        if len(pieces) > 1:
            return ParityFailure(
                "end_of_turn_not_a_token",
                where,
                f"end-of-turn marker {marker!r} is not a single token of this tokenizer (it is {len(pieces)} "
                f"tokens), so the model would never learn to stop: declare it in train.chat_template.end_of_turn "
                f"with add_special_tokens: true ({_DECLARE.replace('MARKER', repr(marker))}), or use a template "
                f"that matches the model.{shown}",
            )
        return ParityFailure(
            "end_of_turn_not_declared",
            where,
            f"the template ends the turn with {marker!r}, a token the model does not stop at, so it would never "
            f"learn to stop: declare it in train.chat_template.end_of_turn "
            f"({_DECLARE.replace('MARKER', repr(marker)).replace(', add_special_tokens: true', '')}).{shown}",
        )
    return ParityFailure(
        "no_end_of_turn",
        where,
        f"the trained tokens do not end with an end-of-turn/EOS token (after the completion the template renders "
        f"{rest!r}), so the model would never learn to stop: use a template that ends assistant turns with an "
        f"end-of-turn or EOS token.{shown}",
    )


def _check_fixed(rows: Sequence[dict[str, Any]], passed: Sequence[RowParity]) -> ParityFailure | None:
    """The template text trained around the completion must be the same on every row (it is format, not data)."""
    if not passed:
        return None
    ref = (passed[0].before.strip(), passed[0].after.strip())
    for row, p in zip(rows, passed, strict=True):
        if (p.before.strip(), p.after.strip()) != ref:
            return ParityFailure(
                "template_text_varies",
                f"row {row.get('source_ref', '?')} (template {row.get('template_id') or '-'})",
                f"the template text trained around the completion differs between rows ({ref!r} on the first "
                f"row, {(p.before.strip(), p.after.strip())!r} here): the trained tokens must be the completion, fixed template "
                "text and the end-of-turn token",
            )
    return None


def _parting_text(tokenizer: Any, prompt: list[int], full: list[int]) -> tuple[str, str]:
    """(what the generation prompt has, what the training render has there), from the start of the marker or
    word where the two texts part."""
    a = tokenizer.decode(prompt, skip_special_tokens=False)
    b = tokenizer.decode(full, skip_special_tokens=False)
    c = chat.common_prefix(a, b)
    for opener, closer in (("<", ">"), ("[", "]")):
        at = a.rfind(opener, max(0, c - 48), c)
        if at >= 0 and closer not in a[at:c]:
            c = at
            break
    return a[c:], b[c : c + max(len(a) - c, 12)]


def _find(text: str, part: str) -> int:
    """Where ``part`` starts in ``text``: the first occurrence on word boundaries, else the first, else -1."""
    starts = []
    i = text.find(part)
    while i >= 0:
        starts.append(i)
        i = text.find(part, i + 1)
    for i in starts:
        left, right = text[i - 1 : i], text[i + len(part) : i + len(part) + 1]
        if not (left.isalnum() and part[:1].isalnum()) and not (right.isalnum() and part[-1:].isalnum()):
            return i
    return starts[0] if starts else -1


def _show(tokenizer: Any, ids: Sequence[int]) -> str:
    toks = tokenizer.convert_ids_to_tokens(list(ids))
    texts = [tokenizer.convert_tokens_to_string([t]) for t in toks]
    return "[" + ", ".join(repr(t) for t in texts) + "]"
