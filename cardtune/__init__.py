"""cardtune: versioned instruction-tuning datasets from templates and cards, tuned with one command.

The public API lives here: ``load_card``, ``build``, ``load`` and ``tune``. Training code (torch, TRL) is
imported lazily, so ``import cardtune`` and everything in ``cardtune.curate`` work on the core install.
"""

from __future__ import annotations

from pathlib import Path as _Path

__version__ = "0.1.0"

# In a checkout, cardtune/, curate/, train/ and templates/ are sibling folders mapped into this one
# namespace by pyproject's package-dir. Running ``python -m cardtune`` (or ``accelerate launch -m cardtune``)
# from the repository root puts the root first on sys.path, so Python finds this folder directly and the
# mapping is bypassed; adding the root to __path__ lets cardtune.curate etc. resolve there too.
# In an installed wheel the sibling folders do not exist and this does nothing.
_root = _Path(__file__).resolve().parent.parent
if (_root / "curate" / "__init__.py").is_file() and (_root / "pyproject.toml").is_file():
    __path__.append(str(_root))
