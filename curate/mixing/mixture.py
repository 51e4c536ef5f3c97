"""Mixing: seqio-style rates → integer per-task targets → seeded, stable sampling.

Rates use seqio's vocabulary so FLAN recipes port 1:1 (DESIGN §5). ``examples_proportional`` and
``temperature`` are seqio's ``mixing_rate_num_examples`` exactly — rate = n·scale, then ``min(·, cap)``, then
``^(1/T)`` — times the task's weight (DESIGN §13):

* ``fixed``: rate = weight
* ``examples_proportional``: rate = min(n·scale, cap) · weight
* ``temperature``: rate = min(n·scale, cap)^(1/T) · weight
* ``count``: the weight is the absolute number of examples

Rates become integer targets summing to ``total`` by largest-remainder rounding. A task smaller than its
target is upsampled by whole repeats plus a seeded remainder. Which rows a task contributes depends only on
(seed, task, source_ref): changing another task's weight never changes them, and raising a task's own target
keeps the rows it had (rows are taken in a fixed hash order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import xxhash

from cardtune.curate.card.schema import Mixture, Task
from cardtune.curate.errors import UserInputError
from cardtune.curate.rows import SOURCE_REF, TASK


@dataclass(frozen=True)
class TaskPlan:
    """One task's line of the mixture plan."""

    task: str
    available: int  # rows after filtering (the train pool)
    rate: float
    share: float  # requested share of the mixture (rate / sum of rates)
    target: int  # examples to take
    repeats: int  # whole repeats of the pool (0 when target < available)
    remainder: int  # extra rows beyond the whole repeats
    cap_binds: bool  # the cap limited this task's rate
    upsampled: bool
    avg_tokens: float  # mean tokens per row in the pool

    @property
    def estimated_tokens(self) -> int:
        return round(self.target * self.avg_tokens)

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "estimated_tokens": self.estimated_tokens}


def task_rate(n: int, weight: float, spec: Mixture) -> tuple[float, bool]:
    """The seqio rate of a task with ``n`` examples (times its weight), and whether the cap binds.

    As seqio's ``mixing_rate_num_examples(maximum=cap, scale=scale, temperature=T)``: ``n·scale``, capped, then
    raised to ``1/T`` (``examples_proportional`` is the same with T = 1).
    """
    if spec.strategy in ("fixed", "count"):
        return float(weight), False
    raw = n * spec.scale
    capped = min(raw, spec.cap) if spec.cap is not None else raw
    rate = capped ** (1.0 / spec.temperature) if spec.strategy == "temperature" else capped
    return rate * weight, capped < raw


def largest_remainder(values: Sequence[float], total: int) -> list[int]:
    """Integers proportional to ``values`` that sum exactly to ``total`` (Hamilton's method, ties by index)."""
    weight_sum = float(sum(values))
    if total < 0:
        raise ValueError("total must be >= 0")
    if weight_sum <= 0:
        raise ValueError("rates must not all be zero")
    quotas = [v / weight_sum * total for v in values]
    floors = [math.floor(q) for q in quotas]
    left = total - sum(floors)
    order = sorted(range(len(values)), key=lambda i: (-(quotas[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


MAX_REPEAT = 1_000  # a target beyond this many copies of a task's rows is a mistake (e.g. total: 1e12), not a plan


def plan_mixture(
    tasks: Sequence[Task], available: Mapping[str, int], avg_tokens: Mapping[str, float], spec: Mixture
) -> list[TaskPlan]:
    """Per-task targets for the trained (not held-out) tasks, from their filtered pool sizes."""
    trained = [t for t in tasks if not t.held_out]
    rates: list[float] = []
    binds: list[bool] = []
    for task in trained:
        rate, bind = task_rate(available[task.name], task.weight, spec)
        rates.append(rate)
        binds.append(bind)
    if spec.strategy == "count":
        targets = [int(t.weight) for t in trained]
    else:
        if sum(rates) <= 0:
            raise UserInputError("mixture: every trained task is empty after filtering; nothing to mix")
        if spec.total_tokens is not None:
            per_rate = sum(r * avg_tokens[t.name] for r, t in zip(rates, trained, strict=True)) / sum(rates)
            total = max(1, round(spec.total_tokens / max(per_rate, 1e-9)))
        elif spec.total is not None:
            total = spec.total
        else:
            total = sum(
                min(available[t.name], spec.cap) if spec.cap is not None else available[t.name] for t in trained
            )
        targets = largest_remainder(rates, total)
    rate_sum = sum(rates) or 1.0
    plans = []
    for task, rate, bind, target in zip(trained, rates, binds, targets, strict=True):
        n = available[task.name]
        if target > 0 and n == 0:
            raise UserInputError(
                f"mixture: task {task.name!r} has no rows left after filtering but a target of {target}"
            )
        repeats, remainder = divmod(target, n) if n else (0, 0)
        upsampled = target > n
        if n and target > MAX_REPEAT * n:
            raise UserInputError(
                f"mixture: task {task.name!r} would need {target:,} examples from {n:,} rows — a repeat factor of "
                f"{target / n:,.0f}x (at most {MAX_REPEAT:,}x is allowed); lower `mixture.total` or the weights"
            )
        if upsampled and not spec.upsample:
            raise UserInputError(
                f"mixture: task {task.name!r} needs {target} examples but has {n} after filtering, and "
                "`mixture.upsample` is false (lower its weight/total or allow upsampling)"
            )
        plans.append(
            TaskPlan(
                task=task.name,
                available=n,
                rate=rate,
                share=rate / rate_sum if spec.strategy != "count" else target / max(sum(targets), 1),
                target=target,
                repeats=repeats if upsampled else 0,
                remainder=remainder if upsampled else target,
                cap_binds=bind,
                upsampled=upsampled,
                avg_tokens=float(avg_tokens.get(task.name, 0.0)),
            )
        )
    return plans


def stable_keys(seed: int, salt: str, refs: Sequence[str]) -> np.ndarray:
    """A uint64 key per ``source_ref`` from (seed, salt, ref) — stable across runs, machines and versions."""
    prefix = f"{seed}\x1f{salt}\x1f".encode()
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(prefix + r.encode()) for r in refs), dtype=np.uint64, count=len(refs))


REPEAT = "_repeat"  # which copy of an upsampled row (0 for the first); used only for the shuffle key


def sample_task(pool: pl.DataFrame, plan: TaskPlan, seed: int) -> pl.DataFrame:
    """Take ``plan.target`` rows from one task's pool: whole repeats plus a stable hash-ordered remainder.

    The result carries a ``_repeat`` column (the copy number) that ``apply_mixture`` uses and drops.
    """
    if plan.target == 0:
        return pool.head(0).with_columns(pl.lit(0, dtype=pl.Int32).alias(REPEAT))
    keys = stable_keys(seed, f"mix:{plan.task}", pool.get_column(SOURCE_REF).to_list())
    ordered = pool[np.argsort(keys, kind="stable")]
    repeats, remainder = divmod(plan.target, pool.height)
    parts = [ordered.with_columns(pl.lit(r, dtype=pl.Int32).alias(REPEAT)) for r in range(repeats)]
    parts.append(ordered.head(remainder).with_columns(pl.lit(repeats, dtype=pl.Int32).alias(REPEAT)))
    return pl.concat(parts) if len(parts) > 1 else parts[0]


def apply_mixture(pools: Mapping[str, pl.DataFrame], plans: Sequence[TaskPlan], seed: int) -> pl.DataFrame:
    """Sample every task per its plan and interleave them in a stable shuffled order."""
    sampled = [sample_task(pools[p.task], p, seed) for p in plans if p.target > 0]
    if not sampled:
        raise UserInputError("mixture: the plan selects no training examples")
    mixed = pl.concat(sampled, how="vertical")
    tags = mixed.select(
        (pl.col(TASK) + "\x1f" + pl.col(SOURCE_REF) + "\x1f" + pl.col(REPEAT).cast(pl.String)).alias("k")
    ).get_column("k")
    order = np.argsort(stable_keys(seed, "shuffle", tags.to_list()), kind="stable")
    return mixed.drop(REPEAT)[order]
