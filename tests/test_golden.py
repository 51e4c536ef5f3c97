"""Golden digests: every example card builds to pinned version ids and pinned output content.

A failure means the same inputs now give other bytes (or another id). If that is intended, bump
``CURATION_FORMAT`` in ``curate/store/fingerprint.py`` (so no user gets a stale cached version under an old id)
and re-pin: ``.venv/bin/pytest tests/test_golden.py --update-golden``. Parquet files are pinned by their content
(schema + rows as canonical JSON), not their bytes: the writer's ``created_by`` field names the polars version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import polars as pl
import pytest

from cardtune.curate.pipeline import build

ROOT = Path(__file__).resolve().parent.parent
CARDS = sorted((ROOT / "data_cards").glob("*.yaml"))
GOLDEN = Path(__file__).resolve().parent / "golden" / "example_cards.json"
BUMP = (
    "bump CURATION_FORMAT in curate/store/fingerprint.py if the change is intended, then re-pin with "
    "`pytest tests/test_golden.py --update-golden`"
)


def content_digest(path: Path) -> str:
    """sha256 of a parquet file's schema and rows (canonical JSON), independent of the writer's version."""
    frame = pl.read_parquet(path)
    record = {"schema": {k: str(v) for k, v in frame.schema.items()}, "rows": frame.to_dicts()}
    return hashlib.sha256(json.dumps(record, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def digests(version_dir: Path) -> dict[str, str]:
    out = {}
    for path in sorted(version_dir.iterdir()):
        if path.suffix == ".parquet":
            out[path.name] = content_digest(path)
        elif path.name == "README.md":
            out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def build_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, object]]:
    workdir = tmp_path / "data_cards"
    shutil.copytree(ROOT / "data_cards", workdir, ignore=shutil.ignore_patterns("README.md"))
    monkeypatch.chdir(tmp_path)
    out: dict[str, dict[str, object]] = {}
    for card in CARDS:
        result = build(workdir / card.name)
        out[card.stem] = {"version_id": result.version_id, "files": digests(result.version_dir)}
    return out


def test_example_cards_match_golden_digests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, update_golden: bool
) -> None:
    got = build_examples(tmp_path, monkeypatch)
    if update_golden or not GOLDEN.exists():
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if not update_golden:
            pytest.fail(f"{GOLDEN} was missing and has been written; commit it")
        return
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert sorted(got) == sorted(want), f"example cards changed: {sorted(got)} vs pinned {sorted(want)}; {BUMP}"
    for name, pinned in want.items():
        for file, digest in pinned["files"].items():
            assert got[name]["files"].get(file) == digest, f"{name}: {file} content changed; {BUMP}"  # type: ignore[attr-defined]
        assert got[name]["version_id"] == pinned["version_id"], (
            f"{name}: version id changed with identical output bytes — an input record changed; {BUMP}"
        )


def test_a_change_in_reporting_code_keeps_version_ids(tmp_path: Path) -> None:
    """The id covers inputs + CURATION_FORMAT, not the source files: edit the report palette, same id."""
    spec = find_spec("cardtune")
    assert spec is not None and spec.submodule_search_locations
    pkg = Path(next(iter(spec.submodule_search_locations)))
    copy = tmp_path / "site" / "cardtune"
    shutil.copytree(pkg, copy, symlinks=False, ignore=shutil.ignore_patterns("__pycache__"))
    svg = copy / "curate" / "reporting" / "svg.py"
    svg.write_text(svg.read_text(encoding="utf-8").replace('"#4e79a7"', '"#000000"') + "\n# edited\n", encoding="utf-8")
    code = (
        "import sys, cardtune.curate.reporting.svg as svg\n"
        "assert svg.PALETTE[0] == '#000000', svg.__file__\n"
        "from cardtune.curate.pipeline import build\n"
        "print(build(sys.argv[1], dry_run=True).version_id)\n"
    )
    card = ROOT / "data_cards" / "demo.yaml"
    env = {**os.environ, "PYTHONPATH": str(copy.parent)}
    edited = subprocess.run(
        [sys.executable, "-c", code, str(card)], env=env, capture_output=True, text=True, cwd=tmp_path, check=True
    ).stdout.strip()
    assert edited == build(card, dry_run=True).version_id
