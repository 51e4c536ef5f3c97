"""The per-turn parity check: on a multi-turn conversation, exactly the assistant spans are trained.

``parity.check_parity`` runs it on its sampled rows when ``train.turns: all``. For each assistant turn of a row
(``check_turns``), with the conversation rendered and tokenized as training does (``cardtune.train.chat``):

1. ``_check_turn_prefix``: the conversation up to the turn, rendered with ``add_generation_prompt=True`` (what the
   model sees when it writes that turn), is a token prefix of the whole conversation's rendering
   (``turn_history_changed`` otherwise, showing where they part);
2. the turn's expected span — from the end of that prefix to its first stop token (included when
   ``train.train_on_eot``) — holds the turn's content verbatim (``completion_not_verbatim``) and ends at a stop
   token (the end-of-turn causes of ``parity``);
3. ``_check_mask``: the trained-token mask training uses (``chat.conversation_features``: the template's
   ``{% generation %}`` blocks, or the per-turn rule above without them) equals the union of the expected spans
   of the turns ``train.roles`` trains, token for token (``mask_mismatch``, naming the turn and showing the
   expected and the actual trained tokens). Tool results, user and system turns are never in it.

A template that raises on a conversation (e.g. on two user turns in a row) is a ``render_error`` naming the first
turn it cannot render.
"""

from __future__ import annotations

from typing import Any

from cardtune.train import chat
from cardtune.train.parity import ParityFailure, _find, _missing_stop, _show, render_failure


def failing_turn(tokenizer: Any, messages: list[Any], kwargs: dict[str, Any]) -> int | None:
    """The first turn (1-based) the template cannot render the conversation up to, if any."""
    for k in range(1, len(messages) + 1):
        try:
            chat.chat_ids(tokenizer, messages[:k], kwargs)
        except Exception:  # the template's own raise_exception, a TemplateError, a None it iterates
            return k
    return None


def check_turns(
    tokenizer: Any, row: dict[str, Any], stop_ids: set[int], kwargs: dict[str, Any], policy: chat.TurnPolicy
) -> int | ParityFailure:
    """Every per-turn check on one row: the number of assistant turns checked, or the first failure."""
    where = f"row {row.get('source_ref', '?')} (template {row.get('template_id') or '-'})"
    msgs = list(row["prompt"]) + list(row["completion"])
    kw = chat.render_kwargs(row, kwargs)
    try:
        full = chat.chat_ids(tokenizer, msgs, kw)
        prefixes = {
            i: chat.chat_ids(tokenizer, msgs[:i], kw, add_generation_prompt=True) for i in chat.assistant_turns(msgs)
        }
    except Exception as exc:
        turn = failing_turn(tokenizer, msgs, kw)
        return render_failure(tokenizer, exc, kwargs, where + (f", turn {turn}" if turn else ""))
    expected = [0] * len(full)
    spans: dict[int, tuple[int, int]] = {}
    for i, prefix in prefixes.items():
        at = f"{where}, turn {i + 1} (assistant)"
        failure = _check_turn_prefix(tokenizer, prefix, full, at)
        if failure is not None:
            return failure
        start = len(prefix)
        stop = next((j for j in range(start, len(full)) if full[j] in stop_ids), None)
        text = _turn_text(msgs[i])
        if stop is None:
            return _missing_stop(tokenizer, full[start:], text, stop_ids, at)
        body = tokenizer.decode(full[start:stop], skip_special_tokens=False)
        if text and _find(body, text) < 0:
            return ParityFailure(
                "completion_not_verbatim",
                at,
                "the tokens of this assistant turn do not contain its content verbatim (the template rewrites it)."
                f"\n  turn tokens: {_show(tokenizer, full[start : stop + 1])}\n  expected: {text!r}",
            )
        end = stop + 1 if policy.train_on_eot else stop
        spans[i] = (start, end)
        if policy.trains(msgs[i]) and (policy.turns == "all" or i == len(msgs) - 1):
            expected[start:end] = [1] * (end - start)
    try:
        ids, mask = chat.conversation_features(tokenizer, row, kwargs, stop_ids, policy)
    except chat.MaskError as exc:
        return ParityFailure("generation_blocks_mismatch", where, f"{exc}: {CAUSE_HINT}")
    failure = _check_mask(tokenizer, msgs, ids, full, mask, expected, spans, where)
    return failure if failure is not None else len(prefixes)


CAUSE_HINT = (
    "put one {% generation %}…{% endgeneration %} block around each assistant message's output (content, tool "
    "calls, end-of-turn) in the template, or remove the markers"
)


def _turn_text(message: dict[str, Any]) -> str:
    """What the turn's trained tokens must hold: its content, else the name of the tool it calls."""
    content = str(message.get("content") or "").strip()
    if content:
        return content
    calls = message.get("tool_calls") or []
    return str(((calls[0] or {}).get("function") or {}).get("name") or "") if calls else ""


def _check_turn_prefix(tokenizer: Any, prefix: list[int], full: list[int], where: str) -> ParityFailure | None:
    if full[: len(prefix)] == prefix:
        return None
    k = chat.common_prefix(prefix, full)
    return ParityFailure(
        "turn_history_changed",
        where,
        "rendering the conversation up to this assistant turn with add_generation_prompt=True is not a token prefix "
        "of the whole conversation's rendering, so the model would train this turn on a context it never sees at "
        f"inference.\n  up to the turn, from token {k}: {_show(tokenizer, prefix[max(0, k - 3) : k + 6])}"
        f"\n  whole conversation, from token {k}: {_show(tokenizer, full[max(0, k - 3) : k + 6])}"
        "\n  fix the template so earlier turns render the same whether or not later turns follow (or set "
        "train.turns: last)",
    )


def _check_mask(
    tokenizer: Any,
    msgs: list[Any],
    ids: list[int],
    full: list[int],
    mask: list[int],
    expected: list[int],
    spans: dict[int, tuple[int, int]],
    where: str,
) -> ParityFailure | None:
    if ids == full and mask == expected:
        return None
    if ids != full:
        return ParityFailure(
            "mask_mismatch",
            where,
            "the training render's tokens differ from the conversation's rendering (the template's {% generation %} "
            f"variant renders other text)\n  training: {_show(tokenizer, ids[:24])}\n  rendering: "
            f"{_show(tokenizer, full[:24])}",
        )
    first = next(j for j, (a, b) in enumerate(zip(mask, expected, strict=True)) if a != b)
    turn = next((i for i, (a, b) in sorted(spans.items()) if first < b), max(spans, default=len(msgs) - 1))
    lo = max([b for a, b in spans.values() if b <= spans.get(turn, (first, first))[0]] + [0])
    hi = max([b for a, b in spans.values() if a <= first] + [first + 1])
    got = [t for j, t in enumerate(full[lo:hi], start=lo) if mask[j]]
    want = [t for j, t in enumerate(full[lo:hi], start=lo) if expected[j]]
    return ParityFailure(
        "mask_mismatch",
        f"{where}, turn {turn + 1} ({msgs[turn]['role'] if turn < len(msgs) else '?'})",
        "the trained tokens are not exactly the assistant span of this turn (content and end-of-turn as "
        f"configured).\n  expected trained: {_show(tokenizer, want)}\n  actually trained: {_show(tokenizer, got)}"
        f"\n  {CAUSE_HINT}",
    )
