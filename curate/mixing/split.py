"""Train/eval/held-out split: held-out tasks whole; per trained task a seeded eval sample by stable key.

The split runs on a light ``(_row, task, source_ref)`` frame (``_row`` indexes the filtered rows) before mixing,
so upsampled copies of a row can never land in both train and eval. Row choice is a stable xxh3 key of
``(seed, task, source_ref)``: another task's rows never move this task's split.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from cardtune.curate.card.schema import Card
from cardtune.curate.mixing.mixture import stable_keys
from cardtune.curate.rows import SOURCE_REF, TASK

ROW = "_row"


def split_eval(light: pl.DataFrame, card: Card) -> tuple[pl.Series, pl.Series, dict[str, pl.DataFrame]]:
    """Held-out tasks whole; per trained task a seeded eval sample; the rest are the train pools.

    ``light`` holds ``_row`` (index into the filtered rows), ``task`` and ``source_ref``. Returns the row
    indices of heldout and eval (in row order) and each trained task's pool (a ``light`` slice).
    """
    held = [t.name for t in card.tasks if t.held_out]
    heldout_idx = light.filter(pl.col(TASK).is_in(held))[ROW]
    eval_parts: list[pl.Series] = []
    pools: dict[str, pl.DataFrame] = {}
    for task in card.tasks:
        if task.held_out:
            continue
        frame = light.filter(pl.col(TASK) == task.name)
        k = eval_count(frame.height, card.split.eval_fraction)
        order = np.argsort(
            stable_keys(card.split.seed, f"eval:{task.name}", frame[SOURCE_REF].to_list()), kind="stable"
        )
        mask = np.zeros(frame.height, dtype=bool)
        mask[order[:k]] = True
        eval_parts.append(frame.filter(pl.Series(mask))[ROW])
        pools[task.name] = frame.filter(pl.Series(~mask))
    eval_idx = pl.concat(eval_parts) if eval_parts else heldout_idx.head(0)
    return heldout_idx, eval_idx, pools


def eval_count(n: int, fraction: float) -> int:
    """Eval rows for a task of ``n`` rows: round(n·fraction), at least 1 when fraction > 0 and n ≥ 2."""
    if fraction <= 0 or n < 2:
        return 0
    return min(max(1, round(n * fraction)), n - 1)
