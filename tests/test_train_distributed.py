"""``accelerate launch`` with two CPU processes (one gloo group): one complete run directory, written by rank 0 only.

The two-process run is compared with a one-process run of the same card: the same files, the same ``run.json``
keys, ``device.processes`` 2. The card saves a checkpoint every step, so a rank that used another run name than
rank 0 would leave its own ``.partial`` folder (its RNG state) and the "exactly one entry" check would fail.

``--multi_gpu`` is accelerate's torchrun launcher and works without GPUs; ``accelerate launch --cpu
--num_processes 2`` starts a single process unless ``--mpirun_hostfile`` is given (accelerate 1.x), so it cannot
test anything here. ``HF_HOME`` points at an empty folder: no accelerate config file is read.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _train_data import write_card, write_version

from cardtune.train.run import tune

ROOT = Path(__file__).resolve().parent.parent
ACCELERATE = Path(sys.executable).with_name("accelerate")
LAUNCH_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(version dir, local model dir): the fixture version and the embedded tiny model saved as a folder."""
    from cardtune.train import models

    root = tmp_path_factory.mktemp("dist")
    tokenizer = models.default_tokenizer()
    models.default_model(tokenizer, 42).save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    return write_version(root / "versions"), root / "tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(card: Path, version: Path, runs: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS and not k.startswith("ACCELERATE_")}
    env.update(HF_HOME=str(home), CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", COLUMNS="200")
    cmd = [
        str(ACCELERATE),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "cardtune",
        "tune",
        str(card),
        "--max-steps",
        "2",
        "--version-dir",
        str(version),
        "--output",
        str(runs),
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def _layout(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*"))


def _keys(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON object (values ignored: timings, losses and dates differ between runs)."""
    if not isinstance(value, dict):
        return set()
    out = set()
    for key, sub in value.items():
        out.add(prefix + key)
        if key not in ("metrics", "versions"):  # metric names and library names are values, not the layout
            out |= _keys(sub, f"{prefix}{key}.")
    return out


@pytest.mark.slow
def test_two_processes_write_one_complete_run_like_one_process(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    version, model = inputs
    card = write_card(tmp_path / "card.yaml", model=str(model), sft={"save_steps": 1})
    single = tune(card, output=tmp_path / "one", version_dir=version, max_steps=2, progress=False).run_dir

    runs = tmp_path / "two"
    done = _launch(card, version, runs, tmp_path / "hf")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    entries = sorted(p.name for p in runs.iterdir())
    assert len(entries) == 1 and not entries[0].startswith("."), entries  # no second run, no partial left
    run = runs / entries[0]
    assert run.name.startswith(f"toy-{version.name[:8]}-") and run.name.endswith("Z")
    assert _layout(run) == _layout(single)
    assert "checkpoints" not in _layout(run)
    assert (run / "card.yaml").read_bytes() == (single / "card.yaml").read_bytes()

    one, two = (json.loads((r / "run.json").read_text()) for r in (single, run))
    assert _keys(two) == _keys(one)
    assert two["device"]["processes"] == 2 and one["device"]["processes"] == 1
    assert two["run_id"] == run.name and two["global_step"] == one["global_step"] == 2
    assert two["dataset"] == one["dataset"] and two["sft"]["use_cpu"] is True
    # 2 processes x 4 rows per step: twice the tokens of the one-process run in the same 2 steps
    assert two["tokens_trained"] > one["tokens_trained"]
    assert out.count("parity: ok") == 1 and out.count("done ") == 1, out[-4000:]  # rank 0 alone reports


@pytest.mark.slow
def test_processes_that_do_not_join_one_group_write_nothing(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    version, model = inputs
    card = write_card(tmp_path / "card.yaml", model=str(model), sft={"use_cpu": False})  # no gloo group on CPU
    runs = tmp_path / "runs"
    done = _launch(card, version, runs, tmp_path / "hf")
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "2 processes were launched, but training sees 1" in out, out[-4000:]
    assert not runs.exists() or not any(runs.iterdir())
