"""The typed contract of a run's ``run.json``: the :class:`RunRecord` model, its format version, writing, reading.

Owns the run record's shape only (torch-free: pydantic and the manifest's models). ``train.run`` builds a
``RunRecord`` at the end of a run and writes it (:meth:`RunRecord.to_json`, sorted keys); ``train.adapters.read_run``
reads it back (:func:`parse_run`) for ``eval``, ``compare``, task adapters and ``adapters merge``. A ``run.json`` of
another format is refused with one line that names the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field

from cardtune.curate.card.schema import Mode
from cardtune.curate.store.manifest import Record, TaskEntry, load_record

RUN_FORMAT: Final = 1  # the keys run.json has had since format 1; bump when the shape changes
Method = Literal["full", "lora", "prompt_tuning"]


class DatasetRef(Record):
    """The dataset version a run trained on."""

    version_id: str
    dir: str  # absolute path of the version directory


class Device(Record):
    """Where it trained."""

    type: str  # torch device type: cpu, cuda, mps
    name: str
    processes: int


class Params(Record):
    """Parameters of the trained model (under PEFT: the adapter's are the trainable ones)."""

    trainable: int
    total: int


class Parity(Record):
    """The chat-template parity check: rows checked and the stop tokens accepted as end of the completion."""

    rows_checked: int
    stop_tokens: tuple[str, ...]


class Timings(Record):
    """Wall seconds of each phase of ``tune``."""

    load_s: float
    checks_s: float
    setup_s: float
    train_s: float
    signal_s: float = 0.0  # the per-task losses after training (added within format 1)
    save_s: float
    total_s: float


class TaskSignal(Record):
    """One task's training signal (``cardtune.train.pertask``); a value is null where it could not be measured."""

    rows: int | None = None  # prepared training rows of the task
    tokens: int | None = None  # its share of the tokens trained (TRL's num_tokens), by its share of row tokens
    train_loss: float | None = None  # completion loss on a seeded sample of its training rows, after training
    train_loss_curve: tuple[tuple[int, float], ...] = ()  # (step, loss) on a fixed probe, at every logging step
    eval_loss: float | None = None  # on its eval rows (seen templates)
    unseen_templates_loss: float | None = None  # on its eval rows with unseen templates
    heldout_loss: float | None = None  # a held-out task's rows


class RunRecord(Record):
    """``run.json``: what was trained on what, with which libraries and settings, and what came out."""

    format: Literal[1] = RUN_FORMAT
    run_id: str  # the run directory's name
    card: str
    card_path: str | None
    mode: Mode
    method: Method
    model: str  # the model as the card names it (or the base run)
    model_source: str  # something loadable from anywhere (an absolute path for local models)
    stop_token_ids: tuple[int, ...]
    base_model: str | None  # "base_model": the embedded default base saved beside an adapter
    base_run: str | None  # train.base: the run this one was tuned on top of
    chat_template: str | dict[str, Any] | None  # `train.chat_template` as the card wrote it
    dataset: DatasetRef
    tasks: tuple[TaskEntry, ...]  # the version's tasks (from its manifest)
    seed: int
    device: Device
    versions: dict[str, str]  # python and library versions
    sft: dict[str, str | int | float | bool | None]  # resolved SFTConfig scalars
    params: Params
    tokens_trained: int | None
    length_check: dict[str, Any]  # train.lengths.LengthReport
    parity: Parity
    metrics: dict[str, float]  # trainer.train() metrics (train_loss, train_runtime, ...)
    global_step: int
    resumed_from: str | None  # the checkpoint a --resume continued from
    finished: str  # UTC, ISO 8601 to the second
    timings: Timings
    # added within format 1 (older run.json files have no key): per task rows, tokens, train and eval loss
    per_task: dict[str, TaskSignal] = Field(default_factory=dict)
    # added within format 1: `train.chat_template_kwargs` (also written into the saved template as defaults)
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> str:
        """Deterministic JSON text: sorted keys, indent 2, a trailing newline."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def _rebuild(_: Mapping[str, Any]) -> str:
    return "it was written by another cardtune; train it again with cardtune tune CARD"


def parse_run(path: Path) -> RunRecord:
    """Read and validate ``run.json`` at ``path`` (one clear line when it is corrupt or of another format)."""
    return load_record(path, RunRecord, "run.json", RUN_FORMAT, _rebuild)
