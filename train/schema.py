"""Training's section of the card (``train:``): what is trained and how, as pydantic models.

Owned by the training side but importable without torch (pydantic only), so ``cardtune validate`` checks a
card's ``train:`` section on the core install. ``cardtune.train.config`` maps these onto TRL and PEFT.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cardtune.curate.card.section import Section

DEFAULT_MODEL = "default"  # the embedded tiny model (no download)
BUILTIN_TEMPLATES = ("chatml", "llama-3", "mistral", "alpaca")  # shipped in cardtune/train/chat_templates/


class Lora(Section):
    """LoRA adapter settings (PEFT `LoraConfig`)."""

    r: int = Field(16, ge=1, description="Rank. Default: 16.")
    alpha: int = Field(32, ge=1, description="Scaling alpha. Default: 32.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout. Default: 0.05.")
    target_modules: str | list[str] = Field("all-linear", description="Modules to adapt. Default: `all-linear`.")


class PromptTuning(Section):
    """Prompt tuning settings (PEFT `PromptTuningConfig`)."""

    num_virtual_tokens: int = Field(20, ge=1, description="Virtual tokens. Default: 20.")
    init_text: str | None = Field(None, description="Initialize from this text; default: random init.")


class Train(Section):
    """Training: a thin mapping onto TRL's `SFTConfig` and a PEFT config."""

    model: str = Field("default", description="`default` (embedded tiny model), a hub id, or a local path.")
    method: Literal["full", "lora", "prompt_tuning"] = Field("lora", description="What is trained. Default: `lora`.")
    lora: Lora = Field(default_factory=Lora, description="LoRA settings (method `lora`).")
    prompt_tuning: PromptTuning = Field(default_factory=PromptTuning, description="Prompt tuning settings.")
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="QLoRA-style quantized base (needs a GPU and bitsandbytes). Default: `none`."
    )
    chat_template: str | None = Field(
        None,
        description="`null` = the tokenizer's; or chatml | llama-3 | mistral | alpaca | a path to a .jinja file.",
    )
    base: str | None = Field(None, description="An earlier run directory to start from (task modules on a tuned base).")
    overlong: Literal["truncate", "drop"] = Field(
        "truncate", description="Rows longer than `sft.max_length`: truncate or drop. Default: `truncate`."
    )
    seed: int = Field(42, description="Training seed. Default: 42.")
    max_new_tokens: int = Field(64, ge=1, description="Generation length for `cardtune eval`. Default: 64.")
    sft: dict[str, Any] = Field(
        default_factory=dict,
        description="TRL `SFTConfig` fields (learning_rate, num_train_epochs, max_length, ...); unknown names "
        "are errors. Default: cardtune's per-mode defaults.",
    )
