"""cardtune: versioned instruction-tuning datasets from templates and cards, tuned with one command.

The public API lives here: ``load_card``, ``build``, ``load`` and ``tune``. Training code (torch, TRL) is
imported lazily, so ``import cardtune`` and everything in ``cardtune.curate`` work on the core install.
"""

from __future__ import annotations

from pathlib import Path as _Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# In a checkout, cardtune/, curate/, train/ and templates/ are sibling folders mapped into this one
# namespace by pyproject's package-dir. Running ``python -m cardtune`` (or ``accelerate launch -m cardtune``)
# from the repository root puts the root first on sys.path, so Python finds this folder directly and the
# mapping is bypassed; adding the root to __path__ lets cardtune.curate etc. resolve there too.
# In an installed wheel the sibling folders do not exist and this does nothing.
_root = _Path(__file__).resolve().parent.parent
if (_root / "curate" / "__init__.py").is_file() and (_root / "pyproject.toml").is_file():
    __path__.append(str(_root))

if TYPE_CHECKING:
    from cardtune.curate.card.schema import Card
    from cardtune.curate.pipeline import BuildResult

__all__ = ["__version__", "build", "load", "load_card", "tune"]


def load_card(path: str | _Path) -> Card:
    """Read and validate a dataset card (raises ``UserInputError`` listing every mistake with its line)."""
    from cardtune.curate.card.load import load_card as _load_card

    return _load_card(path)


def build(
    card: Card | str | _Path,
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> BuildResult:
    """Build (or reuse) the dataset version a card describes; see ``cardtune.curate.pipeline.build``."""
    from cardtune.curate.pipeline import build as _build

    return _build(card, force=force, dry_run=dry_run, progress=progress, workers=workers)


def load(version_dir: str | _Path) -> Any:
    """A built version as a ``datasets.DatasetDict`` with ``train``, ``eval`` and ``heldout`` splits.

    ``version_dir`` may be a URL of a version in an object store (``s3://bucket/datasets/<name>/<id>``): it is
    fetched once into the local cache, every file checked against its manifest."""
    from cardtune.curate.sources.remote import is_url
    from cardtune.curate.store.versions import load_version

    if isinstance(version_dir, str) and is_url(version_dir):
        from cardtune.curate.store.bucket import load_url

        return load_version(load_url(version_dir))
    return load_version(version_dir)


def tune(card: Card | str | _Path, **kwargs: Any) -> Any:
    """Build or reuse the version, then train on it (needs ``cardtune[train]``); see ``cardtune.train.run.tune``."""
    from cardtune.train.run import tune as _tune

    return _tune(card, **kwargs)
