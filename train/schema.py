"""Training's section of the card (``train:``): what is trained and how, as pydantic models.

Owned by the training side but importable without torch (pydantic only), so ``cardtune validate`` checks a
card's ``train:`` section on the core install. ``cardtune.train.config`` maps these onto TRL and PEFT.
"""

from __future__ import annotations

import keyword
from typing import Any, Literal

from pydantic import (
    Field,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue

from cardtune.curate.card.section import Section

TurnRole = Literal["assistant", "function_call"]
DEFAULT_MODEL = "default"  # the embedded tiny model (no download)
BUILTIN_TEMPLATES = ("chatml", "llama-3", "mistral", "alpaca")  # shipped in cardtune/train/chat_templates/
# `apply_chat_template` arguments cardtune sets itself (for the prompt, the training render and evaluation alike).
RESERVED_TEMPLATE_KWARGS = {
    "conversation": "the conversation comes from the dataset rows",
    "messages": "the conversation comes from the dataset rows",
    "add_generation_prompt": "cardtune renders the prompt with it and the training sequence without it",
    "continue_final_message": "cardtune renders complete assistant turns",
    "chat_template": "set `train.chat_template`",
    "tokenize": "cardtune tokenizes as TRL does",
    "return_dict": "cardtune tokenizes as TRL does",
    "return_tensors": "cardtune tokenizes as TRL does",
    "return_assistant_tokens_mask": "cardtune masks the loss itself",
    "padding": "padding is the trainer's",
    "truncation": "set `train.sft.max_length` and `train.overlong`",
    "max_length": "set `train.sft.max_length`",
    "tokenizer_kwargs": "cardtune tokenizes as TRL does",
}


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


class ChatTemplate(Section):
    """`train.chat_template` as a mapping: a template and the tokens that end its assistant turns.

    The plain string form (`chat_template: chatml`, `chat_template: my.jinja`) is the same as `{path: ...}`.
    """

    path: str = Field(
        description="chatml | llama-3 | mistral | alpaca, or a path to a .jinja file (relative to the card)."
    )
    end_of_turn: list[str] = Field(
        default_factory=list,
        description="Strings that end an assistant turn (the model stops generating at each); each must be one "
        "token of the tokenizer, or be added with `add_special_tokens`. Default: none (the tokenizer's EOS and "
        "a built-in's own end-of-turn).",
    )
    add_special_tokens: bool = Field(
        False,
        description="Add the `end_of_turn` strings to the tokenizer as special tokens (the model's embeddings are "
        "resized to match). Default: `false`.",
    )

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """A string (the plain form) or the mapping, for editors completing a card."""
        return {"anyOf": [{"type": "string"}, handler(core_schema)]}

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    @field_validator("end_of_turn")
    @classmethod
    def _markers(cls, value: list[str]) -> list[str]:
        if any(not m for m in value):
            raise ValueError("an end-of-turn token cannot be empty")
        dup = sorted({m for m in value if value.count(m) > 1})
        if dup:
            raise ValueError(f"listed twice: {dup}")
        return value

    @model_validator(mode="after")
    def _something_to_add(self) -> ChatTemplate:
        if self.add_special_tokens and not self.end_of_turn:
            raise ValueError("add_special_tokens: true needs the `end_of_turn` tokens to add")
        return self

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> Any:
        """The plain path when nothing else is set (so string-form cards dump as they were written)."""
        if not self.end_of_turn and not self.add_special_tokens:
            return self.path
        return handler(self)


class Train(Section):
    """Training: a thin mapping onto TRL's `SFTConfig` and a PEFT config."""

    model: str = Field("default", description="`default` (embedded tiny model), a hub id, or a local path.")
    method: Literal["full", "lora", "prompt_tuning"] = Field("lora", description="What is trained. Default: `lora`.")
    lora: Lora = Field(default_factory=Lora, description="LoRA settings (method `lora`).")
    prompt_tuning: PromptTuning = Field(default_factory=PromptTuning, description="Prompt tuning settings.")
    quantization: Literal["none", "4bit", "8bit"] = Field(
        "none", description="QLoRA-style quantized base (needs a GPU and bitsandbytes). Default: `none`."
    )
    chat_template: ChatTemplate | None = Field(
        None,
        description="`null` = the tokenizer's; or chatml | llama-3 | mistral | alpaca | a path to a .jinja file; "
        "or a mapping `{path, end_of_turn, add_special_tokens}` that also declares the template's end-of-turn "
        "tokens.",
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Template variables passed to `apply_chat_template` for training, the parity check and "
        "`cardtune eval` alike (e.g. `enable_thinking: false`, `reasoning_effort: low`, `tools: [...]`). "
        "Default: none.",
    )
    turns: Literal["all", "last"] = Field(
        "all",
        description="Instruction mode: which assistant turns of a conversation are trained: `all` (every one, as "
        "TRL's `assistant_only_loss`, LLaMA-Factory and axolotl do) or `last` (only the final one). Default: `all`.",
    )
    roles: list[TurnRole] = Field(
        default_factory=lambda: list[TurnRole](["assistant", "function_call"]),
        description="Which assistant turns are trained: `assistant` (answers) and/or `function_call` (turns that "
        "call tools). Tool outputs, user and system turns are never trained. Default: both.",
    )
    train_on_eot: bool = Field(
        True,
        description="Train each trained turn's end-of-turn token (the model learns to stop). Default: `true`.",
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

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one of assistant, function_call (else nothing is trained)")
        if len(set(value)) != len(value):
            raise ValueError("a role is listed twice")
        return value

    @model_validator(mode="after")
    def _added_tokens_train(self) -> Train:
        if self.method == "prompt_tuning" and self.chat_template is not None and self.chat_template.add_special_tokens:
            raise ValueError(
                "chat_template.add_special_tokens with method: prompt_tuning: prompt tuning trains only its virtual "
                "tokens, so the added end-of-turn token could never be learned; use method: lora (which trains the "
                "new token's embedding) or full, or an end-of-turn the tokenizer already has"
            )
        return self

    @field_validator("chat_template_kwargs")
    @classmethod
    def _template_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not key.isidentifier() or keyword.iskeyword(key):
                raise ValueError(f"{key!r} is not a template variable name")
            if key in RESERVED_TEMPLATE_KWARGS:
                raise ValueError(f"{key!r} is set by cardtune: {RESERVED_TEMPLATE_KWARGS[key]}")
        for key in ("tools", "documents"):
            items = value.get(key)
            if items is not None and not (isinstance(items, list) and all(isinstance(t, dict) for t in items)):
                raise ValueError(f"{key!r} must be a list of mappings (JSON schemas / documents)")
        return value
