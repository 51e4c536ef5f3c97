"""Per-turn loss of conversation rows on the eval split, for ``cardtune eval``: does the model do worse on later
assistant turns (deeper history, after tool results) than on the first?

A conversation row (:mod:`cardtune.curate.filters.turns`: no template, a list of messages) is rendered once with
the run's chat template (the row's ``tools`` included); every assistant turn's span is the one training masks
(:func:`cardtune.train.chat.turn_spans`: the ``{% generation %}`` block, or the turn after the history rendered
with the generation prompt, up to its end-of-turn token — included when ``train.train_on_eot``). The loss of a span
is the mean negative log-likelihood of its tokens given everything before it. ``turn_losses`` averages them per
assistant-turn index (1 = the first assistant turn), weighted by tokens: ``[{assistant_turn, rows, tokens, loss}]``,
stored in ``eval.json`` as ``turn_loss``. A row whose spans cannot be found (a template whose blocks do not match
its turns) is skipped and counted in ``skipped``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from cardtune.train import chat, models

BATCH = 8


def is_conversation(row: dict[str, Any]) -> bool:
    """Whether an eval row is a conversation row (passed through, messages)."""
    return (
        not row.get("template_id") and isinstance(row.get("prompt"), list) and isinstance(row.get("completion"), list)
    )


def turn_losses(
    loaded: models.Loaded, rows: list[dict[str, Any]], *, train_on_eot: bool = True, batch_size: int = BATCH
) -> dict[str, Any]:
    """``{"turns": [{assistant_turn, rows, tokens, loss}], "rows": n, "skipped": k}`` over the conversation rows."""
    import torch

    tok, model = loaded.tokenizer, loaded.model
    stops = models.stop_token_ids(loaded)
    items: list[tuple[list[int], list[tuple[int, int]]]] = []
    skipped = 0
    for row in rows:
        if not is_conversation(row):
            continue
        msgs = [*row["prompt"], *row["completion"]]
        try:
            full, spans = chat.turn_spans(tok, msgs, chat.render_kwargs(row, {}), stops, train_on_eot)
        except Exception:  # a template the spans cannot be read from (training refused it too)
            skipped += 1
            continue
        items.append((full, spans))
    nll: dict[int, float] = defaultdict(float)
    count: dict[int, int] = defaultdict(int)
    seen: dict[int, int] = defaultdict(int)
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        width = max(len(full) for full, _ in chunk)
        ids = torch.tensor([f + [pad] * (width - len(f)) for f, _ in chunk], device=device)  # right padding
        mask = torch.tensor([[1] * len(f) + [0] * (width - len(f)) for f, _ in chunk], device=device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits
        logp = torch.log_softmax(logits[:, logits.shape[1] - width :].float(), dim=-1)  # prompt tuning prepends
        for b, (full, spans) in enumerate(chunk):
            for k, (lo, hi) in enumerate(spans, start=1):
                if hi <= lo or lo == 0:
                    continue
                target = torch.tensor(full[lo:hi], device=device)
                picked = logp[b, lo - 1 : hi - 1].gather(1, target[:, None])
                nll[k] -= float(picked.sum())
                count[k] += hi - lo
                seen[k] += 1
    turns = [
        {"assistant_turn": k, "rows": seen[k], "tokens": count[k], "loss": round(nll[k] / count[k], 5)}
        for k in sorted(count)
    ]
    return {"turns": turns, "rows": len(items), "skipped": skipped}


def turn_loss_table(result: dict[str, Any]) -> Any:
    """A small rich table of ``eval.json``'s ``turn_loss`` (``None`` when the run has no conversation rows)."""
    from rich.table import Table

    found = result.get("turn_loss")
    if not found or not found["turns"]:
        return None
    table = Table(title=f"loss per assistant turn (eval split, {found['rows']} conversations)", title_justify="left")
    for col in ("assistant turn", "rows", "tokens", "loss"):
        table.add_column(col, justify="right")
    for t in found["turns"]:
        table.add_row(str(t["assistant_turn"]), str(t["rows"]), f"{t['tokens']:,}", f"{t['loss']:.4f}")
    if found["skipped"]:
        table.caption = f"{found['skipped']} row(s) skipped: their turn spans could not be found"
    return table
