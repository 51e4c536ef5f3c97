"""Resolved inputs: every file and hub reference a card names, resolved once by one rule.

The rule (also in ``docs/architecture.md``): a path in a card is expanded (``~``) and, when relative, taken
against **the card's folder** — never the working directory. Names that may be a path or a hub id (tokenizers,
models) are a local path when that path exists, an error when they look like a path (start with ``.``, ``/`` or
``~``, or end in a file suffix) but do not exist, and a hub id otherwise. Hub datasets are pinned to the commit
they resolve to, once per process. ``output.dir`` is the one exception: it is relative to the working
directory (where versions are written, not an input).

:func:`resolve_inputs` returns a :class:`ResolvedInputs`; fingerprinting (the version id) and every reader take
only these values, so what is hashed is what is read. Nothing else in ``cardtune`` resolves a card's raw string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cardtune.curate.card.schema import Card
from cardtune.curate.errors import Issue, Loc, UserInputError
from cardtune.curate.filters.base import InputRef
from cardtune.curate.sources.spec import Source

if TYPE_CHECKING:
    from cardtune.curate.sources.read import ResolvedSource

FILE_SUFFIXES = (".json", ".jsonl", ".jinja", ".yaml", ".yml", ".txt", ".model", ".parquet", ".csv", ".tsv")


def card_path(raw: str, base_dir: Path) -> Path:
    """The one path rule: ``~`` expanded; a relative path is taken against ``base_dir`` (the card's folder)."""
    path = Path(raw).expanduser()
    return path if path.is_absolute() else base_dir / path


def looks_like_path(raw: str) -> bool:
    """``True`` for a name that can only mean a local path (so a missing file is an error, not a hub id)."""
    return raw.startswith((".", "/", "~")) or raw.lower().endswith(FILE_SUFFIXES) or raw.count("/") > 1


@dataclass(frozen=True)
class NamedInput:
    """A tokenizer (or model) reference after resolution: a local path, or a hub id."""

    value: str  # as written in the card
    path: Path | None  # the local file or folder, when it is one
    hub_id: str | None  # otherwise the hub id it names


@dataclass(frozen=True)
class ResolvedInputs:
    """Everything a build reads, resolved: sources per task, template files, and the filters' inputs."""

    card: Card
    output_root: Path  # <output.dir>/<name>
    sources: dict[str, ResolvedSource]  # task name -> files (or pinned hub dataset) and format
    templates_dir: Path | None
    template_files: dict[str, Path]  # card template reference (`x/templates.yaml`) -> file
    benchmarks: dict[str, ResolvedSource] = field(default_factory=dict)  # benchmark sets by name
    tokenizers: dict[str, NamedInput] = field(default_factory=dict)  # by the card's spelling
    versions: dict[str, Path] = field(default_factory=dict)  # earlier versions (near dedup `against`)
    output_url: str | None = None  # `output.dir` as a URL + /<name>: versions are copied there (output_root: local)

    def tokenizer(self, value: str) -> NamedInput:
        """A tokenizer the card names (resolved when the card was resolved)."""
        return self.tokenizers[value]

    def benchmark(self, name: str) -> ResolvedSource:
        """A benchmark set the card names (by its ``name``)."""
        return self.benchmarks[name]

    def version(self, value: str) -> Path:
        """An earlier version directory the card names."""
        return self.versions[value]


def resolve_named(card: Card, value: str, loc: Loc, what: str) -> NamedInput:
    """A path-or-hub-id name by the rule in the module docstring (errors at the card's line)."""
    path = card_path(value, card.base_dir)
    if path.exists():
        return NamedInput(value, path, None)
    if looks_like_path(value):
        raise UserInputError(
            [card.issue(loc, f"{what} {value!r} not found (looked at {path}; paths are relative to the card's folder)")]
        )
    return NamedInput(value, None, value)


def resolve_inputs(card: Card, issues: list[Issue] | None = None) -> ResolvedInputs:
    """Resolve every input of a card (no rows are read). Raises ``UserInputError`` naming the card lines.

    With an ``issues`` list (``cardtune validate``), problems are appended there instead and the inputs that
    could not be resolved are left out, so every other check can still run and report at once.
    """
    collected: list[Issue] = []
    from cardtune.curate.filters import enabled
    from cardtune.curate.sources import remote
    from cardtune.curate.sources.read import locate
    from cardtune.curate.store import bucket
    from cardtune.curate.templating.card_templates import is_file_ref

    base = card.base_dir
    sources = {}
    for i, task in enumerate(card.tasks):
        where = f"task {task.name!r}: source {task.source.path or task.source.hf!r}"
        try:
            sources[task.name] = locate(task.source, _source_path(task.source, base, where), where)
        except UserInputError as exc:
            collected.extend(card.issue(("tasks", i, "source"), e.message) for e in exc.issues)
    templates_dir = card_path(card.templates_dir, base) if card.templates_dir is not None else None
    template_files = {ref: card_path(ref, base) for task in card.tasks for ref in task.templates if is_file_ref(ref)}
    refs: list[InputRef] = []
    if card.mixture.tokenizer is not None:
        refs.append(InputRef("tokenizer", card.mixture.tokenizer, ("mixture", "tokenizer")))
    for flt, spec in enabled(card.filters):
        refs.extend(flt.inputs(spec))
    output_url = None
    if remote.is_url(card.output.dir):  # an object store: build into a local copy, then upload (store.bucket)
        output_url = bucket.join(card.output.dir, card.name)
        output_root = bucket.local_root(card.output.dir) / card.name
    else:
        output_root = Path(card.output.dir).expanduser() / card.name
    benchmarks, tokenizers, versions = resolve_refs(card, refs, output_root.parent, collected)
    if collected:
        if issues is None:
            raise UserInputError(collected)
        issues.extend(collected)
    return ResolvedInputs(
        card, output_root, sources, templates_dir, template_files, benchmarks, tokenizers, versions, output_url
    )


def resolve_refs(
    card: Card, refs: list[InputRef], versions_root: Path, issues: list[Issue]
) -> tuple[dict[str, ResolvedSource], dict[str, NamedInput], dict[str, Path]]:
    """(benchmarks, tokenizers, earlier versions) that sections declare; problems are appended to ``issues``."""
    from cardtune.curate.sources.read import locate
    from cardtune.curate.store.versions import resolve_version

    benchmarks: dict[str, ResolvedSource] = {}
    tokenizers: dict[str, NamedInput] = {}
    versions: dict[str, Path] = {}
    for ref in refs:
        try:
            if ref.kind == "tokenizer":
                tokenizers.setdefault(ref.value, resolve_named(card, ref.value, ref.loc, "tokenizer"))
            elif ref.kind == "benchmark":
                assert ref.source is not None
                where = f"benchmark {ref.value!r}"
                benchmarks[ref.value] = locate(ref.source, _source_path(ref.source, card.base_dir, where), where)
            else:
                path = card_path(ref.value, card.base_dir)
                versions[ref.value] = path if path.is_dir() else resolve_version(ref.value, versions_root)
        except UserInputError as exc:
            issues.extend(e if e.file else card.issue(ref.loc, e.message) for e in exc.issues)
    return benchmarks, tokenizers, versions


def _source_path(src: Source, base: Path, where: str) -> Path | None:
    """A source's local path: by the card's rule, or its local mirror for a URL (fetched here, once)."""
    from cardtune.curate.sources import remote

    if src.path is None:
        return None
    return remote.mirror(src.path, where) if remote.is_url(src.path) else card_path(src.path, base)


@dataclass(frozen=True)
class TrainInputs:
    """What ``cardtune tune`` loads besides the dataset version, resolved by the same rule."""

    model: NamedInput | None  # None: the embedded default model
    chat_template: str | Path | None  # a built-in template name, a resolved .jinja file, or None (the tokenizer's)
    base: Path | None  # an earlier run directory (`train.base`)

    @property
    def model_source(self) -> str:
        """The model as something loadable from anywhere: ``default``, an absolute path, or a hub id."""
        if self.model is None:
            return "default"
        return str(self.model.path.resolve()) if self.model.path is not None else str(self.model.hub_id)


def resolve_train_inputs(card: Card) -> TrainInputs:
    """Resolve ``train.model``, ``train.chat_template`` and ``train.base`` (all errors at once, at the card's lines)."""
    from cardtune.train.schema import BUILTIN_TEMPLATES, DEFAULT_MODEL

    train = card.train
    issues: list[Issue] = []
    model = None
    if train.model != DEFAULT_MODEL:
        try:
            model = resolve_named(card, train.model, ("train", "model"), "model")
        except UserInputError as exc:
            issues.extend(exc.issues)
    name = train.chat_template.path if train.chat_template is not None else None
    template: str | Path | None = name
    if name is not None and name not in BUILTIN_TEMPLATES:
        path = card_path(name, card.base_dir)
        loc: tuple[str, ...] = ("train", "chat_template")
        if train.chat_template is not None and (
            train.chat_template.end_of_turn or train.chat_template.add_special_tokens
        ):
            loc = (*loc, "path")  # written as a mapping
        if path.suffix not in (".jinja", ".j2"):
            builtins = ", ".join(BUILTIN_TEMPLATES)
            issues.append(card.issue(loc, f"{name!r} is neither a built-in ({builtins}) nor a .jinja file"))
        elif not path.is_file():
            issues.append(card.issue(loc, f"{path}: file not found (paths are relative to the card's folder)"))
        template = path
    base = None
    if train.base is not None:
        base = card_path(train.base, card.base_dir)
        if not base.is_dir():
            issues.append(card.issue(("train", "base"), f"{base}: no such run directory"))
    if issues:
        raise UserInputError(issues)
    return TrainInputs(model, template, base)
