"""Runs as models: reload any run, stack task adapters on a tuned base, and merge an adapter into full weights.

The "swappable task module" pattern is two cards: one tunes a base (say instruction tuning, any method), the
next sets ``train.base: runs/<that run>`` and trains a new LoRA on top of it. The base run is loaded merged (its
adapter folded into the weights), so the new adapter is small and the base stays shared: many task runs point at
one base run, and ``load_run`` rebuilds base + adapter on demand. ``cardtune adapters merge RUN`` writes one
self-contained model (weights + tokenizer) that any Hugging Face tool loads.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from cardtune.curate.card.schema import Card
from cardtune.curate.errors import UserInputError
from cardtune.curate.inputs import resolve_train_inputs
from cardtune.train import models
from cardtune.train.record import RunRecord, parse_run

RUN_JSON = "run.json"


def read_run(run_dir: str | Path) -> RunRecord:
    """``run.json`` of a complete run; a clear error for a missing or unfinished run directory, a corrupt
    ``run.json``, or one of another format."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        hint = ""
        partial = run_dir.with_name(f".{run_dir.name}.partial")
        if partial.exists():
            hint = " (an interrupted run exists; finish it with `cardtune tune CARD --resume`)"
        raise UserInputError(f"{run_dir}: no such run directory{hint}")
    path = run_dir / RUN_JSON
    if (run_dir / "manifest.json").is_file() and not path.is_file():
        raise UserInputError(
            f"{run_dir}: a dataset version, not a run; pass the run directory `cardtune tune` printed (under runs/)"
        )
    if not path.is_file() or not (run_dir / "model").is_dir():
        raise UserInputError(f"{run_dir}: incomplete run (no {RUN_JSON} or model/); it did not finish")
    return parse_run(path)


def load_run(run_dir: str | Path, *, merged: bool = False) -> models.Loaded:
    """A run's model and tokenizer, ready to generate: full weights, or base + adapter (merged if asked)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    info = read_run(run_dir)
    model_dir = run_dir / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model: Any
    if info.method == "full":
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    else:
        from peft import PeftModel

        base = _base_model(run_dir, info)
        models.fit_embeddings(base, len(tokenizer))  # end-of-turn tokens the run added (train.chat_template)
        model = PeftModel.from_pretrained(base, model_dir)
        if merged:
            if info.method != "lora":
                raise UserInputError(
                    f"{run_dir}: a {info.method} run cannot be merged into weights (only LoRA adapters can)"
                )
            model = model.merge_and_unload()
    loaded = models.Loaded(model, tokenizer, str(run_dir), is_default=False)
    models.add_stop_tokens(_generation_owner(model), list(info.stop_token_ids))
    model.eval()
    return loaded


def load_start(run_dir: str | Path) -> models.Loaded:
    """The model a run started from, before its first step: its base run (merged), the embedded base it saved,
    or ``train.model`` loaded again with the run's seed (the embedded default model is initialized the same way)."""
    from transformers import AutoTokenizer

    run_dir = Path(run_dir)
    info = read_run(run_dir)
    model = _base_model(run_dir, info)
    loaded = models.Loaded(model, AutoTokenizer.from_pretrained(run_dir / "model"), str(run_dir), is_default=False)
    models.add_stop_tokens(_generation_owner(model), list(info.stop_token_ids))
    model.eval()
    return loaded


def _generation_owner(model: Any) -> Any:
    return model if hasattr(model, "generation_config") else model.get_base_model()


def _base_model(run_dir: Path, info: RunRecord) -> Any:
    from transformers import AutoModelForCausalLM

    if info.base_model:
        return AutoModelForCausalLM.from_pretrained(run_dir / info.base_model)
    if info.base_run:
        return load_run(info.base_run, merged=True).model
    return models.load(info.model_source or info.model, seed=info.seed).model


def load_base(card: Card) -> models.Loaded:
    """``train.base``: the earlier run, merged, as the starting model of a new run."""
    run_dir = resolve_train_inputs(card).base
    assert run_dir is not None
    info = read_run(run_dir)
    if info.method == "prompt_tuning":
        raise UserInputError(
            [card.issue(("train", "base"), f"{run_dir} is a prompt-tuning run; a base must be a full or LoRA run")]
        )
    loaded = load_run(run_dir, merged=True)
    loaded.model.train()
    return models.Loaded(loaded.model, loaded.tokenizer, str(run_dir.resolve()), is_default=False)


def merge(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write the run's adapter merged into its base as one model directory (default ``RUN/merged``)."""
    run_dir = Path(run_dir)
    info = read_run(run_dir)
    if info.method == "full":
        raise UserInputError(f"{run_dir}: a full fine-tuning run already holds full weights in {run_dir / 'model'}")
    target = Path(output) if output is not None else run_dir / "merged"
    if target.exists():
        raise UserInputError(f"{target}: already exists; remove it or pass --output")
    from cardtune.train.progress import quiet_libraries

    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with quiet_libraries():
            loaded = load_run(run_dir, merged=True)
            loaded.model.save_pretrained(tmp)
            loaded.tokenizer.save_pretrained(tmp)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def expose_head_bias(model: Any) -> None:
    """Let TRL's fused LM head read ``lm_head.bias`` through PEFT's ``TrainableTokensWrapper``.

    LoRA trains the rows of added tokens with ``trainable_token_indices``; with tied embeddings PEFT wraps the
    output head as well, and the wrapper forwards ``weight`` (the merged, trainable rows) but not ``bias``, which
    TRL's chunked loss reads directly. The wrapped head's own bias (``None`` for tied heads) is set on the wrapper
    as a plain attribute, so no parameter is registered twice.
    """
    head = model.get_output_embeddings()
    if head is None or type(head).__name__ != "TrainableTokensWrapper":
        return
    try:
        head.bias  # noqa: B018 - the attribute access is the check
    except AttributeError:
        object.__setattr__(head, "bias", getattr(head.original_module, "bias", None))
