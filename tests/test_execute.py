"""Partitioned execution: the same card gives the same version id and bytes on every executor, worker count and
partition size; faults (a bad Ray address, a killed worker) fail cleanly and leave nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cardtune.curate.errors import UserInputError
from cardtune.curate.execute.parts import plan_parts
from cardtune.curate.pipeline import build

ROOT = Path(__file__).resolve().parents[1]


def file_digests(version_dir: Path) -> dict[str, str]:
    """sha256 of every file the build wrote; for the manifest, of everything but its timings and date."""
    out = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(version_dir.iterdir())
        if p.name != "manifest.json"
    }
    manifest = json.loads((version_dir / "manifest.json").read_text(encoding="utf-8"))
    for key in ("timings", "created", "card_path"):
        manifest.pop(key, None)
    out["manifest.json"] = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    return out


def words(rng: np.random.Generator, n: int) -> str:
    vocab = ["alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "paper", "green", "quick", "slow", "tree"]
    return " ".join(vocab[i] for i in rng.integers(0, len(vocab), n))


CARD = """\
name: sharded
mode: instruction
tasks:
  - name: qa
    source: {path: shards/*.parquet}
    templates: [qa/ask]
  - name: notes
    source: {path: notes.jsonl, id_column: key}
    templates: [qa/ask]
    columns: {question: text, answer: reply}
  - name: held
    source: {path: held.jsonl}
    templates: [qa/ask]
    held_out: true
templates_dir: tpl
mixture: {strategy: examples_proportional, total: 500, seed: 3}
filters:
  quality: {min_chars: 30}
  dedup:
    exact: {scope: both}
    near: {threshold: 0.7}
  decontaminate:
    ngram: 8
    benchmarks: [{name: bench, path: bench.jsonl, fields: [q]}]
split: {eval_fraction: 0.1, seed: 5}
output: {dir: out}
"""

TEMPLATE = """\
family: qa
templates:
  - id: qa/ask
    inputs: [question, answer]
    prompt: "Question: {{ question }}"
    completion: "{{ answer }}"
"""


def sharded_project(root: Path) -> Path:
    """Three Parquet shards (several row groups each) with exact and near duplicates across shards, a JSON Lines
    task keyed by an id column, a held-out task, a benchmark that contaminates a few rows, short rows."""
    rng = np.random.default_rng(7)
    (root / "shards").mkdir(parents=True)
    (root / "tpl" / "qa").mkdir(parents=True)
    (root / "tpl" / "qa" / "ask.yaml").write_text(TEMPLATE, encoding="utf-8")
    base = [words(rng, 30) for _ in range(60)]
    n = 0
    for shard in range(3):
        rows = []
        for _ in range(110):
            if n % 9 == 0:
                text = base[n % 60]  # an exact copy of an earlier row
            elif n % 7 == 0:
                parts = base[n % 60].split()
                parts[int(rng.integers(0, 30))] = "changed"
                text = " ".join(parts)  # a near copy
            elif n % 31 == 0:
                text = "hi"  # too short for quality
            else:
                text = words(rng, 30)
            rows.append({"question": text, "answer": f"answer {len(text) % 13}"})
            n += 1
        pl.DataFrame(rows).write_parquet(root / "shards" / f"part-{shard}.parquet", row_group_size=25)
    with (root / "notes.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(150):
            fh.write(json.dumps({"key": f"n{i:04d}", "text": words(rng, 20), "reply": f"r{i % 5}"}) + "\n")
    with (root / "held.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(40):
            fh.write(json.dumps({"question": words(rng, 12), "answer": str(i)}) + "\n")
    bench = [" ".join(base[k].split()[:12]) for k in (3, 17)]
    (root / "bench.jsonl").write_text("".join(json.dumps({"q": q}) + "\n" for q in bench), encoding="utf-8")
    (root / "card.yaml").write_text(CARD, encoding="utf-8")
    return root / "card.yaml"


def build_in(workdir: Path, card: Path, **kwargs: object) -> tuple[str, dict[str, str]]:
    cwd = Path.cwd()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    try:
        result = build(card, force=True, **kwargs)  # type: ignore[arg-type]
        return result.version_id, file_digests(result.version_dir.resolve())
    finally:
        os.chdir(cwd)


def test_the_fixture_is_really_partitioned(tmp_path: Path) -> None:
    from cardtune.curate.card.load import load_card
    from cardtune.curate.inputs import resolve_inputs

    card = load_card(sharded_project(tmp_path))
    inputs = resolve_inputs(card)
    qa, notes = card.tasks[0], card.tasks[1]
    assert len(plan_parts(qa, inputs.sources["qa"], False, 0, rows=25)) == 3 * 5  # row groups of 3 files
    assert len(plan_parts(notes, inputs.sources["notes"], False, 0, rows=3)) > 3  # byte ranges of one file


def test_workers_and_partition_sizes_never_change_a_byte(tmp_path: Path) -> None:
    card = sharded_project(tmp_path / "proj")
    reference = build_in(tmp_path / "a", card, workers=1)
    manifest = json.loads((tmp_path / "a" / "out" / "sharded" / reference[0] / "manifest.json").read_text())
    drops = {f["name"]: sum(f["dropped"].values()) for f in manifest["counts"]["filters"]}
    assert all(drops[name] > 0 for name in ("quality", "exact_dedup", "near_dedup", "decontaminate")), drops
    assert build_in(tmp_path / "b", card, workers=1, partition_rows=7) == reference
    assert build_in(tmp_path / "c", card, workers=2, partition_rows=25) == reference


def test_shuffle_buckets_and_verification_chunks_never_change_a_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver's threaded steps (with 2 workers the driver uses 2 threads): many small shuffle buckets and
    near-dedup verification chunks give the bytes of one bucket and one chunk on one thread."""
    from cardtune.curate import cores
    from cardtune.curate.execute import spill, writer
    from cardtune.curate.filters import minhash, near_dedup

    card = sharded_project(tmp_path / "proj")
    reference = build_in(tmp_path / "a", card, workers=1)
    buckets: list[str] = []
    chunks: list[int] = []
    threads: list[bool] = []  # whether each chunk was verified on a driver thread (not the main thread)
    real_write, real_jaccard = spill.write, minhash.exact_jaccard

    def counting_write(frame: pl.DataFrame, file: Path) -> None:
        if file.name.startswith("bucket-"):
            buckets.append(file.name)
        real_write(frame, file)

    def counting_jaccard(texts: pl.Series, a: np.ndarray, *rest: object) -> np.ndarray:
        chunks.append(len(a))
        threads.append(threading.current_thread().name.startswith("ThreadPoolExecutor"))
        return real_jaccard(texts, a, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "BUCKET_ROWS", 16)
    monkeypatch.setattr(near_dedup, "PAIRS_PER_CHUNK", 2)
    monkeypatch.setattr(cores, "usable_cores", lambda: 4)
    monkeypatch.setattr(spill, "write", counting_write)
    monkeypatch.setattr(minhash, "exact_jaccard", counting_jaccard)
    assert build_in(tmp_path / "b", card, workers=2) == reference  # 2 workers: the driver's steps on 2 threads
    assert len({name.split("-")[1] for name in buckets}) > 10  # the train split went through many buckets
    assert len(chunks) > 2 and max(chunks) <= 2  # and the candidate pairs through many chunks
    assert set(threads) == {True}  # the chunks were verified on the driver's threads (in the main thread for the
    # reference build: one worker keeps the driver on one thread)


HF_CARD = """\
name: disk
mode: instruction
tasks:
  - {name: qa, source: {path: ds, split: train}, templates: [qa/ask]}
templates_dir: tpl
filters:
  dedup: {exact: {scope: both}, near: {threshold: 0.7}}
split: {eval_fraction: 0.1, seed: 2}
output: {dir: out}
"""


def test_a_save_to_disk_folder_is_read_in_row_ranges(tmp_path: Path) -> None:
    """A ``datasets`` folder is partitioned into row ranges of its memory-mapped table: same bytes as one read."""
    datasets = pytest.importorskip("datasets")
    from cardtune.curate.card.load import load_card
    from cardtune.curate.inputs import resolve_inputs

    rng = np.random.default_rng(3)
    base = [words(rng, 25) for _ in range(40)]
    rows = [{"question": base[i % 40] if i % 6 == 0 else words(rng, 25), "answer": f"a{i % 7}"} for i in range(230)]
    root = tmp_path / "proj"
    (root / "tpl" / "qa").mkdir(parents=True)
    (root / "tpl" / "qa" / "ask.yaml").write_text(TEMPLATE, encoding="utf-8")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(root / "ds"))
    (root / "card.yaml").write_text(HF_CARD, encoding="utf-8")
    card = load_card(root / "card.yaml")
    parts = plan_parts(card.tasks[0], resolve_inputs(card).sources["qa"], False, 0, rows=40)
    assert [p.rows for p in parts] == [(lo, min(40, 230 - lo)) for lo in range(0, 230, 40)] and parts[0].path is None
    whole = build_in(tmp_path / "whole", root / "card.yaml", workers=1)
    manifest = json.loads((tmp_path / "whole" / "out" / "disk" / whole[0] / "manifest.json").read_text())
    drops = {f["name"]: sum(f["dropped"].values()) for f in manifest["counts"]["filters"]}
    assert drops["near_dedup"] > 0, drops  # copies across partitions
    assert build_in(tmp_path / "ranges", root / "card.yaml", workers=1, partition_rows=40) == whole
    assert build_in(tmp_path / "two", root / "card.yaml", workers=2, partition_rows=40) == whole


@pytest.mark.slow
def test_the_example_cards_build_the_same_on_two_workers(tmp_path: Path) -> None:
    for name in ("demo", "flan-mini"):
        card = ROOT / "data_cards" / f"{name}.yaml"
        one = build_in(tmp_path / name / "one", card, workers=1)
        two = build_in(tmp_path / name / "two", card, workers=2, partition_rows=40)
        assert one == two, name


@pytest.mark.slow
def test_ray_gives_the_same_bytes(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'cardtune[ray]')")
    from cardtune.curate.execute.executors import RayExecutor

    card = sharded_project(tmp_path / "proj")
    reference = build_in(tmp_path / "local", card, workers=1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with RayExecutor() as executor:
            assert build_in(tmp_path / "ray", card, executor=executor, partition_rows=40) == reference
            flan = ROOT / "data_cards" / "flan-mini.yaml"
            assert build_in(tmp_path / "flan-ray", flan, executor=executor) == build_in(
                tmp_path / "flan-local", flan, workers=1
            )
    finally:
        ray.shutdown()


def test_a_ray_address_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed")
    card = sharded_project(tmp_path / "proj")
    proc = subprocess.run(
        [sys.executable, "-m", "cardtune", "build", str(card), "--executor", "ray", "--address", "127.0.0.1:9"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "127.0.0.1:9" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_executor_is_refused(tmp_path: Path) -> None:
    from cardtune.curate.execute.executors import make_executor

    with pytest.raises(UserInputError, match="unknown executor 'spark'"):
        make_executor("spark")
    with pytest.raises(UserInputError, match="--address is for --executor ray"):
        make_executor("local", address="x:1")


def test_an_error_in_a_worker_names_the_first_bad_row(tmp_path: Path) -> None:
    card = sharded_project(tmp_path / "proj")
    text = (tmp_path / "proj" / "tpl" / "qa" / "ask.yaml").read_text(encoding="utf-8")
    (tmp_path / "proj" / "tpl" / "qa" / "ask.yaml").write_text(
        text.replace("{{ answer }}", "{{ answer | int // (answer | length - 8) }}"), encoding="utf-8"
    )
    messages = []
    for workers in (1, 2):
        with pytest.raises(UserInputError) as info:
            build_in(tmp_path / f"w{workers}", card, workers=workers, partition_rows=25)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "qa:0" in messages[0]
    assert not (tmp_path / "w1" / "out" / "sharded").exists() or not any((tmp_path / "w1" / "out").rglob("*.parquet"))


@pytest.mark.slow
def test_a_killed_worker_fails_the_build_and_leaves_nothing(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    card = sharded_project(tmp_path / "proj")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cardtune", "build", str(card), "--workers", "2", "--partition-rows", "3", "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not killed:
        for child in psutil.Process(proc.pid).children(recursive=True):
            if "multiprocessing" in " ".join(child.cmdline()) and "resource_tracker" not in " ".join(child.cmdline()):
                child.send_signal(signal.SIGKILL)
                killed = True
                break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    if not killed:
        pytest.skip("the build finished before a worker could be killed")
    assert proc.returncode == 1, err
    assert "worker process died" in err and "Traceback" not in err
    out = tmp_path / "out" / "sharded"
    assert not out.exists() or not any(p for p in out.iterdir())  # no version, no staging or spill left
    shutil.rmtree(tmp_path / "proj")
