"""``cardtune eval RUN``: what a run learned — per task and per template, on seen tasks, unseen phrasings and
held-out tasks side by side — and, with ``untrained=True``, the same numbers for the model it started from.

For every row, greedy generation from the prompt exactly as inference sees it (the chat template with the
generation prompt in instruction mode, the plain prompt in finetune mode), scored against the reference by
normalized exact match (SQuAD normalization: lowercase, no punctuation or articles, folded whitespace) and ROUGE-L
F1 (``rouge_score``, works offline). Rows whose template has ``answer_choices`` are also scored as multiple choice
the way lm-evaluation-harness does: the log-likelihood of each choice as the completion, argmax vs the gold
choice (``accuracy``), and the same with log-likelihoods divided by the choice's characters (``accuracy_norm``).

Rows come from the version's ``eval`` split (seen task, seen template), ``eval_unseen_templates`` (seen task,
a template it never trained on: ``held_out_templates`` / ``eval.templates`` in the card) and ``heldout`` (unseen
task). ``cardtune.train.metrics`` turns the scores into per-task, per-template and spread-across-templates
numbers and the three macro averages. For conversation rows of the ``eval`` split, ``turn_loss`` holds the mean
loss per assistant-turn index (:mod:`cardtune.train.turn_loss`). Results go to ``RUN/eval.json``
(``RUN/eval.untrained.json``).
"""

from __future__ import annotations

import json
import re
import string
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from cardtune.curate.errors import UserInputError
from cardtune.train import adapters, data, models, turn_loss
from cardtune.train.metrics import KIND_OF_SPLIT, METRICS, Tally
from cardtune.train.progress import quiet_libraries
from cardtune.train.schema import Train

UNSEEN = "eval_unseen_templates"
SPLITS = {
    "eval": ("eval",),
    "heldout": ("heldout",),
    "unseen_templates": (UNSEEN,),
    "all": ("eval", UNSEEN, "heldout"),
}
__all__ = ["METRICS", "SPLITS", "eval_table", "evaluate", "normalize"]


def normalize(text: str) -> str:
    """SQuAD-style answer normalization."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def evaluate(
    run_dir: str | Path,
    *,
    split: str = "all",
    limit: int | None = None,
    batch_size: int = 16,
    untrained: bool = False,
) -> dict[str, Any]:
    """Score a run on its version's eval-side rows; write and return ``eval.json``.

    ``limit``: at most that many rows per task of ``eval`` and ``heldout``, and per task and template of
    ``eval_unseen_templates``. ``untrained``: score the model the run started from instead (the same seeded
    initialization, or its base), written to ``eval.untrained.json``.
    """
    with quiet_libraries():
        return _evaluate(Path(run_dir), split, limit, batch_size, untrained)


def _evaluate(run_dir: Path, split: str, limit: int | None, batch_size: int, untrained: bool) -> dict[str, Any]:
    import torch

    if split not in SPLITS:
        raise UserInputError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    info = adapters.read_run(run_dir)
    version = data.open_version(info.dataset.dir)
    card = yaml.safe_load((run_dir / "card.yaml").read_text(encoding="utf-8")) or {}
    train = Train.model_validate(card.get("train") or {})
    max_new, train_on_eot = train.max_new_tokens, train.train_on_eot  # the card's values or their defaults
    loaded = adapters.load_start(run_dir) if untrained else adapters.load_run(run_dir)
    conversational = info.mode == "instruction"
    torch.manual_seed(info.seed)

    rows: list[dict[str, Any]] = []
    kinds: list[str] = []
    eval_rows: list[dict[str, Any]] = []
    for name in SPLITS[split]:
        if name not in version.splits:
            if split == "unseen_templates":
                raise UserInputError(
                    f"{version.dir}: no {UNSEEN} split (the card has no held_out_templates or eval.templates)"
                )
            continue
        ds = data.normalized(version.splits[name], info.mode)
        picked = _limit(ds.to_list(), limit, by_template=name == UNSEEN)
        rows.extend(picked)
        kinds.extend([KIND_OF_SPLIT[name]] * len(picked))
        if name == "eval":
            eval_rows = picked
    if not rows:
        raise UserInputError(f"{version.dir}: no rows in split(s) {', '.join(SPLITS[split])} to evaluate")
    scorer = _rouge()
    tally = Tally()
    with torch.inference_mode():
        outputs = _generate(loaded, rows, conversational, max_new, batch_size)
        choices = _rank_choices(loaded, rows, conversational, batch_size)
        per_turn = None
        if conversational and any(turn_loss.is_conversation(r) for r in eval_rows):
            per_turn = turn_loss.turn_losses(loaded, eval_rows, train_on_eot=train_on_eot)
    samples: list[dict[str, str]] = []
    for row, kind, out, pick in zip(rows, kinds, outputs, choices, strict=True):
        ref = _text(row["completion"])
        scores = {
            "exact_match": float(normalize(out) == normalize(ref)),
            "rougeL": float(scorer.score(ref, out)["rougeL"].fmeasure),
        }
        if pick is not None:
            scores["accuracy"], scores["accuracy_norm"] = float(pick[0]), float(pick[1])
        tally.add(kind, row["task"], row.get("template_id") or "", scores)
        if len(samples) < 20:
            samples.append({"task": row["task"], "kind": kind, "reference": ref, "output": out})
    result = {
        "run": info.run_id,
        "model": "untrained" if untrained else "trained",
        "split": split,
        "limit": limit,
        **tally.summary(),
        **({"turn_loss": per_turn} if per_turn is not None else {}),
        "samples": samples,
    }
    name = "eval.untrained.json" if untrained else "eval.json"
    tmp = run_dir / f".{name}.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(run_dir / name)
    return result


def _limit(rows: list[dict[str, Any]], limit: int | None, *, by_template: bool = False) -> list[dict[str, Any]]:
    """At most ``limit`` rows per task (or per task and template), in file order."""
    if limit is None:
        return rows
    seen: dict[tuple[str, str], int] = defaultdict(int)
    out = []
    for row in rows:
        key = (row["task"], (row.get("template_id") or "") if by_template else "")
        if seen[key] < limit:
            seen[key] += 1
            out.append(row)
    return out


def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def _text(payload: Any) -> str:
    return str(payload[-1]["content"] if isinstance(payload, list) else payload).strip()


def _prompt_ids(tokenizer: Any, row: dict[str, Any], conversational: bool) -> list[int]:
    if conversational:  # the history (tool calls and results included) and the row's tools, as training saw them
        from cardtune.train import chat

        return chat.chat_ids(tokenizer, row["prompt"], chat.render_kwargs(row, {}), add_generation_prompt=True)
    return list(tokenizer(row["prompt"])["input_ids"])


def _generate(
    loaded: models.Loaded, rows: list[dict[str, Any]], conversational: bool, max_new: int, batch_size: int
) -> list[str]:
    import torch

    tok, model = loaded.tokenizer, loaded.model
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out: list[str] = []
    for start in range(0, len(rows), batch_size):
        batch = [_prompt_ids(tok, r, conversational) for r in rows[start : start + batch_size]]
        width = max(len(b) for b in batch)
        ids = torch.tensor([[pad] * (width - len(b)) + b for b in batch], device=device)  # left padding
        mask = torch.tensor([[0] * (width - len(b)) + [1] * len(b) for b in batch], device=device)
        gen = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False, pad_token_id=pad
        )
        for seq in gen[:, width:]:
            out.append(tok.decode(seq, skip_special_tokens=True).strip())
    return out


def _choice_ids(
    tok: Any, row: dict[str, Any], choice: str, conversational: bool, stops: set[int]
) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) for one answer choice, formatted like the row's own completion."""
    ref = _text(row["completion"])
    raw = row["completion"][-1]["content"] if conversational else row["completion"]
    lead = raw[: len(raw) - len(raw.lstrip())] if ref else ""
    context = _prompt_ids(tok, row, conversational)
    if conversational:
        full = tok.apply_chat_template([*row["prompt"], {"role": "assistant", "content": lead + choice}])
        cont = list(full["input_ids"])[len(context) :]
        cut = next((i for i, t in enumerate(cont) if t in stops), len(cont))
        return context, cont[:cut]
    full_ids = list(tok(row["prompt"] + lead + choice)["input_ids"])
    return context, full_ids[len(context) :]


def _rank_choices(
    loaded: models.Loaded, rows: list[dict[str, Any]], conversational: bool, batch_size: int
) -> list[tuple[bool, bool] | None]:
    """Per row: (argmax log-likelihood is gold, argmax per-char log-likelihood is gold), or None."""
    import torch

    tok, model = loaded.tokenizer, loaded.model
    stops = models.stop_token_ids(loaded)
    pairs: list[tuple[int, int, list[int], list[int], int]] = []  # row, choice, context, continuation, chars
    golds: dict[int, int] = {}
    for i, row in enumerate(rows):
        choices = row.get("answer_choices")
        ref = _text(row["completion"])
        if not choices or ref not in choices:
            continue
        golds[i] = choices.index(ref)
        for j, choice in enumerate(choices):
            ctx, cont = _choice_ids(tok, row, choice, conversational, stops)
            pairs.append((i, j, ctx, cont, max(1, len(choice))))
    scores: dict[int, list[tuple[float, float]]] = defaultdict(list)
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        seqs = [c + k for _, _, c, k, _ in chunk]
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=device)  # right padding
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        logits = logits[:, logits.shape[1] - width :]  # prompt tuning prepends virtual tokens
        logp = torch.log_softmax(logits.float(), dim=-1)
        for b, (i, _j, ctx, cont, chars) in enumerate(chunk):
            pos = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1, device=device)
            ll = float(logp[b, pos, torch.tensor(cont, device=device)].sum()) if cont else float("-inf")
            scores[i].append((ll, ll / chars))
    out: list[tuple[bool, bool] | None] = []
    for i in range(len(rows)):
        if i not in golds:
            out.append(None)
            continue
        raw = [s[0] for s in scores[i]]
        norm = [s[1] for s in scores[i]]
        out.append((raw.index(max(raw)) == golds[i], norm.index(max(norm)) == golds[i]))
    return out


def eval_table(result: dict[str, Any], untrained: dict[str, Any] | None = None) -> Any:
    """A rich table: per task its seen / unseen-template / held-out rows, the spread across its templates, the
    three macro averages, and (given ``untrained``) the untrained model's main metric beside each."""
    from rich.table import Table

    from cardtune.train.metrics import main_metric

    t = Table(title=f"eval {result['run']} ({result['split']})")
    cols = ["task", "rows", "n", "EM", "ROUGE-L", "acc", "acc norm", "templates min–max (sd)"]
    if untrained is not None:
        cols.append("untrained")
    for col in cols:
        t.add_column(col, justify="left" if col in ("task", "rows") else "right")

    def cells(m: dict[str, Any]) -> list[str]:
        return [f"{m[k]:.3f}" if k in m else "-" for k in METRICS]

    def before(section: str, key: str) -> list[str]:
        if untrained is None:
            return []
        m = untrained.get(section, {}).get(key, {})
        k = main_metric(m)
        return [f"{m[k]:.3f}" if k else "-"]

    for name, m in result["tasks"].items():
        r = result.get("robustness", {}).get(name)
        spread = f"{r['min']:.2f}–{r['max']:.2f} ({r['std']:.2f})" if r else "-"
        kind = "held-out task" if m["held_out"] else "seen"
        t.add_row(name, kind, str(m["n"]), *cells(m), spread, *before("tasks", name))
        if name in result.get("unseen_templates", {}):
            u = result["unseen_templates"][name]
            t.add_row("", "unseen tmpl", str(u["n"]), *cells(u), "", *before("unseen_templates", name))
    labels = {"seen": "seen", "unseen_templates": "unseen tmpl", "held_out": "held-out"}
    for kind, label in labels.items():
        agg = result["aggregate"].get(kind, {})
        if agg.get("tasks"):
            extra = before("aggregate", kind)
            t.add_row(f"[bold]{label} (macro)[/]", "", f"{agg['tasks']} tasks", *cells(agg), "", *extra)
    return t
