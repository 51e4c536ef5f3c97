"""The per-task training signal: training loss per task during training, tokens per task, eval loss per task.

No trainer subclass (DESIGN.md §8) and nothing but token ids reach the model. The rows keep their ``task``
column when they go into ``SFTTrainer``: TRL's preparation maps over the rows and keeps every column, so the
prepared ``trainer.train_dataset`` holds ``input_ids``/``labels`` *and* ``task`` in the same order, and the
Trainer's ``remove_unused_columns`` drops ``task`` (like ``prompt``/``completion``) before the collator.

* :class:`PerTaskLoss` (a ``TrainerCallback``): at logging steps (spaced so the probe costs at most 2% of the
  training compute), the completion loss of the current model
  on a fixed, seeded probe of up to ``probe`` prepared training rows per task — a per-task loss curve. The
  Trainer's own loss is a mean over mixed batches and cannot be split by task without per-example losses,
  which only a Trainer subclass (or a custom collator carrying ids into ``compute_loss``) could see.
* :func:`final_signal`: after training, per task — rows, tokens (each task's share of the prepared rows' tokens
  times the tokens TRL counted), the final probe loss, and eval loss per task on the version's ``eval``,
  ``eval_unseen_templates`` and ``heldout`` rows (``trainer.evaluate`` on per-task subsets prepared like the
  training rows, TRL's loss). It goes to ``run.json`` as ``per_task``.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

from cardtune.train.record import TaskSignal

TASK = "task"
EVAL_SPLITS = {"eval": "eval_loss", "eval_unseen_templates": "unseen_templates_loss", "heldout": "heldout_loss"}


def _by_task(tasks: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(tasks):
        out[t].append(i)
    return dict(sorted(out.items()))


def probe_indices(tasks: list[str], size: int, seed: int) -> dict[str, list[int]]:
    """Up to ``size`` row indices per task, a seeded sample (sorted)."""
    rng = random.Random(seed)
    return {t: sorted(rng.sample(idx, min(size, len(idx)))) for t, idx in _by_task(tasks).items()}


def mean_loss(model: Any, collator: Any, rows: list[dict[str, Any]], batch_size: int = 16) -> float | None:
    """Token-weighted mean completion loss of ``model`` on prepared rows (``input_ids``/``labels``)."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                chunk = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows[start : start + batch_size]]
                batch = collator(chunk)
                inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "labels") if k in batch}
                n = int((inputs["labels"][:, 1:] != -100).sum())
                if n == 0:
                    continue
                total += float(model(**inputs).loss) * n
                count += n
    finally:
        if was_training:
            model.train()
    return round(total / count, 5) if count else None


BUDGET = 0.02  # the probe may cost at most this share of the training compute


def probe_interval(probe_rows: int, rows_per_step: int, logging_steps: int, budget: float = BUDGET) -> int:
    """Steps between probes: a probe is a forward pass over ``probe_rows`` rows, about a third of the cost of a
    training step over as many rows, so it runs every ``probe_rows / (3 · rows_per_step · budget)`` steps — never
    more often than the Trainer logs. (Probing at every log made ``logging_steps: 1`` runs ~40% slower.)"""
    cost = probe_rows / (3 * max(1, rows_per_step))  # in training steps
    return max(1, logging_steps, math.ceil(cost / budget))


class PerTaskLoss(TrainerCallback):
    """A ``TrainerCallback``: the per-task probe loss at logging steps, within ``BUDGET`` of the training compute
    (kept in :attr:`curve`)."""

    def __init__(self, probe: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.probe, self.seed = probe, seed
        self.trainer: Any = None
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.curve: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.every, self._next = 1, 0

    def attach(self, trainer: Any) -> bool:
        """Read the probe rows from the prepared train dataset; False when the rows lost their task column."""
        ds = trainer.train_dataset
        if ds is None or TASK not in getattr(ds, "column_names", ()) or "labels" not in ds.column_names:
            return False
        self.trainer = trainer
        picked = probe_indices(ds[TASK], self.probe, self.seed)
        self.rows = {t: ds.select(idx).select_columns(["input_ids", "labels"]).to_list() for t, idx in picked.items()}
        args = trainer.args
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        logging = int(args.logging_steps) if args.logging_steps >= 1 else 1  # a fraction of the run: every log
        self.every = probe_interval(sum(len(r) for r in self.rows.values()), per_step, logging)
        return True

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if self.trainer is None or not logs or "loss" not in logs or not state.is_world_process_zero:
            return
        if state.global_step < self._next:
            return
        self._next = int(state.global_step) + self.every
        for task, rows in self.rows.items():
            value = self.loss(rows)
            if value is not None:
                self.curve[task].append((int(state.global_step), value))

    def loss(self, rows: list[dict[str, Any]]) -> float | None:
        return mean_loss(self.trainer.model, self.trainer.data_collator, rows)


def final_signal(
    trainer: Any,
    callback: PerTaskLoss | None,
    version_splits: Any,
    tokens_trained: int | None,
    prepare: Callable[[Any], Any],
    sample: int = 32,
) -> dict[str, TaskSignal]:
    """Per task: rows, tokens, final probe loss, the loss curve, and eval loss on each eval-side split
    (its rows through ``prepare``, the run's own row preparation without the task label, so the loss is on the
    trained spans)."""
    ds = trainer.train_dataset
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    if ds is not None and TASK in ds.column_names:
        tasks = ds[TASK]
        lengths = [len(ids) for ids in ds["input_ids"]]
        total = sum(lengths) or 1
        for task, idx in _by_task(tasks).items():
            share = sum(lengths[i] for i in idx) / total
            out[task]["rows"] = len(idx)
            out[task]["tokens"] = round(share * tokens_trained) if tokens_trained is not None else None
        if callback is not None and callback.trainer is not None:
            for task, idx in probe_indices(tasks, sample, callback.seed).items():
                rows = ds.select(idx).select_columns(["input_ids", "labels"]).to_list()
                out[task]["train_loss"] = callback.loss(rows)
                out[task]["train_loss_curve"] = callback.curve.get(task, [])
    subsets: dict[str, Any] = {}
    for split, key in EVAL_SPLITS.items():
        if split not in version_splits or len(version_splits[split]) == 0:
            continue
        rows = version_splits[split]
        for task, idx in _by_task(rows[TASK]).items():
            subsets[f"{key}/{task}"] = prepare(rows.select(idx[:sample]))
    if subsets:
        metrics = trainer.evaluate(eval_dataset=subsets)
        for name in subsets:
            key, task = name.split("/", 1)
            value = metrics.get(f"eval_{name}_loss")
            if value is not None:
                out[task][key] = round(float(value), 5)
    return {task: TaskSignal.model_validate(values) for task, values in sorted(out.items())}
