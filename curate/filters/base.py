"""The filter step protocol: one spec model + one ``run`` per filter, and the context a filter may read.

A filter is a :class:`Filter` value declared in its own module (``quality.py``, ``near_dedup.py`` ...) and listed
once in the ordered registry (``cardtune.curate.filters.FILTERS``). The registry is the only place that says
which filters exist and in what order they run: the card schema (``filters:`` section), the pipeline, the
manifest's filter order and the reports all read it.

``run(rows, spec, ctx)`` takes rendered rows (the row contract of :mod:`cardtune.curate.rows`) and returns a
:class:`~cardtune.curate.rows.StepResult`: kept rows (same schema, same order), rejects with a reason and JSON
evidence, and a small JSON report. ``locality`` declares whether the filter is row-local (``"row"``: running it
on partitions of the rows and concatenating the results gives the same kept rows and rejects, so a partitioned
executor may map it) or needs a global view (``"global"``: dedup compares rows with each other).

A global filter is split so that a partitioned executor never holds whole rows: ``keys(rows, spec, ctx)`` is
row-local and returns small per-row key columns (hashes, band keys); ``decide(view, spec, ctx)`` sees only those
keys of all surviving rows (a :class:`RowView`, which can also fetch the text of a few rows) and returns a
:class:`Decision`. ``run`` for a global filter is :func:`global_run` over the two, so the in-memory and the
partitioned paths share one implementation. ``merge`` combines the reports of a row-local filter's partitions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from cardtune.curate.card.section import Section
from cardtune.curate.errors import Loc
from cardtune.curate.sources.spec import Source

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import polars as pl

    from cardtune.curate.inputs import ResolvedInputs
    from cardtune.curate.rows import StepResult

Scope = Literal["prompt", "completion", "both"]
Locality = Literal["row", "global"]
RefKind = Literal["benchmark", "tokenizer", "version"]
S = TypeVar("S", bound=Section)


@dataclass(frozen=True)
class InputRef:
    """An input a card section names (declared by the filter or section that reads it)."""

    kind: RefKind  # benchmark (a data set read by the sources' readers) | tokenizer | version (an earlier one)
    value: str  # as written in the card: a path, a hub id, or a version reference
    loc: Loc  # where in the card, for errors
    source: Source | None = None  # for benchmarks: the reader settings (path or hf, split, revision, fields)


@dataclass(frozen=True)
class BuildContext:
    """What a filter may read besides its rows: the card's resolved inputs and the templates' literal text."""

    inputs: ResolvedInputs
    boilerplate: Mapping[str, str] = field(default_factory=dict)  # template id -> its literal (non-Jinja) text


class RowView(Protocol):
    """What a global filter's ``decide`` sees: the key columns of every row still in, in row order."""

    @property
    def height(self) -> int:
        """Rows in view."""
        ...

    def column(self, name: str) -> pl.Series:
        """A key column (one the filter's ``keys`` returned), or ``task`` / ``source_ref``, for every row."""
        ...

    def texts(self, positions: npt.NDArray[np.int64], scope: Scope) -> pl.Series:
        """The flat text (per ``scope``) of the rows at ``positions`` (ascending), fetched on demand."""
        ...


@dataclass(frozen=True)
class Decision:
    """A global filter's verdict: the positions (into the view, ascending) it drops, with reason and evidence."""

    drop: npt.NDArray[np.int64]
    reason: str
    evidence: Sequence[str]  # JSON text per dropped row
    duplicate_of: Sequence[str | None] | None = None  # source_ref of the row kept instead, per dropped row
    report: dict[str, object] = field(default_factory=dict)


def merge_reports(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The report of a row-local filter over all partitions: counts add up, nested dicts merge, settings agree."""
    out: dict[str, Any] = {}
    for report in reports:
        for key, value in report.items():
            if key not in out:
                out[key] = dict(value) if isinstance(value, Mapping) else value
            elif isinstance(value, bool) or not isinstance(value, (int, float, Mapping)):
                continue  # a setting (the same in every partition), e.g. a bound or a mode
            elif isinstance(value, Mapping):
                out[key] = merge_reports([out[key], value])
            else:
                out[key] = out[key] + value
    return out


@dataclass(frozen=True)
class Filter(Generic[S]):
    """One filter: its name, where its spec sits under ``filters:``, the spec model, and its implementation."""

    name: str  # in the manifest, the rejects' `filter` column and reports, e.g. "near_dedup"
    key: tuple[str, ...]  # location of its spec under `filters:` in the card, e.g. ("dedup", "near")
    spec: type[S]
    run: Callable[[pl.DataFrame, S, BuildContext], StepResult]
    locality: Locality
    title: str  # progress label, e.g. "near dedup"
    on_by_default: bool = False  # a card that does not mention it gets it with default settings
    inputs: Callable[[S], Sequence[InputRef]] = lambda spec: ()  # files/hub sets the spec names (hashed into the id)
    summary: str = ""  # one line for `cardtune inspect` and the field reference
    # global filters: row-local key columns, and the decision over the keys of all rows (see the module docstring)
    keys: Callable[[pl.DataFrame, S, BuildContext], pl.DataFrame] | None = None
    decide: Callable[[RowView, S, BuildContext], Decision] | None = None
    merge: Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]] = merge_reports  # row-local filters' reports

    def spec_of(self, filters: Any) -> S | None:
        """This filter's spec in a card's ``filters`` section (``None`` when it is off)."""
        node: Any = filters
        for part in self.key:
            node = getattr(node, part, None)
            if node is None:
                return None
        assert isinstance(node, self.spec)
        return node


@dataclass(frozen=True)
class FrameView:
    """A :class:`RowView` over rows held in memory (the in-memory path and tests)."""

    rows: pl.DataFrame

    @property
    def height(self) -> int:
        return self.rows.height

    def column(self, name: str) -> pl.Series:
        return self.rows.get_column(name)

    def texts(self, positions: npt.NDArray[np.int64], scope: Scope) -> pl.Series:
        from cardtune.curate.filters.exact_dedup import scoped_text

        return scoped_text(self.rows[positions], scope)


def global_run(
    keys: Callable[[pl.DataFrame, S, Any], pl.DataFrame],
    decide: Callable[[RowView, S, Any], Decision],
    name: str,
) -> Callable[[pl.DataFrame, S, BuildContext | None], StepResult]:
    """``run`` for a global filter: its keys over the rows, its decision over them, kept rows and rejects."""

    def run(rows: pl.DataFrame, spec: S, ctx: BuildContext | None = None) -> StepResult:
        import numpy as np
        import polars as pl

        from cardtune.curate.rows import StepResult

        decision = decide(FrameView(rows.hstack(keys(rows, spec, ctx))), spec, ctx)
        mask = np.zeros(rows.height, dtype=np.bool_)
        mask[decision.drop] = True
        return StepResult(
            rows.filter(pl.Series(~mask)), rejects_of(rows[decision.drop], name, decision), decision.report
        )

    return run


def rejects_of(dropped: pl.DataFrame, name: str, decision: Decision) -> pl.DataFrame:
    """Rejects for the ``dropped`` rows (row contract columns, in ``decision.drop`` order) of a decision."""
    import polars as pl

    from cardtune.curate.rows import make_rejects

    extra = [pl.Series("__ev", list(decision.evidence), dtype=pl.String)]
    dup: pl.Expr | None = None
    if decision.duplicate_of is not None:
        extra.append(pl.Series("__dup_of", list(decision.duplicate_of), dtype=pl.String))
        dup = pl.col("__dup_of")
    return make_rejects(dropped.with_columns(extra), name, decision.reason, evidence=pl.col("__ev"), duplicate_of=dup)
