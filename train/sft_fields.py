"""The names of TRL's ``SFTConfig`` fields, torch-free, so ``cardtune validate`` can check ``train.sft``.

``cardtune validate`` must never import torch (TRL imports it), yet an unknown ``train.sft`` key should be caught
there, with "did you mean". This table mirrors ``dataclasses.fields(trl.SFTConfig)`` of the supported TRL — each field with the JSON kinds
its annotation accepts, so ``validate`` also refuses ``learning_rate: "fast"`` before ``tune`` creates a run
directory; ``tests/test_train_config.py`` fails when the installed TRL differs, so it cannot silently go stale.
``RESERVED`` are real fields that the card or the command line sets instead (each with the place to set it).
"""

from __future__ import annotations

import enum
import types
import typing

SFT_CONFIG_FIELDS: dict[str, frozenset[str]] = {
    "accelerator_config": frozenset({"dict", "null", "str"}),
    "activation_checkpointing": frozenset({"bool", "null"}),
    "activation_checkpointing_kwargs": frozenset({"dict", "null", "str"}),
    "activation_offloading": frozenset({"bool"}),
    "adam_beta1": frozenset({"float", "int"}),
    "adam_beta2": frozenset({"float", "int"}),
    "adam_epsilon": frozenset({"float", "int"}),
    "assistant_only_loss": frozenset({"bool"}),
    "auto_find_batch_size": frozenset({"bool"}),
    "average_tokens_across_devices": frozenset({"bool"}),
    "batch_eval_metrics": frozenset({"bool"}),
    "bf16": frozenset({"bool", "null"}),
    "bf16_full_eval": frozenset({"bool"}),
    "chat_template_path": frozenset({"null", "str"}),
    "completion_only_loss": frozenset({"bool", "null"}),
    "data_seed": frozenset({"int", "null"}),
    "dataloader_drop_last": frozenset({"bool"}),
    "dataloader_in_order": frozenset({"bool"}),
    "dataloader_multiprocessing_context": frozenset({"null", "str"}),
    "dataloader_num_workers": frozenset({"int"}),
    "dataloader_persistent_workers": frozenset({"bool"}),
    "dataloader_pin_memory": frozenset({"bool"}),
    "dataloader_prefetch_factor": frozenset({"int", "null"}),
    "dataset_kwargs": frozenset({"dict", "null", "str"}),
    "dataset_num_proc": frozenset({"int", "null"}),
    "dataset_text_field": frozenset({"str"}),
    "ddp_backend": frozenset({"null", "str"}),
    "ddp_broadcast_buffers": frozenset({"bool", "null"}),
    "ddp_bucket_cap_mb": frozenset({"int", "null"}),
    "ddp_find_unused_parameters": frozenset({"bool", "null"}),
    "ddp_static_graph": frozenset({"bool", "null"}),
    "ddp_timeout": frozenset({"int"}),
    "debug": frozenset({"list", "str"}),
    "deepspeed": frozenset({"dict", "null", "str"}),
    "disable_tqdm": frozenset({"bool", "null"}),
    "do_eval": frozenset({"bool"}),
    "do_predict": frozenset({"bool"}),
    "do_train": frozenset({"bool"}),
    "enable_jit_checkpoint": frozenset({"bool"}),
    "eos_token": frozenset({"null", "str"}),
    "eval_accumulation_steps": frozenset({"int", "null"}),
    "eval_delay": frozenset({"float", "int"}),
    "eval_do_concat_batches": frozenset({"bool"}),
    "eval_on_start": frozenset({"bool"}),
    "eval_packing": frozenset({"bool", "null"}),
    "eval_steps": frozenset({"float", "int", "null"}),
    "eval_strategy": frozenset({"str"}),
    "eval_use_gather_object": frozenset({"bool"}),
    "fp16": frozenset({"bool"}),
    "fp16_full_eval": frozenset({"bool"}),
    "fsdp": frozenset({"null", "str"}),
    "fsdp_config": frozenset({"dict", "null", "str"}),
    "full_determinism": frozenset({"bool"}),
    "gradient_accumulation_steps": frozenset({"int"}),
    "gradient_checkpointing": frozenset({"bool"}),
    "gradient_checkpointing_kwargs": frozenset({"dict", "null", "str"}),
    "greater_is_better": frozenset({"bool", "null"}),
    "hub_always_push": frozenset({"bool"}),
    "hub_model_id": frozenset({"null", "str"}),
    "hub_private_repo": frozenset({"bool", "null"}),
    "hub_revision": frozenset({"null", "str"}),
    "hub_strategy": frozenset({"str"}),
    "hub_token": frozenset({"null", "str"}),
    "ignore_data_skip": frozenset({"bool"}),
    "include_for_metrics": frozenset({"list"}),
    "include_num_input_tokens_seen": frozenset({"bool", "str"}),
    "label_names": frozenset({"list", "null"}),
    "label_smoothing_factor": frozenset({"float", "int"}),
    "learning_rate": frozenset({"float", "int"}),
    "length_column_name": frozenset({"str"}),
    "liger_kernel_config": frozenset({"dict", "null"}),
    "load_best_model_at_end": frozenset({"bool"}),
    "local_rank": frozenset({"int"}),
    "log_level": frozenset({"str"}),
    "log_level_replica": frozenset({"str"}),
    "log_on_each_node": frozenset({"bool"}),
    "logging_first_step": frozenset({"bool"}),
    "logging_nan_inf_filter": frozenset({"bool"}),
    "logging_steps": frozenset({"float", "int"}),
    "logging_strategy": frozenset({"str"}),
    "loss_type": frozenset({"str"}),
    "lr_scheduler_kwargs": frozenset({"dict", "null", "str"}),
    "lr_scheduler_type": frozenset({"str"}),
    "max_grad_norm": frozenset({"float", "int"}),
    "max_length": frozenset({"int", "null"}),
    "max_steps": frozenset({"int"}),
    "metric_for_best_model": frozenset({"null", "str"}),
    "model_init_kwargs": frozenset({"dict", "null", "str"}),
    "neftune_noise_alpha": frozenset({"float", "int", "null"}),
    "num_train_epochs": frozenset({"float", "int"}),
    "optim": frozenset({"str"}),
    "optim_args": frozenset({"null", "str"}),
    "optim_target_modules": frozenset({"list", "null", "str"}),
    "output_dir": frozenset({"null", "str"}),
    "packing": frozenset({"bool"}),
    "packing_strategy": frozenset({"str"}),
    "pad_to_multiple_of": frozenset({"int", "null", "str"}),
    "pad_token": frozenset({"null", "str"}),
    "padding_free": frozenset({"bool"}),
    "parallelism_config": frozenset({"any", "null"}),
    "per_device_eval_batch_size": frozenset({"int"}),
    "per_device_train_batch_size": frozenset({"int"}),
    "prediction_loss_only": frozenset({"bool"}),
    "project": frozenset({"str"}),
    "push_to_hub": frozenset({"bool"}),
    "remove_unused_columns": frozenset({"bool"}),
    "report_to": frozenset({"list", "null", "str"}),
    "restore_callback_states_from_checkpoint": frozenset({"bool"}),
    "resume_from_checkpoint": frozenset({"null", "str"}),
    "router_aux_loss_coef": frozenset({"float", "int", "null"}),
    "run_name": frozenset({"null", "str"}),
    "save_on_each_node": frozenset({"bool"}),
    "save_only_model": frozenset({"bool"}),
    "save_steps": frozenset({"float", "int"}),
    "save_strategy": frozenset({"str"}),
    "save_total_limit": frozenset({"int", "null"}),
    "seed": frozenset({"int"}),
    "shuffle_dataset": frozenset({"bool"}),
    "skip_memory_metrics": frozenset({"bool"}),
    "tf32": frozenset({"bool", "null"}),
    "torch_compile": frozenset({"bool"}),
    "torch_compile_backend": frozenset({"null", "str"}),
    "torch_compile_mode": frozenset({"null", "str"}),
    "torch_empty_cache_steps": frozenset({"int", "null"}),
    "trackio_bucket_id": frozenset({"null", "str"}),
    "trackio_space_id": frozenset({"null", "str"}),
    "trackio_static_space_id": frozenset({"any", "null", "str"}),
    "train_sampling_strategy": frozenset({"str"}),
    "truncation_mode": frozenset({"str"}),
    "trust_remote_code": frozenset({"bool"}),
    "use_cache": frozenset({"bool"}),
    "use_cpu": frozenset({"bool"}),
    "use_liger_kernel": frozenset({"bool"}),
    "warmup_steps": frozenset({"float", "int"}),
    "weight_decay": frozenset({"float", "int"}),
}

RESERVED: dict[str, str] = {
    "output_dir": "the run directory is chosen by cardtune (use `cardtune tune --output DIR` for its parent)",
    "seed": "set `train.seed`",
    "resume_from_checkpoint": "use `cardtune tune --resume`",
    "chat_template_path": "set `train.chat_template`",
    "model_init_kwargs": "cardtune loads the model itself from `train.model`",
    "dataset_text_field": "cardtune feeds prompt/completion columns",
    "run_name": "the run name is chosen by cardtune",
}


def json_kinds(tp: object) -> frozenset[str]:
    """The JSON value kinds a dataclass field annotation accepts (used to check card values without TRL)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return frozenset().union(*(json_kinds(a) for a in typing.get_args(tp)))
    if tp is type(None):
        return frozenset({"null"})
    if tp is bool:
        return frozenset({"bool"})
    if tp is int:
        return frozenset({"int"})
    if tp is float:
        return frozenset({"float", "int"})
    if tp is str or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return frozenset({"str"})
    if origin is typing.Literal:
        return frozenset({"str"}) if all(isinstance(a, str) for a in typing.get_args(tp)) else frozenset({"any"})
    if origin in (list, tuple) or tp in (list, tuple):
        return frozenset({"list"})
    if origin is dict or tp is dict:
        return frozenset({"dict"})
    return frozenset({"any"})


def kind_of(value: object) -> str:
    """The JSON kind of a card value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "list" if isinstance(value, list) else "dict" if isinstance(value, dict) else type(value).__name__


def sft_value_problem(key: str, value: object) -> str | None:
    """Why ``value`` cannot be ``train.sft.<key>`` (its type is not one SFTConfig accepts), or ``None``."""
    kinds = SFT_CONFIG_FIELDS.get(key)
    if kinds is None or "any" in kinds or kind_of(value) in kinds:
        return None
    want = " or ".join(sorted(kinds))
    hint = ""
    if isinstance(value, str) and kinds & {"int", "float"}:
        try:
            float(value)
            hint = " (YAML reads a number like 2e-4 as text: write 2.0e-4)"
        except ValueError:
            pass
    return f"`{key}` must be {want}, got {kind_of(value)} {value!r}{hint}"


def sft_key_problem(key: str) -> str | None:
    """Why ``train.sft.<key>`` is not allowed (reserved, or not an ``SFTConfig`` field), or ``None`` when it is."""
    from cardtune.curate.errors import did_you_mean

    if key in RESERVED:
        return f"`{key}` is set by cardtune: {RESERVED[key]}"
    if key not in SFT_CONFIG_FIELDS:
        return f"unknown SFTConfig field {key!r}{did_you_mean(key, SFT_CONFIG_FIELDS)}"
    return None
