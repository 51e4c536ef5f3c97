"""Test fixtures for the train tests: tiny dataset versions in the store's format, and cards that point at them.

Written with polars in the exact layout ``cardtune.curate.store.versions`` reads (splits as parquet, ``manifest.json``
last, built with the :class:`~cardtune.curate.store.manifest.Manifest` model), so the train tests do not depend on
the template library or the build pipeline.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import yaml

import cardtune
from cardtune.curate.store import versions as store
from cardtune.curate.store.fingerprint import CURATION_FORMAT, sha256_bytes
from cardtune.curate.store.manifest import (
    Counts,
    Inputs,
    Manifest,
    MixturePlan,
    PlanEntry,
    Splits,
    StepTime,
    TaskEntry,
    Tokens,
)

SYSTEM = "Answer briefly."


def _rows(task: str, n: int, seed: int) -> list[dict[str, Any]]:
    r = random.Random(seed)
    out = []
    words = ["red", "blue", "green", "cat", "dog", "sun", "tree", "book", "city", "river"]
    for i in range(n):
        if task == "sentiment":
            good = r.random() < 0.5
            adj = r.choice(["great", "wonderful", "moving"] if good else ["terrible", "slow", "bad"])
            prompt = f"Review: the movie was {adj}. Is the review positive?\nOptions: yes, no"
            completion, choices = ("yes" if good else "no"), ["yes", "no"]
        elif task == "echo":
            w = " ".join(r.choice(words) for _ in range(3))
            prompt, completion, choices = f"Repeat the words: {w}", w, None
        else:  # negation, held out
            good = r.random() < 0.5
            prompt = f"Is the sun {'hot' if good else 'cold'}?\nOptions: yes, no"
            completion, choices = ("yes" if good else "no"), ["yes", "no"]
        out.append(
            {
                "task": task,
                "template_id": f"{task}/t{i % 2}",
                "source_ref": f"{task}:{i}",
                "answer_choices": choices,
                "prompt": prompt,
                "completion": completion,
            }
        )
    return out


def _frame(rows: list[dict[str, Any]], mode: str) -> pl.DataFrame:
    if mode == "instruction":
        rows = [
            {
                **r,
                "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": r["prompt"]}],
                "completion": [{"role": "assistant", "content": r["completion"]}],
            }
            for r in rows
        ]
        payload = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    else:  # plain strings: the prompt ends on a boundary, the completion starts with a space
        rows = [{**r, "prompt": r["prompt"] + "\nAnswer:", "completion": " " + r["completion"]} for r in rows]
        payload = pl.String()
    schema = {
        "task": pl.String,
        "template_id": pl.String,
        "source_ref": pl.String,
        "answer_choices": pl.List(pl.String),
        "prompt": payload,
        "completion": payload,
    }
    return pl.DataFrame(rows, schema=schema)


def write_version(root: Path, mode: str = "instruction", name: str = "toy", n_train: int = 48) -> Path:
    """A complete version dir ``root/<name>/<id>/`` with train/eval/heldout/rejects and the manifest last."""
    version_id = f"{mode[:4]}{n_train:04d}" + "0" * 56
    vdir = root / name / version_id
    vdir.mkdir(parents=True, exist_ok=True)
    train = _rows("sentiment", n_train // 2, 1) + _rows("echo", n_train // 2, 2)
    evals = _rows("sentiment", 6, 3) + _rows("echo", 4, 4)
    held = _rows("negation", 6, 5)
    splits = {"train": train, "eval": evals, "heldout": held}
    for split, rows in splits.items():
        _frame(rows, mode).write_parquet(vdir / f"{split}.parquet")
    pl.DataFrame(schema={"task": pl.String, "reason": pl.String}).write_parquet(vdir / "rejects.parquet")
    (vdir / "README.md").write_text("# toy\n", encoding="utf-8")
    (vdir / store.MANIFEST).write_text(_manifest(vdir, version_id, name, mode, splits).to_json(), encoding="utf-8")
    return vdir


def _manifest(vdir: Path, version_id: str, name: str, mode: str, splits: dict[str, list[dict[str, Any]]]) -> Manifest:
    """The manifest of a fixture version: counts from its rows, a plan that takes every train row, file hashes."""
    per_split = {split: dict(sorted(Counter(r["task"] for r in rows).items())) for split, rows in splits.items()}
    trained = per_split["train"]
    rows_of = {t: trained.get(t, 0) + per_split["eval"].get(t, 0) for t in trained}
    everything = {**rows_of, **per_split["heldout"]}
    templates = {t: (f"{t}/t0", f"{t}/t1") for t in everything}
    return Manifest(
        version_id=version_id,
        name=name,
        card_version="0.1.0",
        mode=mode,  # type: ignore[arg-type]  # validated by the model
        cardtune=cardtune.__version__,
        created="2026-01-01T00:00:00+00:00",
        card_path=None,
        inputs=Inputs(
            card={"name": name, "mode": mode},
            templates={t: sha256_bytes(t.encode()) for ts in templates.values() for t in ts},
            sources={t: sha256_bytes(t.encode()) for t in everything},
            other={},
            curation_format=CURATION_FORMAT,
        ),
        tasks=(
            TaskEntry(name="sentiment", held_out=False, templates=templates["sentiment"]),
            TaskEntry(name="echo", held_out=False, templates=templates["echo"]),
            TaskEntry(name="negation", held_out=True, templates=templates["negation"]),
        ),
        counts=Counts(source=everything, rendered=everything, filters=(), splits=Splits(**per_split)),
        tokens=Tokens(unit="words", train={t: 10 * n for t, n in trained.items()}),
        mixture=MixturePlan(
            strategy="examples_proportional",
            plan=tuple(
                PlanEntry(
                    task=t,
                    available=n,
                    rate=float(n),
                    share=n / sum(trained.values()),
                    target=n,
                    repeats=0,
                    remainder=n,
                    cap_binds=False,
                    upsampled=False,
                    avg_tokens=10.0,
                    estimated_tokens=10 * n,
                )
                for t, n in trained.items()
            ),
        ),
        filter_reports={},
        timings=(StepTime(step="write", seconds=0.01),),
        files={p.name: sha256_bytes(p.read_bytes()) for p in sorted(vdir.iterdir()) if p.name != store.MANIFEST},
    )


def write_card(path: Path, mode: str = "instruction", method: str = "lora", name: str = "toy", **train: Any) -> Path:
    """A card whose train section is ``method`` plus ``train`` overrides (``sft`` defaults to a tiny run)."""
    sft = {"max_steps": 3, "per_device_train_batch_size": 4, "logging_steps": 1, "save_steps": 2}
    sft.update(train.pop("sft", {}))
    card = {
        "name": name,
        "mode": mode,
        "tasks": [{"name": "sentiment", "source": {"path": "unused.jsonl"}}],
        "output": {"dir": str(path.parent / "datasets")},
        "train": {"model": "default", "method": method, "sft": sft, "max_new_tokens": 4, **train},
    }
    path.write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    return path


class Interrupt:
    """A TrainerCallback that stops the process (like Ctrl-C) once a checkpoint exists."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 2:
            raise KeyboardInterrupt
