"""datatrove's MinHash near dedup on a list of texts: the reference ``bench_dedup.py`` compares cardtune with.

datatrove is a benchmark-only dependency, not one of cardtune's (nor in pyproject's dev extra)::

    .venv/bin/pip install 'datatrove[processing]' spacy

Its documented four-stage pipeline, each stage through ``LocalPipelineExecutor`` in a temporary folder, with
``MinhashConfig(n_grams=5, num_buckets=16, hashes_per_bucket=8)`` (128 hashes, 16 bands of 8 rows):

1. signatures — ``ParquetReader`` + ``MinhashDedupSignature``, one task per input shard (``tasks`` shards);
2. buckets — ``MinhashDedupBuckets``, one task per band (datatrove needs a multiple of ``num_buckets``);
3. cluster — ``MinhashDedupCluster``, one task (datatrove requires it);
4. filter — ``ParquetReader`` + ``MinhashDedupFilter`` with the dropped documents to an exclusion writer.

Every stage runs ``tasks`` worker processes at a time. The measured time covers the four stages (reading the
input shards included), not writing them. datatrove has no verification step: every pair that shares one band
is a duplicate. Its text normalization (lowercase, no punctuation, whitespace, numbers/weekdays/months) and
spaCy's English word tokenizer give the same 5-word shingles as ``bench_dedup.shingles`` on the benchmark
corpus (lowercase letter words, spaces and newlines).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

INSTALL = ".venv/bin/pip install 'datatrove[processing]' spacy"
STAGES = ("signatures", "buckets", "cluster", "filter")


def missing() -> list[str]:
    """The modules the reference needs that are not installed (empty: it can run)."""
    return [m for m in ("datatrove", "spacy", "xxhash", "pyarrow") if importlib.util.find_spec(m) is None]


@dataclass(frozen=True)
class Result:
    dropped: npt.NDArray[np.bool_]
    seconds: float  # the four stages
    stages: dict[str, float]  # seconds per stage
    tokenize_share: float  # share of the signature computation spent in normalization + spaCy tokenization


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """datatrove logs every task at INFO to stderr (and its workers inherit the descriptor): send it to a file."""
    saved = os.dup(2)
    with open(path, "ab") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def run_datatrove(texts: list[str], *, tasks: int = 2, log: Path | None = None) -> Result:
    """Dedup ``texts`` with datatrove; ``dropped[i]`` is True for every document it removes."""
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    config = MinhashConfig(n_grams=5, num_buckets=16, hashes_per_bucket=8)
    with tempfile.TemporaryDirectory(prefix="bench-datatrove-") as tmp:
        root = Path(tmp)
        (root / "input").mkdir()
        for shard in range(tasks):  # contiguous shards: shard k holds documents [k·n/tasks, (k+1)·n/tasks)
            lo, hi = shard * len(texts) // tasks, (shard + 1) * len(texts) // tasks
            frame = pl.DataFrame({"id": [str(i) for i in range(lo, hi)], "text": texts[lo:hi]})
            frame.write_parquet(root / "input" / f"{shard:05d}.parquet")
        pipelines = {
            "signatures": (
                [
                    ParquetReader(str(root / "input")),
                    MinhashDedupSignature(output_folder=str(root / "sigs"), config=config),
                ],
                tasks,
            ),
            "buckets": (
                [
                    MinhashDedupBuckets(
                        input_folder=str(root / "sigs"), output_folder=str(root / "buckets"), config=config
                    )
                ],
                config.num_buckets,
            ),
            "cluster": (
                [
                    MinhashDedupCluster(
                        input_folder=str(root / "buckets"), output_folder=str(root / "remove"), config=config
                    )
                ],
                1,
            ),
            "filter": (
                [
                    ParquetReader(str(root / "input")),
                    MinhashDedupFilter(
                        input_folder=str(root / "remove"),
                        exclusion_writer=ParquetWriter(str(root / "removed")),
                    ),
                ],
                tasks,
            ),
        }
        stages: dict[str, float] = {}
        log = log or root / "datatrove.log"
        for name in STAGES:
            pipeline, n_tasks = pipelines[name]
            executor = LocalPipelineExecutor(
                pipeline, tasks=n_tasks, workers=min(tasks, n_tasks), logging_dir=str(root / "logs" / name)
            )
            t0 = time.perf_counter()
            try:
                with _stderr_to(log):
                    executor.run()
            except Exception:
                print(f"datatrove stage {name} failed; the end of its log:\n" + log.read_text()[-3000:])
                raise
            stages[name] = time.perf_counter() - t0
            if (
                not (root / "logs" / name / "completions").is_dir()
                or len(list((root / "logs" / name / "completions").iterdir())) != n_tasks
            ):
                raise RuntimeError(f"datatrove stage {name}: not every task completed; see {log}")
        dropped = np.zeros(len(texts), dtype=np.bool_)
        for path in sorted((root / "removed").glob("*.parquet")):
            dropped[pl.read_parquet(path, columns=["id"])["id"].cast(pl.Int64).to_numpy()] = True
    return Result(dropped, sum(stages.values()), stages, _tokenize_share(texts, config))


def _tokenize_share(texts: list[str], config: object, sample: int = 2_000) -> float:
    """Where stage 1 spends its time: normalization + word tokenization over the whole signature computation,
    timed in this process on the first ``sample`` documents with datatrove's own objects."""
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature
    from datatrove.utils.text import simplify_text

    with tempfile.TemporaryDirectory() as tmp:
        step = MinhashDedupSignature(output_folder=tmp, config=config)  # type: ignore[arg-type]
        step.word_tokenizer.word_tokenize("warm up")  # spaCy loads on first use
        t_tok = t_all = 0.0
        for text in texts[:sample]:  # interleaved per document, so a change in machine load hits both alike
            t0 = time.perf_counter()
            step.word_tokenizer.word_tokenize(simplify_text(text, step.config.norm_config))
            t1 = time.perf_counter()
            shingles = step.get_shingles(text)
            if shingles.size:
                step.get_signature(shingles)
            t_tok += t1 - t0
            t_all += time.perf_counter() - t1
    return t_tok / t_all if t_all else float("nan")
