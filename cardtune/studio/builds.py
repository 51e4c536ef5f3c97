"""Builds started from the studio: one at a time, in a background thread, with live progress per step.

A build is ``cardtune.curate.pipeline.build(card, observer=...)``, exactly what ``cardtune build`` runs; the observer
(``cardtune.curate.progress.Steps``) records each step's progress, which the build page polls. A failed build keeps
its error lines (``UserInputError``: the card's own ``file:line`` messages; anything else: one line).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cardtune.curate.card.schema import Card
from cardtune.curate.errors import UserInputError


@dataclass
class StepState:
    """One pipeline step as the page shows it."""

    name: str
    completed: int = 0
    total: int = 1
    seconds: float | None = None

    @property
    def fraction(self) -> float:
        return 1.0 if self.seconds is not None else min(self.completed / max(self.total, 1), 1.0)


@dataclass
class Job:
    """A build: its steps, and when it is over, the version it made (or found) or the error lines."""

    card: Path
    force: bool
    started: float = field(default_factory=time.time)
    steps: list[StepState] = field(default_factory=list)
    state: str = "running"  # running | done | failed
    version_id: str | None = None
    name: str | None = None
    cached: bool = False
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def observe(self, step: str, completed: int, total: int, seconds: float | None) -> None:
        current = next((s for s in self.steps if s.name == step), None)
        if current is None:
            current = StepState(step)
            self.steps.append(current)
        current.completed, current.total, current.seconds = completed, total, seconds


class Builds:
    """The studio's builds: at most one running; the last one is kept for its page."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: Job | None = None

    def start(self, card: Path, force: bool = False) -> Job:
        """Start building ``card``; raises ``UserInputError`` while another build runs."""
        from cardtune.curate.card.load import load_card

        with self._lock:
            if self.current is not None and self.current.state == "running":
                raise UserInputError("a build is already running; wait for it to finish")
            job = Job(card, force)
            self.current = job
        try:
            loaded = load_card(card)
        except UserInputError as exc:
            job.state, job.errors = "failed", [str(i) for i in exc.issues]
            return job
        threading.Thread(target=self._run, args=(job, loaded), name="cardtune-studio-build", daemon=True).start()
        return job

    @staticmethod
    def _run(job: Job, card: Card) -> None:
        from cardtune.curate.pipeline import build

        start = time.perf_counter()
        try:
            result = build(card, force=job.force, observer=job.observe)
        except UserInputError as exc:
            job.errors = [str(i) for i in exc.issues]
            job.state = "failed"
        except Exception as exc:  # still one line on the page; the studio keeps serving
            job.errors = [f"build failed: {type(exc).__name__}: {exc}"]
            job.state = "failed"
        else:
            job.version_id, job.name, job.cached = result.version_id, result.manifest.name, result.cached
            job.state = "done"
        job.elapsed = time.perf_counter() - start
