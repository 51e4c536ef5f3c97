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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from cardtune.curate.card.section import Section
from cardtune.curate.errors import Loc
from cardtune.curate.sources.spec import Source

if TYPE_CHECKING:
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

    def spec_of(self, filters: Any) -> S | None:
        """This filter's spec in a card's ``filters`` section (``None`` when it is off)."""
        node: Any = filters
        for part in self.key:
            node = getattr(node, part, None)
            if node is None:
                return None
        assert isinstance(node, self.spec)
        return node
