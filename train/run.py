"""``tune(card)``: build or reuse the version, check everything that silently ruins runs, train with TRL, record.

The straight line: card → version (``build``) → model + tokenizer → chat template → parity check → length check →
``SFTConfig`` + PEFT config → ``SFTTrainer(...)`` (constructed before anything is written, so a config PEFT or TRL
rejects is a clear error with ``runs/`` untouched) → ``train()`` → save → ``run.json``. No trainer subclass.

Run directory ``<output>/<card>-<version8>-<UTC time>/``: ``model/`` (full weights or the adapter, plus the
tokenizer), ``base_model/`` (only for the embedded default model under an adapter), ``card.yaml`` (the exact
card), ``run.json`` (dataset version, library versions, seed, device, metrics, timings, trainable params, tokens),
``trainer_state.json`` and ``log_history.jsonl``. It is trained in ``<output>/.<name>.partial/`` (checkpoints
under ``checkpoints/``) and renamed into place at the end, so a run directory without a leading dot is always
complete; ``--resume`` continues the newest partial run of the same card and version from its last checkpoint.
Under ``accelerate launch`` every process trains; only the main process writes.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from cardtune.curate.card.load import load_card
from cardtune.curate.card.schema import Card
from cardtune.curate.errors import UserInputError
from cardtune.curate.inputs import resolve_train_inputs
from cardtune.train import adapters, chat, data, lengths, models, parity, pertask
from cardtune.train import config as cfg
from cardtune.train.adapters import RUN_JSON
from cardtune.train.progress import quiet_libraries
from cardtune.train.record import DatasetRef, Device, Params, Parity, RunRecord, Timings

PARTIAL = ".partial"
LIBRARIES = ("cardtune", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers")


@dataclass(frozen=True)
class RunResult:
    """A finished run: its directory and its ``run.json`` (``None`` in the processes that do not write it)."""

    run_dir: Path
    info: RunRecord | None


def tune(
    card: Card | str | Path,
    *,
    output: str | Path = "runs",
    resume: bool = False,
    max_steps: int | None = None,
    version_dir: str | Path | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> RunResult:
    """Train on the card's dataset version and write a run directory. ``UserInputError`` for bad input.

    ``version_dir`` trains on that version instead of building the card's; ``callbacks`` are extra
    ``transformers.TrainerCallback`` objects (loggers, early stopping).
    """
    with quiet_libraries():
        return _tune(card, Path(output), resume, max_steps, version_dir, progress, callbacks)


def _tune(
    card: Card | str | Path,
    output: Path,
    resume: bool,
    max_steps: int | None,
    version_dir: str | Path | None,
    progress: bool,
    callbacks: Sequence[Any],
) -> RunResult:
    t0 = time.perf_counter()
    card = card if isinstance(card, Card) else load_card(card)
    cfg.check_sft_fields(card)
    version = data.open_version(version_dir if version_dir is not None else _build(card))
    if version.mode != card.mode:
        raise UserInputError(f"{version.dir}: a {version.mode}-mode version, but the card's mode is {card.mode}")
    train_rows = data.normalized(version.splits["train"], card.mode)
    if len(train_rows) == 0:
        raise UserInputError(f"{version.dir}: the train split has no rows")
    conversational = card.mode == "instruction"
    if not conversational and card.train.chat_template is not None:
        raise UserInputError([card.issue(("train", "chat_template"), "finetune mode uses no chat template")])
    if not conversational and card.train.chat_template_kwargs:
        raise UserInputError([card.issue(("train", "chat_template_kwargs"), "finetune mode uses no chat template")])

    import torch

    on_gpu = torch.cuda.is_available()
    kwargs = cfg.sft_kwargs(card, on_gpu=on_gpu, bf16_ok=on_gpu and torch.cuda.is_bf16_supported(), max_steps=max_steps)
    loaded = _load_model(card, on_gpu, bool(kwargs.get("trust_remote_code", False)))
    if conversational:
        spec = card.train.chat_template
        models.apply_chat_template_choice(
            loaded,
            resolve_train_inputs(card).chat_template,
            end_of_turn=spec.end_of_turn if spec is not None else (),
            add_special_tokens=spec is not None and spec.add_special_tokens,
            kwargs=card.train.chat_template_kwargs,
        )
    t_load = time.perf_counter()

    stops = models.stop_token_ids(loaded)
    columns = set(train_rows.column_names)
    tasks = train_rows["task"] if "task" in columns else [""] * len(train_rows)
    templates = train_rows["template_id"] if "template_id" in columns else [""] * len(train_rows)
    sample = train_rows.select(parity.sample_indices(tasks, templates, seed=card.train.seed)).to_list()
    policy = chat.TurnPolicy(card.train.turns, tuple(card.train.roles), card.train.train_on_eot)
    checked = parity.check_parity(
        loaded.tokenizer,
        sample,
        conversational=conversational,
        stop_ids=stops,
        seed=card.train.seed,
        kwargs=loaded.chat_template_kwargs,
        policy=policy,
    )
    train_rows, report = lengths.check_lengths(
        loaded.tokenizer,
        train_rows,
        conversational=conversational,
        max_length=kwargs.get("max_length"),
        overlong=card.train.overlong,
    )
    # `task` travels with the rows (per-task signal, train/pertask.py); TRL's remove_unused_columns drops it
    # before the collator, so only token ids reach the model

    def prepare(rows: Any, task: bool = True) -> Any:
        """Rows as the trainer takes them — train, eval and the per-task eval subsets alike: conversational rows
        tokenized as the parity check did (every assistant turn `train.turns` and `roles` train), so eval losses
        measure what training optimizes; `task` kept as a label when ``task`` (the training rows: per-task signal),
        `tools`/`source_ref` read, then dropped."""
        have = set(rows.column_names)
        extra = [c for c in ("tools", "source_ref") if conversational and c in have]
        rows = rows.select_columns(["prompt", "completion", *extra, *(["task"] if task and "task" in have else [])])
        if conversational:
            rows = chat.training_features(loaded.tokenizer, rows, loaded.chat_template_kwargs, stops, policy)
        return rows

    train_rows = prepare(train_rows)
    _check_prompt_tuning(card, loaded, kwargs.get("max_length"))
    say = _printer(progress and _launch_env(RANK_VARS, 0) == 0)
    say(f"parity: ok on {checked.rows_checked} rows (stop tokens {', '.join(checked.stop_tokens)})")
    if checked.turns_checked:
        say(f"parity: every assistant turn trained as its span ({checked.turns_checked} turns checked)")
    if any(checked.around_completion):
        say(f"parity: template text trained around the completion: {checked.around_completion!r}")
    for note in checked.notes:
        say(f"parity: note: {note}")
    say(report.message())
    t_checks = time.perf_counter()

    name, partial, checkpoint = _run_dir(output, card, version.id, resume)
    sft_config = cfg.make_sft_config(card, str(partial / "checkpoints"), kwargs)
    name = _agree(name)
    partial = output / f".{name}{PARTIAL}"
    sft_config.output_dir = str(partial / "checkpoints")
    main = sft_config.process_index == 0
    _check_joined(sft_config.world_size)

    stash = main and loaded.is_default and card.train.method != "full"
    base_tmp = _stash_default_base(loaded) if stash else None
    try:
        trainer = _make_trainer(card, loaded, sft_config, train_rows, version, prepare, progress and main)
        per_task_loss: pertask.PerTaskLoss | None = pertask.PerTaskLoss(seed=card.train.seed)
        if per_task_loss is not None and per_task_loss.attach(trainer):
            trainer.add_callback(per_task_loss)
        else:
            per_task_loss = None
        for callback in callbacks:
            trainer.add_callback(callback)
        if main:
            partial.mkdir(parents=True, exist_ok=True)
            (partial / "card.yaml").write_text(_card_text(card), encoding="utf-8")
            if base_tmp is not None and not (partial / "base_model").exists():
                shutil.move(str(base_tmp), partial / "base_model")
    finally:
        if base_tmp is not None and base_tmp.exists():
            shutil.rmtree(base_tmp, ignore_errors=True)

    t_train = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=checkpoint)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_interrupted_message(partial, card)) from None
    t_done = time.perf_counter()
    trainer.accelerator.wait_for_everyone()  # every rank's last checkpoint write ends before rank 0 renames the run
    signal = pertask.final_signal(
        trainer, per_task_loss, version.splits, _tokens_trained(trainer), functools.partial(prepare, task=False)
    )
    t_signal = time.perf_counter()
    trainer.save_model(str(partial / "model"))
    if not main:
        trainer.accelerator.wait_for_everyone()
        return RunResult(output / name, None)
    timings = Timings(
        load_s=t_load - t0,
        checks_s=t_checks - t_load,
        setup_s=t_train - t_checks,
        train_s=t_done - t_train,
        signal_s=t_signal - t_done,
        save_s=time.perf_counter() - t_signal,
        total_s=time.perf_counter() - t0,
    )
    info = _run_info(card, version, loaded, trainer, result, report, checked, kwargs, name, checkpoint, timings)
    info = info.model_copy(update={"per_task": signal})
    _write_logs(partial, trainer)
    (partial / RUN_JSON).write_text(info.to_json(), encoding="utf-8")
    shutil.rmtree(partial / "checkpoints", ignore_errors=True)
    final = output / name
    partial.rename(final)
    trainer.accelerator.wait_for_everyone()
    return RunResult(final, info)


def _build(card: Card) -> Path:
    from cardtune.curate.pipeline import build

    return Path(build(card).version_dir)


def _load_model(card: Card, on_gpu: bool, trust_remote_code: bool) -> models.Loaded:
    if card.train.base is not None:
        return adapters.load_base(card)
    return models.load(
        resolve_train_inputs(card).model_source,
        seed=card.train.seed,
        quantization=card.train.quantization,
        trust_remote_code=trust_remote_code,
        on_gpu=on_gpu,
    )


def _check_prompt_tuning(card: Card, loaded: models.Loaded, max_length: int | None) -> None:
    """What PEFT would only find out mid-training: virtual tokens that push sequences past the model's context."""
    if card.train.method != "prompt_tuning":
        return
    import inspect

    if "inputs_embeds" not in inspect.signature(loaded.model.forward).parameters:
        raise UserInputError(
            f"train.method: prompt_tuning needs a model whose forward accepts `inputs_embeds`; {loaded.spec!r} does not"
        )
    n = card.train.prompt_tuning.num_virtual_tokens
    ctx = getattr(loaded.model.config.get_text_config(), "max_position_embeddings", None)
    if ctx is not None and max_length is not None and n + max_length > ctx:
        raise UserInputError(
            [
                card.issue(
                    ("train", "prompt_tuning", "num_virtual_tokens"),
                    f"{n} virtual tokens + max_length {max_length} exceed the context of {loaded.spec!r} ({ctx} "
                    "positions): PEFT prepends the virtual tokens to every sequence; lower one of them",
                )
            ]
        )


def _make_trainer(
    card: Card,
    loaded: models.Loaded,
    args: Any,
    rows: Any,
    version: data.Version,
    prepare: Callable[..., Any],
    bar: bool,
) -> Any:
    from transformers import PrinterCallback
    from trl import SFTTrainer

    tok_dir = (
        _tokenizer_dir(loaded) if card.train.method == "prompt_tuning" and card.train.prompt_tuning.init_text else None
    )
    peft_config = cfg.make_peft_config(card.train, tok_dir or loaded.spec, loaded)
    eval_rows = None
    if args.eval_strategy != "no" and len(version.splits["eval"]):
        eval_rows = prepare(data.normalized(version.splits["eval"], card.mode), task=False)
    try:
        trainer = SFTTrainer(
            model=loaded.model,
            args=args,
            train_dataset=rows,
            eval_dataset=eval_rows,
            processing_class=loaded.tokenizer,
            peft_config=peft_config,
        )
    except (ValueError, TypeError, RuntimeError, KeyError, AttributeError) as exc:
        raise UserInputError(
            f"cannot set up {card.train.method} training of {loaded.spec!r} (TRL/PEFT said: {exc})"
        ) from None
    adapters.expose_head_bias(trainer.model)
    trainer.remove_callback(PrinterCallback)
    if bar:
        from cardtune.train.progress import RichProgress

        trainer.add_callback(RichProgress())
    return trainer


def _tokenizer_dir(loaded: models.Loaded) -> str:
    """PEFT's text init loads the tokenizer by path: give it one for the embedded tokenizer (deterministic)."""
    if not loaded.is_default:
        return loaded.spec
    import hashlib

    # keyed on the tokenizer's content, never on a fixed path: a changed tokenizer gets a new folder
    digest = hashlib.sha256(loaded.tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"cardtune-tokenizer-{digest}"
    if not (path / "tokenizer.json").is_file():  # written aside and renamed: other processes may read it meanwhile
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        loaded.tokenizer.save_pretrained(staging)
        try:
            staging.rename(path)
        except OSError:  # another process renamed its copy first (same content)
            shutil.rmtree(staging, ignore_errors=True)
    return str(path)


def _stash_default_base(loaded: models.Loaded) -> Path:
    """Save the embedded base model before PEFT wraps it (outside ``runs/``; moved in once training starts)."""
    path = Path(tempfile.mkdtemp(prefix="cardtune-base-"))
    loaded.model.save_pretrained(path)
    loaded.tokenizer.save_pretrained(path)
    return path


def _interrupted_message(partial: Path, card: Card) -> str:
    """What Ctrl-C (or SIGTERM) during training leaves, and how to continue."""
    last = last_complete_checkpoint(partial / "checkpoints")
    if last is None:
        return f"the interrupted run in {partial} has no checkpoint yet; `cardtune tune` starts it again"
    where = f"{card.path}" if card.path else "CARD"
    return (
        f"the interrupted run is kept in {partial} (last checkpoint {Path(last).name}); "
        f"`cardtune tune {where} --resume` continues it"
    )


def last_complete_checkpoint(root: Path) -> str | None:
    """The newest checkpoint under ``root`` that was saved completely (it has ``trainer_state.json``).

    A process killed while saving leaves a newer ``checkpoint-N`` without it; resuming from that one would fail
    on every try, so it is skipped — and the skip is said.
    """
    if not root.is_dir():
        return None
    steps = []
    for path in root.iterdir():
        if path.is_dir() and path.name.startswith("checkpoint-") and path.name[len("checkpoint-") :].isdigit():
            steps.append((int(path.name[len("checkpoint-") :]), path))
    for _, path in sorted(steps, reverse=True):
        if (path / "trainer_state.json").is_file():
            return str(path)
        print(
            f"skipping {path}: incomplete checkpoint (no trainer_state.json; the save was interrupted)", file=sys.stderr
        )
    return None


def _run_dir(output: Path, card: Card, version_id: str, resume: bool) -> tuple[str, Path, str | None]:
    """(run name, partial dir, checkpoint to resume from)."""
    prefix = f"{card.name}-{version_id[:8]}-"
    if resume:
        for partial in sorted(output.glob(f".{prefix}*{PARTIAL}"), reverse=True):
            last = last_complete_checkpoint(partial / "checkpoints")
            if last is not None:
                saved = (partial / "card.yaml").read_text(encoding="utf-8") if (partial / "card.yaml").exists() else ""
                if saved and saved != _card_text(card):
                    raise UserInputError(
                        f"{partial}: the card changed since this run started; resume needs the same card "
                        "(or start a new run without --resume)"
                    )
                return partial.name[1 : -len(PARTIAL)], partial, last
        raise UserInputError(
            f"nothing to resume: no interrupted run of {card.name} on version {version_id[:8]} with a checkpoint "
            f"under {output}/ (runs save checkpoints every `save_steps`)"
        )
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = prefix + stamp
    n = 1
    while (output / name).exists() or (output / f".{name}{PARTIAL}").exists():
        n += 1
        name = f"{prefix}{stamp}-{n}"
    return name, output / f".{name}{PARTIAL}", None


RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")  # torchrun, then MPI launchers
SIZE_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def _launch_env(names: tuple[str, ...], default: int) -> int:
    """The rank or world size a launcher set in the environment (before any process group exists)."""
    for var in names:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return default


def _check_joined(world_size: int) -> None:
    """Launched processes that did not form one group would each train alone and each write a run directory."""
    launched = _launch_env(SIZE_VARS, 1)
    if launched > 1 and world_size != launched:
        raise UserInputError(
            f"{launched} processes were launched, but training sees {world_size}: they did not join one process "
            "group (on CPU keep train.sft.use_cpu true, cardtune's default; on GPUs check the accelerate config)"
        )


def _agree(name: str) -> str:
    """Every process uses the main process's run name (their clocks may differ by a second)."""
    from accelerate import PartialState

    if PartialState().num_processes <= 1:
        return name
    from accelerate.utils import broadcast_object_list

    box = [name]
    broadcast_object_list(box, from_process=0)
    return str(box[0])


def _card_text(card: Card) -> str:
    if card.path is not None and card.path.is_file():
        return card.path.read_text(encoding="utf-8")
    import yaml

    return str(yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False))


def _printer(enabled: bool) -> Any:
    from cardtune._console import console

    def say(text: str) -> None:
        if enabled:
            console.print(text, markup=False)

    return say


def library_versions() -> dict[str, str]:
    """Versions of the libraries a run depends on."""
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = "not installed"
    return out


def _run_info(
    card: Card,
    version: data.Version,
    loaded: models.Loaded,
    trainer: Any,
    result: Any,
    report: lengths.LengthReport,
    checked: parity.ParityResult,
    kwargs: dict[str, Any],
    name: str,
    checkpoint: str | None,
    timings: Timings,
) -> RunRecord:
    import torch

    model = trainer.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    args = trainer.args
    device = Device(
        type=args.device.type,
        name=torch.cuda.get_device_name(0) if args.device.type == "cuda" else platform.processor() or "cpu",
        processes=args.world_size,
    )
    return RunRecord(
        run_id=name,
        card=card.name,
        card_path=str(card.path) if card.path else None,
        mode=card.mode,
        method=card.train.method,
        model=loaded.spec,
        model_source=_model_source(card),
        stop_token_ids=tuple(sorted(models.stop_token_ids(loaded))),
        base_model="base_model" if loaded.is_default and card.train.method != "full" else None,
        base_run=card.train.base,
        chat_template=card.train.chat_template.model_dump() if card.train.chat_template is not None else None,
        chat_template_kwargs=dict(card.train.chat_template_kwargs),
        dataset=DatasetRef(version_id=version.id, dir=str(version.dir.resolve())),
        tasks=version.manifest.tasks,
        seed=card.train.seed,
        device=device,
        versions=library_versions(),
        sft={k: v for k, v in kwargs.items() if isinstance(v, (str, int, float, bool, type(None)))},
        params=Params(trainable=trainable, total=total),
        tokens_trained=_tokens_trained(trainer),
        length_check=report.to_json(),
        parity=Parity(rows_checked=checked.rows_checked, stop_tokens=tuple(checked.stop_tokens)),
        metrics={k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
        global_step=trainer.state.global_step,
        resumed_from=Path(checkpoint).name if checkpoint else None,
        finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        timings=timings,
    )


def _tokens_trained(trainer: Any) -> int | None:
    """Tokens seen in training, from TRL's ``num_tokens`` log entries."""
    logs = [e for e in trainer.state.log_history if "num_tokens" in e]
    return int(logs[-1]["num_tokens"]) if logs else None


def _model_source(card: Card) -> str:
    """``train.model`` as something loadable from anywhere: an absolute path for local models."""
    inputs = resolve_train_inputs(card)
    return str(inputs.base.resolve()) if inputs.base is not None else inputs.model_source


def _write_logs(partial: Path, trainer: Any) -> None:
    trainer.state.save_to_json(str(partial / "trainer_state.json"))
    with open(partial / "log_history.jsonl", "w", encoding="utf-8") as fh:
        for entry in trainer.state.log_history:
            fh.write(json.dumps(entry) + "\n")
