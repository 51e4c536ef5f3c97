"""cardtune.templates: the instruction-template library shipped as package data (``<family>/<name>.yaml``).

``library_path()`` locates it through ``importlib.resources`` so it works from a checkout, an editable
install and a wheel alike. Loading and rendering live in ``cardtune.curate.templating.library``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def library_path() -> Path:
    """The folder holding the shipped template files.

    A strict editable install exposes the package as a tree of symlinks made at install time; following
    the ``__init__.py`` link gives the source folder, so template files added since are found and error
    messages name the files you edit.
    """
    root = Path(str(files(__name__)))
    init = root / "__init__.py"
    return init.resolve().parent if init.is_symlink() else root
