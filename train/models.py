"""Load the model and tokenizer a card names: a hub id, a local path, or ``default`` (the embedded tiny model).

``default`` needs no download: a 2-layer, 64-wide Llama-architecture model built from a config in code with a
seeded random init, and a byte-level BPE tokenizer (1024 tokens) trained deterministically, in a few hundred
milliseconds, on a small corpus embedded below, with ChatML as its chat template. It is saved in each run like any
Hugging Face model, so ``from_pretrained`` reloads it. It learns the formats of a dataset in a few hundred steps on
a CPU; it is for trying cardtune and for tests, not for quality.

Chat templates: ``train.chat_template`` may name a built-in (``chatml``, ``llama-3``, ``mistral``, ``alpaca``) or a
``.jinja`` file, with the end-of-turn tokens it declares (added to the tokenizer as special tokens on request,
the embeddings resized); a built-in's end-of-turn token and the declared ones join the generation stop tokens.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardtune.curate.errors import UserInputError
from cardtune.train.schema import DEFAULT_MODEL

# End-of-turn strings of the built-in templates (templates that end turns with `eos_token` need none).
END_OF_TURN = {"chatml": "<|im_end|>", "llama-3": "<|eot_id|>"}

_SPECIAL = [
    "<|pad|>",
    "<|endoftext|>",
    "<|begin_of_text|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
_VOCAB_SIZE = 1024
_CORPUS = """\
The quick brown fox jumps over the lazy dog. A premise and a hypothesis: does the hypothesis follow?
Question: What is the capital of France? Answer: Paris. Question: How many legs does a spider have? Eight.
Summarize the following article in one sentence. Translate the sentence into French. Classify the review as
positive or negative. The movie was wonderful, the acting was great and the story was moving. The food was
terrible and the service was slow. Is this sentence grammatical? yes no maybe true false neither it is not
possible to tell. Options: - yes - no. Write a title for this text. Choose the best answer from the options.
Read the passage and answer the question. Based on the paragraph above, can we conclude that the claim is true?
The number of people who live in the city has grown every year since 1990, reaching 1,234,567 in 2020.
Instruction: Rewrite the text so that it is more formal. Response: Here is the rewritten text. Thank you!
user assistant system You are a helpful assistant. Please explain step by step. First, second, third, finally.
0 1 2 3 4 5 6 7 8 9 10 11 12 20 30 42 50 100 1000 + - * / = ( ) [ ] { } < > : ; , . ! ? ' " # $ % & @ _ |
the of and to in is that it was for on are as with his they at be this from have or by one had not but what all
were when we there can an your which their said if do will each about how up out them then she many some so
these would other into has more her two like him see time could no make than first been its who now people my
made over did down only way find use may water long little very after words called just where most know get
through back much before go good new write our used me man too any day same right look think also around
another came come work three word must because does part even place well such here take why things help put
years different away again off went old number great tell men say small every found still between name should
home big give air line set own under read last never us left end along while might next sound below saw
something thought both few those always looked show large often together asked house world going want school
important until form food keep children feet land side without boy once animals life enough took sometimes four
head above kind began almost live page got earth need far hand high year mother light parts country father let
night following picture being study second eyes soon times story boys since white days paper hard near sentence
better best across during today others however sure means knew its try told young miles sun ways thing whole
hear example heard several change answer room sea against top turned learn point city play toward five using
himself usually money seen car morning given problem question questions answers options passage article review
"""


@dataclass
class Loaded:
    """A model, its tokenizer and what it was loaded from (``spec`` as the card wrote it)."""

    model: Any
    tokenizer: Any
    spec: str
    is_default: bool
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)  # `train.chat_template_kwargs`
    added_token_ids: list[int] = field(default_factory=list)  # tokens added to the vocabulary (declared end-of-turn)


def default_tokenizer() -> Any:
    """The embedded tokenizer: byte-level BPE with 1024 tokens and a ChatML chat template. Deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|endoftext|>",
        bos_token="<|begin_of_text|>",
        model_max_length=2048,
    )
    fast.chat_template = builtin_template("chatml")
    return fast


def default_model(tokenizer: Any, seed: int) -> Any:
    """The embedded model: Llama architecture, 2 layers, hidden 64, seeded random init, fp32."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    stops = [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<|eot_id|>")]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=stops, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id
    )
    return model


def builtin_template(name: str) -> str:
    """The text of a built-in chat template."""
    files = importlib.resources.files("cardtune.train") / "chat_templates"
    return (files / f"{name}.jinja").read_text(encoding="utf-8")


def chat_template_text(value: str | Path) -> tuple[str, str | None]:
    """A resolved ``train.chat_template`` → (template text, its end-of-turn string or None)."""
    if isinstance(value, str):
        return builtin_template(value), END_OF_TURN.get(value)
    return value.read_text(encoding="utf-8"), None


def apply_chat_template_choice(
    loaded: Loaded,
    value: str | Path | None,
    *,
    end_of_turn: Sequence[str] = (),
    add_special_tokens: bool = False,
    kwargs: dict[str, Any] | None = None,
) -> list[int]:
    """Install the card's chat template, its declared end-of-turn tokens, and make generation stop at them.

    ``end_of_turn`` (``train.chat_template.end_of_turn``) must each be one token of the tokenizer, or are added
    as special tokens first when ``add_special_tokens`` (the model's embeddings are resized to the new
    vocabulary). ``kwargs`` (``train.chat_template_kwargs``) become the template's variable defaults and
    ``loaded.chat_template_kwargs``. Returns the end-of-turn token ids now among the stop tokens.
    """
    from cardtune.train import chat

    tokenizer, model = loaded.tokenizer, loaded.model
    builtin_eot = None
    if value is not None:
        text, builtin_eot = chat_template_text(value)
        tokenizer.chat_template = text
    if kwargs:
        if not isinstance(tokenizer.chat_template, str):
            raise UserInputError(
                f"train.chat_template_kwargs: the tokenizer of {loaded.spec!r} has no single chat template to "
                "set them on; set `train.chat_template` too"
            )
        tokenizer.chat_template = chat.with_defaults(tokenizer.chat_template, kwargs)
        loaded.chat_template_kwargs = dict(kwargs)
    if add_special_tokens:
        from tokenizers import AddedToken

        before = len(tokenizer)
        tokenizer.add_tokens([AddedToken(m, special=True, normalized=False) for m in end_of_turn], special_tokens=True)
        loaded.added_token_ids = list(range(before, len(tokenizer)))  # LoRA trains their rows (config.py)
        fit_embeddings(model, len(tokenizer))
    ids: list[int] = []
    if builtin_eot is not None:
        token_id = single_token_id(tokenizer, builtin_eot)
        if token_id is None:
            raise UserInputError(
                f"train.chat_template: {value!r} ends turns with {builtin_eot!r}, which is not a token of the "
                f"tokenizer of {loaded.spec!r}; pick a template that matches the model (e.g. `mistral` or `alpaca` "
                "end turns with the tokenizer's own eos_token), or declare it: `chat_template: {path: "
                f"{value}, end_of_turn: [{builtin_eot!r}], add_special_tokens: true}}`"
            )
        ids.append(token_id)
    for marker in end_of_turn:
        token_id = single_token_id(tokenizer, marker)
        if token_id is None:
            pieces = tokenizer.convert_ids_to_tokens(tokenizer.encode(marker, add_special_tokens=False))
            raise UserInputError(
                f"train.chat_template.end_of_turn: {marker!r} is not a single token of the tokenizer of "
                f"{loaded.spec!r} (it is {len(pieces)} tokens: {pieces}); set `add_special_tokens: true` to add it "
                "as a special token (the embeddings are resized)"
            )
        ids.append(token_id)
    add_stop_tokens(model, ids)
    return ids


def single_token_id(tokenizer: Any, text: str) -> int | None:
    """The id of ``text`` when the tokenizer encodes it as exactly one token, else None."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return int(ids[0]) if len(ids) == 1 else None


def fit_embeddings(model: Any, vocab: int) -> None:
    """Grow the input (and tied output) embeddings to ``vocab`` rows when tokens were added."""
    if model.get_input_embeddings().weight.shape[0] < vocab:
        model.resize_token_embeddings(vocab)


def add_stop_tokens(model: Any, ids: list[int]) -> None:
    """Make generation stop at ``ids`` as well as at the model's own EOS tokens."""
    current = model.generation_config.eos_token_id
    existing = [] if current is None else [current] if isinstance(current, int) else list(current)
    model.generation_config.eos_token_id = existing + [i for i in ids if i not in existing]


def stop_token_ids(loaded: Loaded) -> set[int]:
    """Tokens that end generation: the tokenizer's EOS and the generation config's EOS ids."""
    out: set[int] = set()
    if loaded.tokenizer.eos_token_id is not None:
        out.add(int(loaded.tokenizer.eos_token_id))
    eos = loaded.model.generation_config.eos_token_id
    if eos is not None:
        out.update([int(eos)] if isinstance(eos, int) else [int(e) for e in eos])
    return out


def load(
    spec: str,
    *,
    seed: int,
    quantization: str = "none",
    trust_remote_code: bool = False,
    on_gpu: bool = False,
) -> Loaded:
    """Load a resolved ``train.model``: ``default``, a local directory, or a hub id (errors say what to do offline)."""
    if spec == DEFAULT_MODEL:
        if quantization != "none":
            raise UserInputError("train.quantization: the embedded default model is not quantized; use `none`")
        tokenizer = default_tokenizer()
        return Loaded(default_model(tokenizer, seed), tokenizer, spec, is_default=True)
    local = Path(spec)  # resolved by cardtune.curate.inputs: an absolute path or a hub id
    on_hub = not local.exists()  # a hub id; never `source == spec`: an absolute local path equals its spec
    source = spec if on_hub else str(local)
    if local.exists() and not (local / "config.json").is_file():
        raise UserInputError(f"train.model: {local} is not a Hugging Face model directory (no config.json)")
    if not local.exists() and (spec.startswith((".", "/", "~")) or spec.count("/") > 1):
        raise UserInputError(f"train.model: {spec!r}: no such local directory")
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if quantization != "none":
        kwargs["quantization_config"] = _quantization_config(quantization, on_gpu)
    if on_gpu:
        kwargs["dtype"] = "auto"
    else:
        import torch

        kwargs["dtype"] = torch.float32
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if on_hub and not hub_reachable():
        if not _cached(spec):  # fail now: the hub client would retry for about a minute before saying so
            raise UserInputError(
                f"train.model: {spec!r} is not in the local Hugging Face cache and the hub cannot be reached "
                "(offline); connect, or point `train.model` at a local model directory (or use `default`)"
            )
        kwargs["local_files_only"] = True  # cached: load it without asking the hub for newer files
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, trust_remote_code=trust_remote_code, local_files_only=bool(kwargs.get("local_files_only"))
        )
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        text = str(exc).lower()
        if on_hub and ("connect" in text or "offline" in text or _offline()):
            raise UserInputError(
                f"train.model: {spec!r} is not in the local Hugging Face cache and needs network access to "
                "download; connect, or point `train.model` at a local model directory (or use `default`)"
            ) from None
        if on_hub and "not a valid model identifier" in text:
            raise UserInputError(
                f"train.model: no model {spec!r} on the Hugging Face hub (check the id; gated or private models "
                "need `hf auth login`)"
            ) from None
        raise UserInputError(f"train.model: cannot load {spec!r}: {exc}") from None
    except ValueError as exc:
        raise UserInputError(f"train.model: {spec!r} cannot be loaded as a causal LM: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Loaded(model, tokenizer, spec, is_default=False)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers a TCP connection (``HF_HUB_OFFLINE`` = no; probed once per endpoint)."""
    from huggingface_hub import constants

    return not constants.HF_HUB_OFFLINE and _probe(str(constants.ENDPOINT))


@functools.lru_cache(maxsize=4)
def _probe(endpoint: str, timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _cached(repo_id: str) -> bool:
    """Whether a hub model's config is in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an id the cache cannot even name
        return False
    return isinstance(found, str)


def _quantization_config(kind: str, on_gpu: bool) -> Any:
    import importlib.util

    if not on_gpu or importlib.util.find_spec("bitsandbytes") is None:
        raise UserInputError(
            f"train.quantization: {kind!r} (QLoRA) needs a CUDA GPU and the `bitsandbytes` package; "
            "use `quantization: none` here"
        )
    import torch
    from transformers import BitsAndBytesConfig

    if kind == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    return BitsAndBytesConfig(load_in_8bit=True)
