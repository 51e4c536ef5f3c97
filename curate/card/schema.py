"""The data card's schema: the ``Card`` model and the sections the card module owns (tasks, mixture, split, output).

A card is the only configuration. Every model is frozen and forbids unknown keys; every field has a default
documented in its description (the field reference in ``data_cards/README.md`` is generated from these).
Sections owned elsewhere are composed here: ``source:`` (``cardtune.curate.sources.spec``), ``filters:`` (built
from the filter registry, ``cardtune.curate.filters``) and ``train:`` (``cardtune.train.schema``, torch-free).
Loading and cross-field checks live in ``cardtune.curate.card.load``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from cardtune.curate.card.section import Section
from cardtune.curate.card.yamlsrc import LocatedYaml
from cardtune.curate.errors import Issue
from cardtune.curate.filters import filters_model
from cardtune.curate.sources.spec import Source
from cardtune.curate.templating.conversation import Conversation
from cardtune.train.schema import Train

if TYPE_CHECKING:
    Filters = Section
else:
    Filters = filters_model(module=__name__)
    # the group sections (e.g. `Dedup`) are bound here too, so a Card pickles (build workers receive it)
    for _group in Filters.model_fields.values():
        _model = _group.annotation
        if isinstance(_model, type) and _model.__module__ == __name__:
            globals()[_model.__name__] = _model

# A dataset name is a directory name under output.dir: one safe path component ("..", ".x" are refused).
SAFE_NAME = r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$"
Mode = Literal["instruction", "finetune"]
Strategy = Literal["fixed", "examples_proportional", "temperature", "count"]


class FewShot(Section):
    """Few-shot variants: a share of rows get k exemplars from the same task, never the row itself."""

    k: int = Field(3, ge=1, le=32, description="Exemplars per few-shot prompt. Default: 3.")
    fraction: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of rows rendered few-shot (the rest zero-shot). Default: 0.5."
    )


class Task(Section):
    """One task: a source, the templates that render it, and its share of the mixture."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$", description="Unique task name (required).")
    source: Source = Field(..., description="Where the raw rows come from (required).")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Renames, template input <- source column, e.g. `{premise: sentence1}`. Default: none.",
    )
    templates: list[str] = Field(
        default_factory=list,
        description="Template ids or globs (`nli/*`) from the library or `templates_dir`, or a promptsource "
        "`templates.yaml` path. Default: none, which passes `messages`/`conversations` or `prompt`/`completion` "
        "columns through unchanged.",
    )
    weight: float = Field(
        1.0, gt=0, description="Mixing weight; its meaning depends on `mixture.strategy`. Must be > 0. Default: 1.0."
    )
    held_out: bool = Field(
        False, description="Exclude from training and keep whole for zero-shot evaluation. Default: false."
    )
    few_shot: FewShot | None = Field(None, description="Render some rows with exemplars. Default: zero-shot only.")
    held_out_templates: list[str] = Field(
        default_factory=list,
        description="Template ids or globs, among the task's `templates`, that never render training rows: the "
        "task's eval rows are also rendered with each of them into the `eval_unseen_templates` split "
        "(seen task, unseen phrasing). Default: none.",
    )
    conversation: Conversation | None = Field(
        None,
        description="A task without templates whose source holds conversations in another layout: the format "
        "(openai, sharegpt, alpaca) and field mapping (LLaMA-Factory's columns/tags, axolotl's chat_template "
        "fields). Tool calls, tool results, reasoning and a `tools` column are read either way. Default: "
        "`messages` (OpenAI) or `conversations` (ShareGPT) as they are.",
    )


class Mixture(Section):
    """How tasks are mixed, in seqio's vocabulary (FLAN recipes port 1:1)."""

    strategy: Strategy = Field(
        "examples_proportional",
        description="`fixed` (rate = weight), `examples_proportional` (rate = min(n*scale, cap)*weight), "
        "`temperature` (rate = min(n*scale, cap)^(1/T)*weight), `count` (weight = absolute examples); n is the "
        "task's size after filtering, as seqio's `mixing_rate_num_examples`. Default: `examples_proportional`.",
    )
    cap: int | None = Field(
        None,
        ge=1,
        description="Cap on n*scale in the rate of `examples_proportional` and `temperature` (seqio `maximum`); "
        "the default `total` sums the capped task sizes. Unused by `count`. Default: no cap.",
    )
    scale: float = Field(
        1.0,
        gt=0,
        description="Multiplier on task sizes, applied before `cap` (and before the temperature), for "
        "`examples_proportional` and `temperature` (seqio `scale`). Default: 1.0.",
    )
    temperature: float = Field(
        1.0, gt=0, description="T for `temperature` mixing: rate = min(n*scale, cap)^(1/T). Default: 1.0."
    )
    total: int | None = Field(
        None,
        ge=1,
        description="Total training examples. Default: the sum of the (capped) task sizes.",
    )
    total_tokens: int | None = Field(
        None, ge=1, description="Total training tokens instead of examples (needs `tokenizer`). Default: none."
    )
    tokenizer: str | None = Field(
        None, description="Tokenizer (hub id or local path) used to count tokens. Default: none (whitespace words)."
    )
    upsample: bool = Field(
        True, description="Allow repeating a task's rows when its target exceeds its size. Default: true."
    )
    seed: int = Field(1234, description="Seed for sampling and template choice. Default: 1234.")

    @model_validator(mode="after")
    def _strategy_fields(self) -> Mixture:
        if self.total is not None and self.total_tokens is not None:
            raise ValueError("give `total` (examples) or `total_tokens`, not both")
        if self.total_tokens is not None and self.tokenizer is None:
            raise ValueError("`total_tokens` needs a `tokenizer` to count tokens with")
        if self.strategy == "count" and (self.total is not None or self.total_tokens is not None):
            raise ValueError("`count` takes absolute per-task counts from `weight`; drop `total`/`total_tokens`")
        return self


class Split(Section):
    """Train/eval split (stratified by task; held-out tasks go whole to `heldout`)."""

    eval_fraction: float = Field(0.02, ge=0, lt=1, description="Share of each task's rows for eval. Default: 0.02.")
    seed: int = Field(1234, description="Split seed. Default: 1234.")


class Eval(Section):
    """What the eval side of a version holds beyond the eval split (all of it rendered after filtering)."""

    templates: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Task name -> template ids or globs that render that task's eval rows into the "
        "`eval_unseen_templates` split but never train rows, e.g. `{sentiment: [sentiment/*]}` on a fine-tuning "
        "card (templates the task trains on are skipped). Default: none.",
    )


class Output(Section):
    """Where versions are written."""

    dir: str = Field(
        "datasets",
        description="Root for versions `<dir>/<name>/<id>/`, relative to the working directory; or an object-store "
        "URL (`s3://bucket/datasets`, any fsspec URL): versions are built in a local copy under `$CARDTUNE_CACHE` "
        "and then uploaded, the manifest last.",
    )


class Card(Section):
    """A dataset card: tasks, templates, mixture, filters, split, output and training."""

    name: str = Field(
        ...,
        min_length=1,
        max_length=128,
        pattern=SAFE_NAME,
        description="Dataset name (required): letters, digits, `.`, `_`, `-`, not starting with `.` (it names a folder).",
    )
    version: str = Field("0.1.0", description="Human label; the content hash is the real version id.")
    description: str = Field("", description="What this dataset is for; goes into the generated dataset card.")
    license: str = Field("other", description="SPDX-style license id for the generated dataset card.")
    mode: Mode = Field("instruction", description="`instruction` (chat format) or `finetune` (plain strings).")
    templates_dir: str | None = Field(None, description="Card-local template directory, relative to the card.")
    tasks: list[Task] = Field(..., min_length=1, description="The tasks (required, at least one).")
    mixture: Mixture = Field(default_factory=Mixture, description="Mixing.")
    filters: Filters = Field(default_factory=Filters, description="Filters.")
    split: Split = Field(default_factory=Split, description="Train/eval split.")
    eval: Eval = Field(default_factory=Eval, description="Eval-only phrasings.")
    output: Output = Field(default_factory=Output, description="Output location.")
    train: Train = Field(default_factory=Train, description="Training.")

    # Set by load_card (not part of the YAML): the card file, for resolving relative paths, and the line
    # of every location, so checks after loading (templates, sources) can still say `file:line: field`.
    _path: Path | None = None
    _lines: dict[tuple[str | int, ...], int] = {}  # noqa: RUF012 - a pydantic private attribute (copied per instance)

    def issue(self, loc: tuple[str | int, ...], message: str) -> Issue:
        """An ``Issue`` at ``loc`` of this card's file (line found from the parsed YAML)."""
        located = LocatedYaml(data=None, lines=self._lines, file=str(self._path or "<card>"))
        return located.issue(loc, message)

    @property
    def path(self) -> Path | None:
        """The card file this was loaded from, if any."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """Folder that relative source/template paths resolve against."""
        return self._path.parent if self._path is not None else Path.cwd()

    def data_sections(self) -> dict[str, Any]:
        """The sections that define the data (hashed into the version id): everything but output and train.

        A filter that is off by default and not turned on is left out, so adding a filter to the registry does
        not change the id of any card that does not use it.
        """
        from cardtune.curate.filters import FILTERS

        data = self.model_dump(mode="json", exclude={"output", "train"})
        for flt in FILTERS:
            *parents, leaf = flt.key
            node = data["filters"]
            for part in parents:
                node = node[part]
            if not flt.on_by_default and node.get(leaf) is None:
                node.pop(leaf, None)
        # fields added after the first release are hashed only when set, so older cards keep their ids
        for task in data["tasks"]:
            if not task.get("held_out_templates"):
                task.pop("held_out_templates", None)
            if task.get("conversation") is None:
                task.pop("conversation", None)
        if not data["eval"]["templates"]:
            data.pop("eval")
        return data
