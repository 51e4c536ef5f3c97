"""Overhead of ``cardtune tune`` over a plain TRL script: same model, same data, same steps, one process.

Both paths load the same saved copy of the embedded tiny model from disk, read the same dataset version, and
train with the same ``SFTConfig`` values for the same number of steps at the same seed, then save the model.
cardtune additionally runs its pre-flight checks (parity, lengths), draws its progress bar off, and writes
``run.json``/logs and the atomic run directory. Rounds alternate (after one warm-up of each) and the median
and fastest wall times of each path are compared (the fastest is the least disturbed by other load on a shared
machine); the per-step losses must be identical.

    .venv/bin/python benchmarks/bench_tune_overhead.py [--steps 60] [--rounds 3] [--method lora] [--data chat]

Plain TRL gets the rows as a ``messages`` dataset with ``assistant_only_loss=True`` (the built-in ChatML
template's ``{% generation %}`` blocks): exactly the tokens cardtune trains — each assistant span through its
end-of-turn token, not the newline ChatML renders after it (TRL's prompt/completion form would train that too,
and the losses would differ by it). ``--data chat``: 3-turn conversations, every assistant turn trained —
cardtune's default (``train.turns: all``). The per-step losses must be identical in both.

Target (DESIGN.md §11): ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import yaml


def write_version(root: Path, rows: int, turns: int = 1) -> Path:
    """A dataset version in the store's format (instruction mode; ``turns`` user/assistant exchanges per row),
    manifest written last."""
    r = random.Random(0)
    words = ["red", "blue", "green", "cat", "dog", "sun", "tree", "book", "city", "river", "the", "of"]
    data = []
    for i in range(rows):
        conv = []
        for _ in range(turns):
            text = " ".join(r.choice(words) for _ in range(r.randint(8, 40)))
            answer = " ".join(r.choice(words) for _ in range(r.randint(1, 12)))
            conv += [{"role": "user", "content": f"Summarize: {text}"}, {"role": "assistant", "content": answer}]
        data.append(
            {
                "task": "t",
                "template_id": "t/0",
                "source_ref": f"t:{i}",
                "answer_choices": None,
                "prompt": conv[:-1],
                "completion": conv[-1:],
            }
        )
    msg = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    schema = {
        "task": pl.String,
        "template_id": pl.String,
        "source_ref": pl.String,
        "answer_choices": pl.List(pl.String),
        "prompt": msg,
        "completion": msg,
    }
    vdir = root / "bench" / ("b" * 64)
    vdir.mkdir(parents=True)
    pl.DataFrame(data, schema=schema).write_parquet(vdir / "train.parquet")
    for split in ("eval", "heldout"):
        pl.DataFrame(schema=schema).write_parquet(vdir / f"{split}.parquet")
    pl.DataFrame(schema={"task": pl.String}).write_parquet(vdir / "rejects.parquet")
    (vdir / "manifest.json").write_text(_manifest(vdir.name, rows).to_json(), encoding="utf-8")
    return vdir


def _manifest(version_id: str, rows: int) -> Any:
    """A minimal valid manifest (one trained task, every row in train), built with the store's model."""
    from cardtune.curate.store import manifest as m
    from cardtune.curate.store.fingerprint import CURATION_FORMAT

    per_task = {"t": rows}
    plan = m.PlanEntry(
        task="t", available=rows, rate=float(rows), share=1.0, target=rows, repeats=0, remainder=rows,
        cap_binds=False, upsampled=False, avg_tokens=0.0, estimated_tokens=0,
    )  # fmt: skip
    return m.Manifest(
        version_id=version_id,
        name="bench",
        card_version="0.1.0",
        mode="instruction",
        cardtune="bench",
        created="2026-01-01T00:00:00+00:00",
        card_path=None,
        inputs=m.Inputs(card={}, templates={}, sources={}, other={}, curation_format=CURATION_FORMAT),
        tasks=(m.TaskEntry(name="t", held_out=False, templates=("t/0",)),),
        counts=m.Counts(
            source=per_task, rendered=per_task, filters=(), splits=m.Splits(train=per_task, eval={}, heldout={})
        ),
        tokens=m.Tokens(unit="words", train={}),
        mixture=m.MixturePlan(strategy="fixed", plan=(plan,)),
        filter_reports={},
        timings=(),
    )


def plain_trl(model_dir: Path, version: Path, out: Path, sft: dict[str, Any], method: str) -> list[float]:
    """What a user would write by hand with TRL."""
    import pyarrow.parquet as pq
    from datasets import Dataset
    from peft import LoraConfig, PromptTuningConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    # In memory, as cardtune reads versions: `Dataset.from_parquet` would let later rounds reuse datasets'
    # on-disk map cache and skip tokenization, which measures the cache, not the trainer.
    train = Dataset(pq.read_table(version / "train.parquet")).select_columns(["prompt", "completion"])
    # TRL's conversational language-modeling form, every assistant turn by the template's generation blocks: the
    # tokens cardtune trains (each assistant span up to its end-of-turn; not the newline the template renders
    # after it, which TRL's prompt/completion form would train too), for single-turn and chat rows alike
    train = train.map(lambda r: {"messages": r["prompt"] + r["completion"]}, remove_columns=["prompt", "completion"])
    sft = {**sft, "assistant_only_loss": True}
    peft = {
        "full": None,
        "lora": LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear"),
        "prompt_tuning": PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20),
    }[method]
    args = SFTConfig(output_dir=str(out), **sft)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer, peft_config=peft)
    trainer.remove_callback(PrinterCallback)  # cardtune prints nothing per step either (progress=False)
    trainer.train()
    trainer.save_model(str(out / "model"))
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


def with_cardtune(card: Path, version: Path, out: Path) -> list[float]:
    from cardtune.train.run import tune

    result = tune(card, output=out, version_dir=version, progress=False)
    logs = (result.run_dir / "log_history.jsonl").read_text(encoding="utf-8").splitlines()
    return [e["loss"] for e in map(json.loads, logs) if "loss" in e]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=480)
    parser.add_argument("--method", choices=["full", "lora", "prompt_tuning"], default="lora")
    parser.add_argument("--data", choices=["single", "chat"], default="single", help="chat: 3-turn conversations")
    ns = parser.parse_args()

    from cardtune.train import config as cfg
    from cardtune.train.models import default_model, default_tokenizer
    from cardtune.train.progress import quiet_libraries

    root = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    model_dir = root / "model"
    tok = default_tokenizer()
    default_model(tok, seed=0).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    chat = ns.data == "chat"
    version = write_version(root / "datasets", ns.rows, turns=3 if chat else 1)
    user_sft = {"max_steps": ns.steps, "per_device_train_batch_size": 8, "logging_steps": 1}
    card = root / "card.yaml"
    card.write_text(
        yaml.safe_dump(
            {
                "name": "bench",
                "tasks": [{"name": "t", "source": {"path": "unused.jsonl"}}],
                "train": {"model": str(model_dir), "method": ns.method, "sft": user_sft},
            }
        ),
        encoding="utf-8",
    )
    from cardtune.curate.card.load import load_card

    # The plain script gets exactly the SFTConfig values cardtune resolves (same lr, precision, seed, ...).
    sft = cfg.sft_kwargs(load_card(card), on_gpu=False)

    times: dict[str, list[float]] = {"cardtune": [], "trl": []}
    losses: dict[str, list[float]] = {}
    with quiet_libraries():
        for i in range(ns.rounds + 1):  # round 0 warms up imports and caches
            for name in ("trl", "cardtune") if i % 2 else ("cardtune", "trl"):
                out = root / f"{name}-{i}"
                start = time.perf_counter()
                if name == "trl":
                    got = plain_trl(model_dir, version, out, sft, ns.method)
                else:
                    got = with_cardtune(card, version, out)
                elapsed = time.perf_counter() - start
                if i:
                    times[name].append(elapsed)
                losses.setdefault(name, got)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    ratio = best["cardtune"] / best["trl"]
    same = losses["cardtune"] == losses["trl"]
    print(f"method={ns.method} data={ns.data} steps={ns.steps} rows={ns.rows} rounds={ns.rounds}")
    for name, label in (("trl", "plain TRL"), ("cardtune", "cardtune ")):
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{label}: fastest {best[name]:.2f}s  median {med[name]:.2f}s  [{runs}]")
    print(
        f"wall-time ratio cardtune/TRL = {ratio:.3f} fastest, {med['cardtune'] / med['trl']:.3f} median  (target <= 1.05)"
    )
    print(f"identical per-step loss at the same seed: {same}  (final {losses['cardtune'][-1]:.4f})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
