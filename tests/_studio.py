"""Test fixtures for ``cardtune studio``: a workspace (the studio test card, its templates and the demo data it
names) in a temporary folder, run directories in ``run.json``'s real format, and finding a Chromium for Playwright.

The runs are written with :class:`~cardtune.train.record.RunRecord` (validated by the real model) and the trainer's
``log_history.jsonl`` / ``eval.json`` layout, so the runs pages are tested without training a model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from cardtune.curate.store.manifest import TaskEntry
from cardtune.train.record import DatasetRef, Device, Params, Parity, RunRecord, Timings

ROOT = Path(__file__).resolve().parents[1]
CARD_DIR = ROOT / "tests" / "data" / "studio"
DATA = ("data/sentiment.jsonl", "data/arithmetic.jsonl", "data/topics.csv", "evals/arithmetic_test.jsonl")


def make_workspace(folder: Path) -> Path:
    """Copy the studio test card into ``folder`` (output dir made absolute inside it); return the card path."""
    shutil.copytree(CARD_DIR, folder, dirs_exist_ok=True)
    for rel in DATA:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "data_cards" / rel, folder / rel)
    card = folder / "card.yaml"
    text = card.read_text(encoding="utf-8").replace("output: {dir: out}", f"output: {{dir: {folder / 'out'}}}")
    card.write_text(text, encoding="utf-8")
    return card


def make_run(root: Path, name: str, method: str, losses: list[float], accuracy: float, held: float) -> Path:
    """A finished run directory as ``cardtune tune`` + ``cardtune eval`` leave it (no weights in ``model/``)."""
    d = root / name
    (d / "model").mkdir(parents=True)
    record = RunRecord(
        run_id=name,
        card="studio-demo",
        card_path=None,
        mode="instruction",
        method=method,  # type: ignore[arg-type]
        model="default",
        model_source="default",
        stop_token_ids=(2,),
        base_model=None,
        base_run=None,
        chat_template=None,
        dataset=DatasetRef(version_id="0123456789abcdef", dir=str(root / "version")),
        tasks=(
            TaskEntry(name="reviews", held_out=False, templates=("reviews/feeling",)),
            TaskEntry(name="topic", held_out=True, templates=("topic/classify",)),
        ),
        seed=42,
        device=Device(type="cpu", name="cpu", processes=1),
        versions={"python": "3.11"},
        sft={"learning_rate": 0.002},
        params=Params(trainable=4096 if method == "lora" else 120_000, total=120_000),
        tokens_trained=25_000,
        length_check={},
        parity=Parity(rows_checked=8, stop_tokens=("</s>",)),
        metrics={"train_loss": losses[-1]},
        global_step=len(losses) * 5,
        resumed_from=None,
        finished="2026-01-01T00:00:00+00:00",
        timings=Timings(load_s=0.1, checks_s=0.1, setup_s=0.1, train_s=3.5, save_s=0.1, total_s=4.0),
    )
    (d / "run.json").write_text(record.to_json(), encoding="utf-8")
    log = [{"step": 5 * (i + 1), "loss": loss, "learning_rate": 0.002} for i, loss in enumerate(losses)]
    log.append({"step": 5 * len(losses), "eval_loss": losses[-1] + 0.2})
    (d / "log_history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log), encoding="utf-8")
    tasks = {
        "reviews": {"held_out": False, "n": 20, "exact_match": accuracy, "rougeL": accuracy, "accuracy": accuracy},
        "topic": {"held_out": True, "n": 30, "exact_match": held, "rougeL": held, "accuracy": held},
    }
    evaluation = {
        "run": name,
        "split": "all",
        "limit": None,
        "tasks": tasks,
        "aggregate": {
            "seen": {"tasks": 1, "exact_match": accuracy, "rougeL": accuracy, "accuracy": accuracy},
            "held_out": {"tasks": 1, "exact_match": held, "rougeL": held, "accuracy": held},
        },
        "samples": [{"task": "reviews", "reference": "positive", "output": "positive"}],
    }
    (d / "eval.json").write_text(json.dumps(evaluation, indent=2), encoding="utf-8")
    return d


def find_chromium() -> tuple[str | None, str]:
    """(path of a Chromium binary, why not): on PATH, else ``apt-get install -y chromium`` when root and possible."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return _real_binary(found), ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None, "no chromium on PATH, and apt-get is not available to this user to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"no chromium on PATH and `apt-get install -y chromium` failed: {exc}"
    found = shutil.which("chromium")
    return (_real_binary(found), "") if found else (None, "apt-get installed chromium but it is not on PATH")


def _real_binary(path: str) -> str:
    """Debian's ``/usr/bin/chromium`` is a shell wrapper; Playwright drives the browser binary itself."""
    real = Path("/usr/lib/chromium/chromium")
    return str(real) if Path(path).resolve() == Path("/usr/bin/chromium") and real.is_file() else path
