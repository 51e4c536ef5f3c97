"""The data card: pydantic models for every section, and loading with ``file:line: field: message`` errors.

A card is the only configuration. Every model is frozen and forbids unknown keys; every field has a default
documented in its description (the field reference in ``data_cards/README.md`` is generated from these).
Cross-field checks that need no data (unique task names, not every task held out, strategy fields) run here
too, so ``cardtune validate`` reports all mistakes of a card at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cardtune.curate.yamlsrc import (
    Issue,
    LocatedYaml,
    UserInputError,
    load_located,
    read_user_file,
    validate_model,
)

Mode = Literal["instruction", "finetune"]
Strategy = Literal["fixed", "examples_proportional", "temperature", "count"]
Scope = Literal["prompt", "completion", "both"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Section):
    """Where a task's raw rows come from: a local file/glob/directory, or a Hugging Face hub dataset."""

    path: str | None = Field(
        None,
        description="Local JSONL, JSON array, CSV/TSV or Parquet file, a glob, a directory of such files, or "
        "a `datasets.save_to_disk` directory. Relative to the card's folder. Default: none (give `path` or `hf`).",
    )
    hf: str | None = Field(None, description="Hugging Face hub dataset id, e.g. `super_glue`. Default: none.")
    config: str | None = Field(None, description="Hub dataset configuration name (with `hf`). Default: none.")
    split: str = Field(
        "train", description="Split to read (with `hf` or a `save_to_disk` DatasetDict). Default: `train`."
    )
    revision: str | None = Field(
        None, description="Hub dataset revision (commit sha or tag); pin it for reproducible versions. Default: none."
    )
    format: Literal["auto", "jsonl", "json", "csv", "tsv", "parquet", "hf_disk"] = Field(
        "auto", description="File format; `auto` infers it from the extension. Default: `auto`."
    )
    id_column: str | None = Field(
        None, description="Column holding a stable row id used in `source_ref`; default: the row index."
    )
    limit: int | None = Field(None, ge=1, description="Read at most this many rows (the first N). Default: all rows.")

    @model_validator(mode="after")
    def _one_of(self) -> Source:
        if (self.path is None) == (self.hf is None):
            raise ValueError("give exactly one of `path` (a local file) or `hf` (a hub dataset id)")
        if self.path is not None and (self.config is not None or self.revision is not None):
            raise ValueError("`config` and `revision` apply to `hf` sources only")
        return self


class FewShot(_Section):
    """Few-shot variants: a share of rows get k exemplars from the same task, never the row itself."""

    k: int = Field(3, ge=1, le=32, description="Exemplars per few-shot prompt. Default: 3.")
    fraction: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of rows rendered few-shot (the rest zero-shot). Default: 0.5."
    )


class Task(_Section):
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


class Mixture(_Section):
    """How tasks are mixed, in seqio's vocabulary (FLAN recipes port 1:1)."""

    strategy: Strategy = Field(
        "examples_proportional",
        description="`fixed` (rate = weight), `examples_proportional` (rate = min(n*scale, cap)*weight), "
        "`temperature` (rate = min(n, cap)^(1/T)*weight), `count` (weight = absolute examples). "
        "Default: `examples_proportional`.",
    )
    cap: int | None = Field(None, ge=1, description="Per-task example cap (seqio `maximum`). Default: no cap.")
    scale: float = Field(1.0, gt=0, description="Multiplier on task sizes for `examples_proportional`. Default: 1.0.")
    temperature: float = Field(1.0, gt=0, description="T for `temperature` mixing. Default: 1.0.")
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


class Quality(_Section):
    """Quality rules; each drop is a reject with its rule as the reason."""

    min_chars: int = Field(1, ge=0, description="Minimum characters of prompt + completion. Default: 1.")
    max_chars: int | None = Field(None, ge=1, description="Maximum characters of prompt + completion. Default: none.")
    min_tokens: int | None = Field(None, ge=0, description="Minimum tokens (needs `tokenizer`). Default: none.")
    max_tokens: int | None = Field(None, ge=1, description="Maximum tokens (needs `tokenizer`). Default: none.")
    tokenizer: str | None = Field(None, description="Tokenizer for the token bounds. Default: none.")
    drop_empty_completion: bool = Field(True, description="Drop empty or whitespace-only completions. Default: true.")
    drop_completion_equals_prompt: bool = Field(
        True, description="Drop rows whose completion equals the prompt. Default: true."
    )
    max_repetition: float | None = Field(
        None, gt=0, le=1, description="Maximum fraction of repeated word n-grams in the completion. Default: none."
    )
    repetition_ngram: int = Field(3, ge=1, description="n for the repetition rule. Default: 3.")

    @model_validator(mode="after")
    def _tokenizer(self) -> Quality:
        if (self.min_tokens is not None or self.max_tokens is not None) and self.tokenizer is None:
            raise ValueError("`min_tokens`/`max_tokens` need a `tokenizer`")
        return self


class ExactDedup(_Section):
    """Exact duplicates on normalized text (NFKC, lowercase, whitespace folded)."""

    scope: Scope = Field("both", description="Text compared: `prompt`, `completion` or `both`. Default: `both`.")


class NearDedup(_Section):
    """Near duplicates: MinHash over word n-gram shingles with LSH banding."""

    threshold: float = Field(0.8, gt=0, le=1, description="Estimated Jaccard to call a pair duplicate. Default: 0.8.")
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations. Default: 128.")
    ngram: int = Field(5, ge=1, description="Words per shingle. Default: 5.")
    bands: int | None = Field(None, ge=1, description="LSH bands; default: derived from threshold (16 at 0.8).")
    rows: int | None = Field(None, ge=1, description="Rows per band; bands*rows must equal num_perm. Default: derived.")
    scope: Scope = Field("prompt", description="Text compared. Default: `prompt`.")
    keep: Literal["first", "longest_completion"] = Field(
        "first", description="Which row of a duplicate cluster survives. Default: `first`."
    )
    against: list[str] = Field(
        default_factory=list, description="Earlier version directories whose rows new rows must not duplicate."
    )

    @model_validator(mode="after")
    def _banding(self) -> NearDedup:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both `bands` and `rows`, or neither")
        if self.bands is not None and self.rows is not None and self.bands * self.rows != self.num_perm:
            raise ValueError(f"bands*rows = {self.bands * self.rows} but num_perm is {self.num_perm}")
        return self


class Dedup(_Section):
    """Duplicate removal."""

    exact: ExactDedup | None = Field(
        default_factory=ExactDedup, description="Exact dedup; `null` turns it off. Default: on, scope `both`."
    )
    near: NearDedup | None = Field(None, description="Near dedup. Default: off.")


class Benchmark(_Section):
    """An evaluation set that training rows must not overlap."""

    name: str = Field(..., min_length=1, description="Name in reports (required).")
    path: str | None = Field(None, description="Local JSONL/Parquet/CSV file, relative to the card. Default: none.")
    hf: str | None = Field(None, description="Hub dataset id instead of `path`. Default: none.")
    config: str | None = Field(None, description="Hub configuration. Default: none.")
    split: str = Field("test", description="Hub split. Default: `test`.")
    revision: str | None = Field(None, description="Hub revision. Default: none.")
    fields: list[str] = Field(..., min_length=1, description="Fields whose text is checked (required).")
    id_field: str | None = Field(None, description="Field with the item id; default: the row index.")

    @model_validator(mode="after")
    def _one_of(self) -> Benchmark:
        if (self.path is None) == (self.hf is None):
            raise ValueError("give exactly one of `path` or `hf`")
        return self


class Decontaminate(_Section):
    """Benchmark decontamination by word n-gram overlap, and canary strings."""

    ngram: int = Field(13, ge=3, description="Words per n-gram. Default: 13.")
    mode: Literal["drop", "report"] = Field("drop", description="Drop matching rows or only report. Default: `drop`.")
    benchmarks: list[Benchmark] = Field(default_factory=list, description="Benchmarks to check. Default: none.")
    canaries: list[str] = Field(
        default_factory=list, description="Rows containing any of these strings are flagged (dropped in mode `drop`)."
    )


class Filters(_Section):
    """Filters run in order: quality → exact dedup → near dedup → decontaminate."""

    quality: Quality | None = Field(
        default_factory=Quality, description="Quality rules; `null` turns them off. Default: on."
    )
    dedup: Dedup = Field(default_factory=Dedup, description="Duplicate removal. Default: exact on, near off.")
    decontaminate: Decontaminate | None = Field(None, description="Benchmark decontamination. Default: off.")


class Split(_Section):
    """Train/eval split (stratified by task; held-out tasks go whole to `heldout`)."""

    eval_fraction: float = Field(0.02, ge=0, lt=1, description="Share of each task's rows for eval. Default: 0.02.")
    seed: int = Field(1234, description="Split seed. Default: 1234.")


class Output(_Section):
    """Where versions are written."""

    dir: str = Field(
        "datasets", description="Root for versions `<dir>/<name>/<id>/`, relative to the working directory."
    )


class Lora(_Section):
    """LoRA adapter settings (PEFT `LoraConfig`)."""

    r: int = Field(16, ge=1, description="Rank. Default: 16.")
    alpha: int = Field(32, ge=1, description="Scaling alpha. Default: 32.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout. Default: 0.05.")
    target_modules: str | list[str] = Field("all-linear", description="Modules to adapt. Default: `all-linear`.")


class PromptTuning(_Section):
    """Prompt tuning settings (PEFT `PromptTuningConfig`)."""

    num_virtual_tokens: int = Field(20, ge=1, description="Virtual tokens. Default: 20.")
    init_text: str | None = Field(None, description="Initialize from this text; default: random init.")


class Train(_Section):
    """Training: a thin mapping onto TRL's `SFTConfig` and a PEFT config."""

    model: str = Field("default", description="`default` (embedded tiny model), a hub id, or a local path.")
    method: Literal["full", "lora", "prompt_tuning"] = Field("lora", description="What is trained. Default: `lora`.")
    lora: Lora = Field(default_factory=Lora, description="LoRA settings (method `lora`).")
    prompt_tuning: PromptTuning = Field(default_factory=PromptTuning, description="Prompt tuning settings.")
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="QLoRA-style quantized base (needs a GPU and bitsandbytes). Default: `none`."
    )
    chat_template: str | None = Field(
        None,
        description="`null` = the tokenizer's; or chatml | llama-3 | mistral | alpaca | a path to a .jinja file.",
    )
    base: str | None = Field(None, description="An earlier run directory to start from (task modules on a tuned base).")
    overlong: Literal["truncate", "drop"] = Field(
        "truncate", description="Rows longer than `sft.max_length`: truncate or drop. Default: `truncate`."
    )
    seed: int = Field(42, description="Training seed. Default: 42.")
    max_new_tokens: int = Field(64, ge=1, description="Generation length for `cardtune eval`. Default: 64.")
    sft: dict[str, Any] = Field(
        default_factory=dict,
        description="TRL `SFTConfig` fields (learning_rate, num_train_epochs, max_length, ...); unknown names "
        "are errors. Default: cardtune's per-mode defaults.",
    )


class Card(_Section):
    """A dataset card: tasks, templates, mixture, filters, split, output and training."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$", description="Dataset name (required).")
    version: str = Field("0.1.0", description="Human label; the content hash is the real version id.")
    description: str = Field("", description="What this dataset is for; goes into the generated dataset card.")
    license: str = Field("other", description="SPDX-style license id for the generated dataset card.")
    mode: Mode = Field("instruction", description="`instruction` (chat format) or `finetune` (plain strings).")
    templates_dir: str | None = Field(None, description="Card-local template directory, relative to the card.")
    tasks: list[Task] = Field(..., min_length=1, description="The tasks (required, at least one).")
    mixture: Mixture = Field(default_factory=Mixture, description="Mixing.")
    filters: Filters = Field(default_factory=Filters, description="Filters.")
    split: Split = Field(default_factory=Split, description="Train/eval split.")
    output: Output = Field(default_factory=Output, description="Output location.")
    train: Train = Field(default_factory=Train, description="Training.")

    # Set by load_card (not part of the YAML): the card file, for resolving relative paths, and the line
    # of every location, so checks after loading (templates, sources) can still say `file:line: field`.
    _path: Path | None = None
    _lines: dict[tuple[str | int, ...], int] = {}

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

    def resolve(self, relative: str) -> Path:
        """A path from the card, resolved against the card's folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def data_sections(self) -> dict[str, Any]:
        """The sections that define the data (hashed into the version id): everything but output and train."""
        return self.model_dump(mode="json", exclude={"output", "train"})


def cross_checks(card: Card) -> list[tuple[tuple[str | int, ...], str]]:
    """Checks across fields that need no data. Returns (location, message) pairs."""
    problems = duplicate_task_names([t.name for t in card.tasks])
    for i, task in enumerate(card.tasks):
        if card.mixture.strategy == "count" and float(task.weight) != int(task.weight):
            problems.append(
                (("tasks", i, "weight"), "with strategy `count` the weight is an example count (an integer)")
            )
        for j, col in enumerate(task.columns):
            if not col:
                problems.append((("tasks", i, "columns", j), "empty input name"))
    if all(t.held_out for t in card.tasks):
        problems.append((("tasks",), "every task is held_out: at least one task must be trained on"))
    return problems


def load_card(path: str | Path) -> Card:
    """Read, parse and validate a card file. Raises ``UserInputError`` listing every problem found."""
    path = Path(path)
    text = read_user_file(path, what="card")
    located = load_located(text, str(path))
    return card_from_located(located, path)


def card_from_located(located: LocatedYaml, path: Path | None) -> Card:
    """Validate parsed YAML into a ``Card`` (all errors at once, with lines)."""
    if not isinstance(located.data, dict):
        kind = "a list" if isinstance(located.data, list) else type(located.data).__name__
        raise UserInputError([Issue(located.file, located.line_of(()), (), f"a card must be a mapping, got {kind}")])
    issues: list[Issue] = []
    card: Card | None = None
    try:
        card = validate_model(Card, located)
    except UserInputError as exc:
        issues.extend(exc.issues)
    if card is not None:
        issues.extend(located.issue(loc, msg) for loc, msg in cross_checks(card))
    else:
        issues.extend(_partial_cross_checks(located))
    issues.extend(_sft_issues(located))
    if issues:
        issues.sort(key=lambda i: i.line)
        raise UserInputError(issues)
    assert card is not None
    card._path = path.resolve() if path is not None else None
    card._lines = located.lines
    return card


def _sft_issues(located: LocatedYaml) -> list[Issue]:
    """Unknown or reserved ``train.sft`` keys, each at its own line (torch-free; TRL re-checks at tune time)."""
    from cardtune.curate.sft_fields import sft_key_problem

    train = located.data.get("train") if isinstance(located.data, dict) else None
    sft = train.get("sft") if isinstance(train, dict) else None
    if not isinstance(sft, dict):
        return []
    problems = ((key, sft_key_problem(str(key))) for key in sft)
    return [located.issue(("train", "sft", key), problem) for key, problem in problems if problem is not None]


def duplicate_task_names(names: list[str | None]) -> list[tuple[tuple[str | int, ...], str]]:
    """``(tasks[i].name, message)`` for every name already used by an earlier task."""
    seen: dict[str, int] = {}
    out: list[tuple[tuple[str | int, ...], str]] = []
    for i, name in enumerate(names):
        if name is None:
            continue
        if name in seen:
            out.append((("tasks", i, "name"), f"duplicate task name {name!r} (also tasks[{seen[name]}])"))
        else:
            seen[name] = i
    return out


def _partial_cross_checks(located: LocatedYaml) -> list[Issue]:
    """Duplicate task names even when other errors stopped full validation (so all mistakes show at once)."""
    tasks = located.data.get("tasks") if isinstance(located.data, dict) else None
    if not isinstance(tasks, list):
        return []
    names = [t.get("name") if isinstance(t, dict) and isinstance(t.get("name"), str) else None for t in tasks]
    return [located.issue(loc, msg) for loc, msg in duplicate_task_names(names)]
