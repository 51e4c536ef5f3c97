"""The typed contract of a version's ``manifest.json``: pydantic models, its format version, writing and reading.

Owns the manifest's shape and nothing else. ``pipeline._manifest`` builds a :class:`Manifest`; the store writes
it (:meth:`Manifest.to_json`: sorted keys, indent 2, so equal manifests give equal bytes) and reads it back
(:func:`parse_manifest`); reports, ``inspect``, ``diff``, the dataset card and training read its attributes.
Every model is frozen and refuses unknown keys. A manifest whose ``format`` is not :data:`MANIFEST_FORMAT` is
refused with one line that names the file and says to rebuild — there is no migration of old manifests.

Format 2 (this release) differs from format 1: per-filter drops are an ordered list (pipeline order survives
the sorted keys on disk, so the ``filter_order`` key is gone) and step timings are an ordered list. Two optional
keys were added within format 2 and are written only by versions that use unseen templates (so every other
version's manifest is byte-for-byte what it was): ``counts.splits.eval_unseen_templates`` and
``tasks[].unseen_templates``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from cardtune.curate.card.schema import Mode, Strategy
from cardtune.curate.errors import UserInputError

if TYPE_CHECKING:
    from cardtune.curate.mixing.mixture import TaskPlan

MANIFEST_FORMAT: Final = 2  # bump when the manifest's shape changes; older manifests are refused (rebuild the version)

Sha256 = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
PerTask = dict[str, int]  # task name -> rows (or tokens)


class Record(BaseModel):
    """The base of every manifest (and run record) model: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskEntry(Record):
    """One task of the card as it was built: its name, whether it is held out, the template ids it used."""

    name: str
    held_out: bool
    templates: tuple[str, ...]  # the templates that render its train and eval rows
    # eval-only templates (held_out_templates, eval.templates); the key is absent when there are none
    unseen_templates: tuple[str, ...] = Field((), exclude_if=lambda v: not v)


class FilterDrops(Record):
    """Rows one filter dropped, per task (tasks with no drops are absent)."""

    name: str
    dropped: PerTask

    @property
    def total(self) -> int:
        return sum(self.dropped.values())


class Splits(Record):
    """Rows per task in each written split."""

    train: PerTask
    eval: PerTask
    heldout: PerTask
    # eval rows rendered with unseen templates; the key is absent for versions without any
    eval_unseen_templates: PerTask | None = Field(None, exclude_if=lambda v: v is None)

    def items(self) -> Iterator[tuple[str, PerTask]]:
        """(split name, rows per task) in the store's split order: train, eval, heldout[, eval_unseen_templates]."""
        yield from (("train", self.train), ("eval", self.eval), ("heldout", self.heldout))
        if self.eval_unseen_templates is not None:
            yield "eval_unseen_templates", self.eval_unseen_templates

    def of(self, split: str) -> PerTask:
        """Rows per task of one split by name."""
        return dict(self.items())[split]


class Counts(Record):
    """Rows per task through the pipeline: source → rendered → each filter's drops (in order) → splits."""

    source: PerTask
    rendered: PerTask
    filters: tuple[FilterDrops, ...]  # in the order the pipeline ran them (the filter registry's order)
    splits: Splits

    @model_validator(mode="after")
    def _unique_filters(self) -> Counts:
        names = [f.name for f in self.filters]
        if len(set(names)) != len(names):
            raise ValueError(f"a filter is listed twice: {names}")
        return self

    def filter_names(self) -> list[str]:
        """The filters the build ran, in pipeline order."""
        return [f.name for f in self.filters]

    def drops(self, name: str) -> PerTask:
        """Rows per task that filter ``name`` dropped (empty when it did not run)."""
        return next((f.dropped for f in self.filters if f.name == name), {})


class Tokens(Record):
    """Tokens of prompt + completion per task in train, counted with the mixture's tokenizer (or as words)."""

    unit: str  # the tokenizer reference, or "words"
    train: PerTask


class PlanEntry(Record):
    """One task's line of the mixture plan (:meth:`cardtune.curate.mixing.mixture.TaskPlan.to_json`)."""

    task: str
    available: int
    rate: float
    share: float
    target: int
    repeats: int
    remainder: int
    cap_binds: bool
    upsampled: bool
    avg_tokens: float
    estimated_tokens: int

    @classmethod
    def of(cls, plan: TaskPlan) -> PlanEntry:
        return cls.model_validate(plan.to_json())


class MixturePlan(Record):
    """The mixing strategy and the per-task plan (trained tasks only)."""

    strategy: Strategy
    plan: tuple[PlanEntry, ...]


class Inputs(Record):
    """What the version id hashes (``fingerprint.version_inputs``), so ``diff`` can explain a new id."""

    card: dict[str, Any]  # the card's data sections, validated, defaults filled in
    templates: dict[str, str]  # template id -> sha256 of its bytes
    sources: dict[str, str]  # task -> content hash of its source (or the hub commit)
    other: dict[str, str]  # benchmark:/tokenizer:/version: reference -> content hash
    curation_format: int


class StepTime(Record):
    """Wall seconds of one build step."""

    step: str
    seconds: float


class Manifest(Record):
    """``manifest.json`` of a dataset version: inputs and hashes, counts per stage and task, the mix, timings."""

    format: Literal[2] = MANIFEST_FORMAT
    version_id: str
    name: str
    card_version: str
    mode: Mode
    cardtune: str  # the cardtune version that built it
    created: str  # UTC, ISO 8601 to the second
    card_path: str | None
    inputs: Inputs
    tasks: tuple[TaskEntry, ...]
    counts: Counts
    tokens: Tokens
    mixture: MixturePlan
    filter_reports: dict[str, dict[str, Any]]  # filter name -> its own report (each filter owns the shape)
    timings: tuple[StepTime, ...]  # in the order the steps ran
    files: dict[str, Sha256] = Field(default_factory=dict)  # file name -> sha256; empty until written

    def to_json(self) -> str:
        """Deterministic JSON text: sorted keys, indent 2, a trailing newline."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    def held_out_tasks(self) -> set[str]:
        return {t.name for t in self.tasks if t.held_out}


def timings(steps: Mapping[str, float]) -> tuple[StepTime, ...]:
    """Step timings (in the order they ran) as manifest entries."""
    return tuple(StepTime(step=k, seconds=v) for k, v in steps.items())


M = TypeVar("M", bound=BaseModel)


def load_record(path: Path, model: type[M], what: str, expected: int, rebuild: Callable[[Mapping[str, Any]], str]) -> M:
    """A JSON file validated as ``model``; one-line ``UserInputError`` for corrupt JSON, a format other than
    ``expected`` (``rebuild(data)`` says what to do about it) or a record that does not fit the model."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"{path}:{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(path)
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        raise UserInputError(f"{where}: corrupt {what}: {message}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: corrupt {what}: a JSON object was expected")
    found = data.get("format")
    if found != expected or isinstance(found, bool):
        shown = "(none)" if found is None else json.dumps(found)
        raise UserInputError(
            f"{path}: {what} format {shown} is not supported by this cardtune (expects {expected}); {rebuild(data)}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(f"{path}: invalid {what}: {one_line(exc)}") from None


def one_line(exc: ValidationError) -> str:
    """The first validation error as ``dotted.loc: message`` (and how many more there are)."""
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {first['msg']}{more}" if loc else f"{first['msg']}{more}"


def _rebuild_hint(data: Mapping[str, Any]) -> str:
    card = data.get("card_path")  # an old manifest usually says which card built it
    return f"rebuild the version with cardtune build {card if isinstance(card, str) and card else 'CARD'}"


def parse_manifest(path: Path) -> Manifest:
    """Read and validate ``manifest.json`` at ``path`` (one clear line when it is corrupt or of another format)."""
    return load_record(path, Manifest, "manifest", MANIFEST_FORMAT, _rebuild_hint)
