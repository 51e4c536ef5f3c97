"""Console output while training: a rich progress bar with the loss, and quieting the libraries' own bars.

``RichProgress`` is registered by ``cardtune tune`` on the main process only (the Trainer's tqdm bar and log
printer are off).
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Iterator
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback

from cardtune._console import console


class RichProgress(TrainerCallback):
    """Steps done / total, elapsed and remaining time, and the last logged loss."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: Any = None
        self._loss = "loss -"

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._progress = Progress(
            TextColumn("[bold]training[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, loss=self._loss
        )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step, loss=self._loss)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self._progress is None or not logs or "loss" not in logs:
            return
        lr = logs.get("learning_rate")
        self._loss = f"loss {logs['loss']:.4f}" + (f"  lr {lr:.2e}" if isinstance(lr, float) else "")
        self._progress.update(self._task, loss=self._loss)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step, loss=self._loss)
            self._progress.stop()
            self._progress = None


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence the libraries' own progress bars and known deprecation chatter (restored after)."""
    ds_logging: Any = importlib.import_module("datasets.utils.logging")
    import transformers.utils.logging as tf_logging

    ds_was, tf_was = ds_logging.is_progress_bar_enabled(), tf_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    tf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*is_gradient_checkpointing.*")
            warnings.filterwarnings("ignore", message="Position ids are not supported for parameter efficient")
            yield
    finally:
        if ds_was:
            ds_logging.enable_progress_bar()
        if tf_was:
            tf_logging.enable_progress_bar()
