"""``card.train`` + mode + device → ``trl.SFTConfig`` and a PEFT config. The one place training defaults live.

``train.sft`` maps onto ``SFTConfig``: cardtune sets the fields in ``DEFAULTS`` (the allow-list, shown by
``sft_kwargs``) per mode, method and device; any other real ``SFTConfig`` field passes through unchanged; a name
that is not a field is an error with "did you mean", and fields the card sets elsewhere (``seed``, ``output_dir``,
...) are errors that say where to set them. Values are checked by constructing the ``SFTConfig`` before any
training step.

Device rules: on CPU, fp32 (TRL 1.16 defaults to ``bf16=True`` even there), no activation checkpointing (TRL
defaults it on; it only saves memory at a ~20% time cost), and no packing or ``padding_free`` (without
FlashAttention varlen kernels, packed samples would attend to each other). On a GPU: bf16 where supported and
activation checkpointing, as TRL does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cardtune.curate.card.schema import Card
from cardtune.curate.errors import UserInputError
from cardtune.train.schema import Train
from cardtune.train.sft_fields import sft_key_problem

if TYPE_CHECKING:
    from cardtune.train.models import Loaded

# The allow-list: what cardtune chooses for you, before `train.sft` overrides.
COMMON: dict[str, Any] = {
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "max_length": 1024,
    "completion_only_loss": True,  # both modes train on the completion only
    "logging_steps": 10,
    "logging_first_step": True,
    "save_strategy": "steps",
    "save_steps": 200,
    "save_total_limit": 2,
    "eval_strategy": "no",
    "report_to": "none",
    "disable_tqdm": True,  # cardtune draws its own rich progress bar with the loss
    "dataloader_pin_memory": False,
}
BY_MODE: dict[str, dict[str, Any]] = {
    "instruction": {"num_train_epochs": 1},  # many tasks, one pass (FLAN-style)
    "finetune": {"num_train_epochs": 3},  # one or a few tasks, a few passes
}
BY_METHOD: dict[str, dict[str, Any]] = {
    "full": {"learning_rate": 2.0e-5},
    "lora": {"learning_rate": 2.0e-4},
    "prompt_tuning": {"learning_rate": 3.0e-2},  # soft prompts need a much larger step (PEFT's examples)
}
CPU: dict[str, Any] = {
    # processes started by torchrun / `accelerate launch` form one gloo group only with use_cpu; without it
    # each process trains alone as process 0 of 1 and every one of them writes a run directory
    "use_cpu": True,
    "bf16": False,
    "fp16": False,
    "activation_checkpointing": False,
    "packing": False,
    "padding_free": False,
}


def check_sft_fields(card: Card) -> None:
    """Unknown or reserved ``train.sft`` names → ``UserInputError`` at their exact lines."""
    problems = ((key, sft_key_problem(key)) for key in card.train.sft)
    issues = [card.issue(("train", "sft", key), problem) for key, problem in problems if problem is not None]
    if issues:
        raise UserInputError(issues)


def sft_kwargs(card: Card, *, on_gpu: bool, bf16_ok: bool = True, max_steps: int | None = None) -> dict[str, Any]:
    """The resolved ``SFTConfig`` keyword arguments (defaults, then ``train.sft``, then the CLI)."""
    check_sft_fields(card)
    kwargs: dict[str, Any] = {**COMMON, **BY_MODE[card.mode], **BY_METHOD[card.train.method]}
    if on_gpu:
        kwargs.update(bf16=bf16_ok, fp16=False, activation_checkpointing=card.train.method != "prompt_tuning")
    else:
        kwargs.update(CPU)
    kwargs.update(card.train.sft)
    if "gradient_checkpointing" in card.train.sft and "activation_checkpointing" not in card.train.sft:
        kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing")  # transformers 5's name
    kwargs["seed"] = card.train.seed
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    if not on_gpu:
        for key in ("packing", "padding_free"):
            if kwargs.get(key):
                raise UserInputError(
                    [
                        card.issue(
                            ("train", "sft", key),
                            "is a GPU option: without FlashAttention varlen kernels packed samples attend to "
                            "each other; remove it for CPU runs",
                        )
                    ]
                )
    return kwargs


def make_sft_config(card: Card, output_dir: str, kwargs: dict[str, Any]) -> Any:
    """Construct the ``SFTConfig`` (this validates every passthrough value)."""
    import warnings

    from trl import SFTConfig

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*gradient_checkpointing.*")
            return SFTConfig(output_dir=output_dir, run_name=card.name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise UserInputError([card.issue(("train", "sft"), f"invalid SFTConfig: {exc}")]) from None


def make_peft_config(train: Train, tokenizer_path: str | None = None, added: Loaded | None = None) -> Any:
    """``LoraConfig``, ``PromptTuningConfig`` or ``None`` (full fine-tuning).

    ``added`` (a ``models.Loaded`` whose vocabulary grew, e.g. by a declared end-of-turn token): LoRA also trains
    those tokens' embedding rows (PEFT ``trainable_token_indices``; the output rows too when they are not tied),
    else the new rows would stay at their initial values and the model could never learn to emit its stop token.
    """
    if train.method == "full":
        return None
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType

    if train.method == "lora":
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=train.lora.r,
            lora_alpha=train.lora.alpha,
            lora_dropout=train.lora.dropout,
            target_modules=train.lora.target_modules,
            trainable_token_indices=_new_token_rows(added),
        )
    pt = train.prompt_tuning
    if pt.init_text is None:
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=pt.num_virtual_tokens)
    return PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=pt.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT,
        prompt_tuning_init_text=pt.init_text,
        tokenizer_name_or_path=tokenizer_path,
    )


def _new_token_rows(loaded: Loaded | None) -> list[int] | dict[str, list[int]] | None:
    """PEFT's ``trainable_token_indices`` for the tokens added to ``loaded``'s vocabulary (``None``: none added).

    Tied input/output embeddings: the ids (PEFT ties the output rows to the trained input rows); untied: the same
    ids for the input and the output embedding modules by name."""
    if loaded is None or not loaded.added_token_ids:
        return None
    ids = list(loaded.added_token_ids)
    model = loaded.model
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if outputs is None or outputs.weight is inputs.weight:
        return ids
    names = {id(m): n for n, m in model.named_modules()}
    return {names[id(inputs)].rsplit(".", 1)[-1]: ids, names[id(outputs)].rsplit(".", 1)[-1]: ids}
