"""``cardtune studio``: a local web workbench for authoring templates, shaping mixtures and reading versions and runs.

A Starlette app with server-rendered pages and htmx (vendored under ``static/``; nothing is loaded from the
network), served by uvicorn on 127.0.0.1 behind a random access token. It is a front end only: previews, lint,
dry-run plans, builds, reports and run records all come from ``cardtune.curate`` / ``cardtune.train``. The web
stack is the ``[studio]`` extra; ``missing()`` names what is not installed.
"""

from __future__ import annotations

import importlib.util

REQUIRES = {"starlette": "starlette", "uvicorn": "uvicorn", "multipart": "python-multipart"}  # module: distribution


def missing() -> list[str]:
    """The studio's dependencies (distribution names) that are not installed (empty when it can run)."""
    out = []
    for name, dist in REQUIRES.items():
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out.append(dist)
    return out
