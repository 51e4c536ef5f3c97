"""Progress display for long steps: a rich progress bar per step, or nothing when quiet.

Library code calls ``steps.step(name, total)`` and advances it; the CLI decides whether a bar is shown.
Each step's wall time is recorded for the manifest. An optional ``observer`` hears every start, advance and end
(``cardtune studio`` shows a build's live progress with it); it never changes what is built.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

StepObserver = Callable[[str, int, int, float | None], None]
"""``observer(step, completed, total, seconds)``: ``seconds`` is ``None`` until the step has finished."""


class Steps:
    """Named, timed steps with optional rich progress bars."""

    def __init__(
        self, show: bool = False, console: Console | None = None, observer: StepObserver | None = None
    ) -> None:
        self.timings: dict[str, float] = {}
        self._observer = observer
        self._progress: Progress | None = None
        if show:
            self._progress = Progress(
                TextColumn("[bold]{task.description:<22}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console or Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> Steps:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    @contextmanager
    def step(self, name: str, total: int = 1) -> Iterator[Callable[[int], None]]:
        """Time a step; yields ``advance(n)`` for its bar."""
        start = time.perf_counter()
        task_id = self._progress.add_task(name, total=max(total, 1)) if self._progress is not None else None
        done = 0
        if self._observer is not None:
            self._observer(name, 0, max(total, 1), None)

        def advance(n: int = 1) -> None:
            nonlocal done
            done += n
            if self._progress is not None and task_id is not None:
                self._progress.advance(task_id, n)
            if self._observer is not None:
                self._observer(name, min(done, max(total, 1)), max(total, 1), None)

        try:
            yield advance
        finally:
            if self._progress is not None and task_id is not None:
                self._progress.update(task_id, completed=max(total, 1))
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 4)
            if self._observer is not None:
                self._observer(name, max(total, 1), max(total, 1), self.timings[name])
