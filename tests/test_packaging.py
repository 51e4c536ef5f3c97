"""Packaging traps (DESIGN §2): every package folder declared, package data shipped, no bare imports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib

import cardtune

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
MAPPED = PYPROJECT["tool"]["setuptools"]["package-dir"]


def _package_folders() -> dict[str, Path]:
    """Every folder under a mapped root that holds Python files, as its dotted package name."""
    found: dict[str, Path] = {}
    for package, folder in MAPPED.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            rel = path.parent.relative_to(base)
            found[".".join([package, *rel.parts])] = path.parent
    return found


def test_every_package_folder_is_declared_and_has_init() -> None:
    declared = set(PYPROJECT["tool"]["setuptools"]["packages"])
    for name, folder in _package_folders().items():
        assert name in declared, f"{folder} holds Python files but {name} is not in [tool.setuptools] packages"
        assert (folder / "__init__.py").is_file(), f"{folder} lacks __init__.py"
        assert (folder / "py.typed").is_file() or name.count(".") > 1, f"{folder} lacks py.typed"
    assert set(MAPPED) <= declared, "every mapped root must be declared in packages"
    assert declared == set(_package_folders()), "every declared package must be a folder with Python files"


def test_shipped_templates_are_package_data() -> None:
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["cardtune.templates"]
    yamls = list((ROOT / "templates").glob("*/*.yaml"))
    assert yamls, "the template library is empty"
    assert "*/*.yaml" in patterns
    assert not list((ROOT / "templates").glob("*/*/*.yaml")), "nested template folders are not shipped"


def test_mypy_path_matches_version() -> None:
    assert PYPROJECT["tool"]["mypy"]["mypy_path"].endswith(f"cardtune-{PYPROJECT['project']['version']}-py3-none-any")
    assert PYPROJECT["project"]["version"] == cardtune.__version__


def test_core_install_does_not_pull_torch() -> None:
    core = " ".join(PYPROJECT["project"]["dependencies"]).lower()
    for heavy in ("torch", "transformers", "trl", "peft", "datasets"):
        assert not re.search(rf"\b{heavy}\b", core), f"{heavy} must stay out of the core install"


def test_curate_never_imports_torch() -> None:
    code = (
        "import sys, cardtune.cli, cardtune.curate.pipeline, cardtune.curate.card.validate\n"
        "bad = [m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT / "tests")


def test_no_bare_folder_imports() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+(curate|train|templates)(\.|\s|$)", re.M)
    offenders = [
        str(p.relative_to(ROOT))
        for folder in ("cardtune", "curate", "train", "templates", "tests", "benchmarks")
        for p in (ROOT / folder).rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert not offenders, offenders


def test_lazy_curate_exports_resolve_and_cli_start_is_light() -> None:
    import cardtune.curate as curate_pkg

    assert set(curate_pkg.__all__) == set(curate_pkg._EXPORTS)
    for name in curate_pkg.__all__:
        assert getattr(curate_pkg, name) is not None
    code = "import sys, cardtune.cli\nheavy = [m for m in ('polars', 'numpy', 'jinja2', 'torch') if m in sys.modules]\nassert not heavy, heavy\n"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT / "tests")
