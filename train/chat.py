"""Rendering conversations with a chat template exactly as training, the parity check and evaluation do.

One place decides how a row becomes token ids: ``apply_chat_template`` with the card's
``train.chat_template_kwargs`` (template variables such as ``enable_thinking`` or ``reasoning_effort``) and the
row's own ``tools`` (a list, or JSON text, as TRL reads it). ``with_defaults`` also writes the card's kwargs into
the installed template as the defaults of those variables, so TRL's own tokenization, ``cardtune eval`` and
anyone using the saved tokenizer render the same text without being told. ``training_features`` tokenizes rows the way TRL's
``SFTTrainer`` does (prompt with the generation prompt; prompt + completion without) and marks the trained
tokens: from the end of the prompt up to and including the first stop token, so template text after the stop
token (a trailing EOS, the next turn's header) is never trained.

``template_variables`` lists the variables a template reads that ``apply_chat_template`` does not provide
(``enable_thinking``, ``custom_tools``, ...), so errors can say which ones the card may need to set;
``marker_like`` finds strings that look like special tokens (``<end_of_turn>``, ``<|end|>``) in rendered text.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any

# Variables `apply_chat_template` (transformers) and Jinja itself provide to every template.
PROVIDED = frozenset(
    {
        "messages",
        "tools",
        "documents",
        "add_generation_prompt",
        "raise_exception",
        "strftime_now",
        "bos_token",
        "eos_token",
        "unk_token",
        "pad_token",
        "sep_token",
        "cls_token",
        "mask_token",
        "additional_special_tokens",
        "range",
        "dict",
        "lipsum",
        "cycler",
        "joiner",
        "namespace",
        "true",
        "false",
        "none",
        "True",
        "False",
        "None",
    }
)
_MARKER = re.compile(r"<[^<>\s]{1,48}>|\[\|[^\[\]\s]{1,40}\|\]|\[/?[A-Z][A-Z_]{1,30}\]")


def with_defaults(text: str, kwargs: dict[str, Any]) -> str:
    """The template with ``kwargs`` as the default values of its variables: every ``apply_chat_template`` call on
    the tokenizer (TRL's, evaluation's, the saved model's users') renders with them unless it passes its own."""
    head = "".join(
        f"{{%- if {key} is not defined or {key} is none -%}}{{%- set {key} = {jinja_literal(value)} -%}}{{%- endif -%}}"
        for key, value in sorted(kwargs.items())
    )
    return head + "{{ '' }}" + text if head else text  # an expression last: trim_blocks leaves the text as it was


def jinja_literal(value: Any) -> str:
    """A JSON-like value as a Jinja expression (``true``, ``none``, ``"text"``, ``[...]``, ``{...}``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(jinja_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {jinja_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


def render_kwargs(row: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``apply_chat_template`` keyword arguments for ``row``: the card's, plus the row's ``tools`` when it has some."""
    out = dict(kwargs)
    tools = row.get("tools")
    if isinstance(tools, str):
        tools = json.loads(tools) if tools.strip() else None
    if tools:
        out["tools"] = tools
    return out


def chat_ids(
    tokenizer: Any, messages: Sequence[Any], kwargs: dict[str, Any], *, add_generation_prompt: bool = False
) -> list[int]:
    """Token ids of ``messages`` rendered with the tokenizer's chat template (as TRL tokenizes them)."""
    out = tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=True, **kwargs
    )
    return list(out["input_ids"])


def conversation_ids(tokenizer: Any, row: dict[str, Any], kwargs: dict[str, Any]) -> tuple[list[int], list[int]]:
    """(prompt ids with the generation prompt, prompt + completion ids) of a conversational row."""
    kw = render_kwargs(row, kwargs)
    prompt = chat_ids(tokenizer, row["prompt"], kw, add_generation_prompt=True)
    full = chat_ids(tokenizer, list(row["prompt"]) + list(row["completion"]), kw)
    return prompt, full


def common_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common prefix of two sequences (token ids, or text)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def trained_mask(prompt: Sequence[int], full: Sequence[int], stop_ids: set[int]) -> list[int]:
    """1 for the tokens the loss trains: after the common prefix with the prompt, up to the first stop token."""
    start = common_prefix(prompt, full)
    end = next((i + 1 for i in range(start, len(full)) if full[i] in stop_ids), len(full))
    return [0] * start + [1] * (end - start) + [0] * (len(full) - end)


def training_features(tokenizer: Any, dataset: Any, kwargs: dict[str, Any], stop_ids: set[int]) -> Any:
    """Conversational rows → ``input_ids`` + ``completion_mask`` (what TRL's SFTTrainer trains on as is); other
    columns but ``prompt``/``completion``/``tools`` (a ``task`` label) are kept."""

    def features(row: dict[str, Any]) -> dict[str, list[int]]:
        prompt, full = conversation_ids(tokenizer, row, kwargs)
        return {"input_ids": full, "completion_mask": trained_mask(prompt, full, stop_ids)}

    drop = [c for c in ("prompt", "completion", "tools") if c in dataset.column_names]
    return dataset.map(features, remove_columns=drop)


def template_variables(text: str, *, provided: frozenset[str] = PROVIDED) -> set[str]:
    """Variables the template reads but neither sets anywhere nor gets from ``apply_chat_template`` (``provided``):
    the ones a card may need to set as template kwargs (``enable_thinking``, ``custom_tools``, ...)."""
    from jinja2 import meta, nodes

    try:
        ast = _environment().parse(text)
    except Exception:  # a template that does not parse says so when it renders
        return set()
    stored = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "store"}
    tested = {  # `x is defined`, `x is undefined`, `x | default(...)`: knobs by design, even when set later
        t.node.name
        for t in [*ast.find_all(nodes.Test), *ast.find_all(nodes.Filter)]
        if t.name in ("defined", "undefined", "default", "d") and isinstance(t.node, nodes.Name)
    }
    return {v for v in meta.find_undeclared_variables(ast) if v not in provided and (v not in stored or v in tested)}


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        """transformers' ``{% generation %}...{% endgeneration %}`` block, parsed as its body."""

        tags = {"generation"}  # noqa: RUF012 (jinja's own class attribute)

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])


def end_marker(text: str) -> str | None:
    """The marker ``text`` (what a template renders right after the assistant's content) starts with, if any:
    a special-looking token (``<end_of_turn>``, ``[|endofturn|]``), else a short first word that is not plain
    letters (``[e~[``)."""
    head = text.lstrip()
    found = _MARKER.match(head)
    if found:
        return found.group(0)
    word = head.split(maxsplit=1)[0] if head.strip() else ""
    if 2 <= len(word) <= 24 and not word[0].isalnum() and len(set(word)) > 1:
        return word
    return None


def marker_like(text: str) -> list[str]:
    """Substrings of ``text`` that look like special tokens (``<end_of_turn>``, ``<|end|>``, ``[/INST]``), in order."""
    out: list[str] = []
    for m in _MARKER.findall(text):
        if m not in out:
            out.append(m)
    return out
