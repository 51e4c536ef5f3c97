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
from dataclasses import dataclass
from typing import Any

from cardtune.curate.errors import UserInputError

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


def template_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """Messages as chat templates read them: null fields dropped (a stored conversation row has every field, and
    ``x is defined`` holds for a null), tool-call arguments as mappings (the rows keep them as JSON text)."""
    out = []
    for message in messages:
        m = {k: v for k, v in dict(message).items() if v is not None}
        if m.get("tool_calls"):
            m["tool_calls"] = [_call(c) for c in m["tool_calls"]]
        elif "tool_calls" in m:
            del m["tool_calls"]
        out.append(m)
    return out


def _call(call: dict[str, Any]) -> dict[str, Any]:
    c = {k: v for k, v in call.items() if v is not None}
    fn = dict(c.get("function") or {})
    if isinstance(fn.get("arguments"), str):
        fn["arguments"] = json.loads(fn["arguments"]) if fn["arguments"].strip() else {}
    return {**c, "function": fn}


def chat_ids(
    tokenizer: Any, messages: Sequence[Any], kwargs: dict[str, Any], *, add_generation_prompt: bool = False
) -> list[int]:
    """Token ids of ``messages`` rendered with the tokenizer's chat template (as TRL tokenizes them)."""
    out = tokenizer.apply_chat_template(
        template_messages(messages),
        add_generation_prompt=add_generation_prompt,
        tokenize=True,
        return_dict=True,
        **kwargs,
    )
    return list(out["input_ids"])


def conversation_ids(tokenizer: Any, row: dict[str, Any], kwargs: dict[str, Any]) -> tuple[list[int], list[int]]:
    """(prompt ids with the generation prompt, prompt + completion ids) of a conversational row."""
    kw = render_kwargs(row, kwargs)
    prompt = chat_ids(tokenizer, row["prompt"], kw, add_generation_prompt=True)
    full = chat_ids(tokenizer, list(row["prompt"]) + list(row["completion"]), kw)
    return prompt, full


@dataclass(frozen=True)
class TurnPolicy:
    """Which tokens of a conversation are trained (``train.turns``, ``train.roles``, ``train.train_on_eot``)."""

    turns: str = "all"  # all | last
    roles: tuple[str, ...] = ("assistant", "function_call")
    train_on_eot: bool = True

    def trains(self, message: dict[str, Any]) -> bool:
        """Whether an assistant message is among the trained kinds (an answer, or a turn that calls tools)."""
        return ("function_call" if message.get("tool_calls") else "assistant") in self.roles


def has_generation_markers(text: Any) -> bool:
    """Whether a chat template marks assistant output with ``{% generation %}`` blocks."""
    return isinstance(text, str) and re.search(r"\{%-?\s*generation\s*-?%\}", text) is not None


def assistant_turns(messages: Sequence[Any]) -> list[int]:
    """Positions of the assistant messages."""
    return [i for i, m in enumerate(messages) if m["role"] == "assistant"]


class MaskError(ValueError):
    """The template's ``{% generation %}`` blocks do not match the conversation's assistant turns."""


def turn_spans(
    tokenizer: Any, messages: Sequence[Any], kwargs: dict[str, Any], stop_ids: set[int], train_on_eot: bool = True
) -> tuple[list[int], list[tuple[int, int]]]:
    """(ids of the whole conversation, one (start, end) token span per assistant turn), as training masks them.

    With ``{% generation %}`` markers (and a fast tokenizer): each block's tokens (one render, TRL's
    ``assistant_only_loss`` rule). Without: each turn from the end of the conversation before it rendered with
    ``add_generation_prompt=True`` (what inference sees). Either way a span ends at its first stop token,
    included when ``train_on_eot``; tokens after it (a newline, the next header) are never trained.
    """
    msgs = list(messages)
    turns = assistant_turns(msgs)
    if has_generation_markers(tokenizer.chat_template) and getattr(tokenizer, "is_fast", False):
        out = tokenizer.apply_chat_template(
            template_messages(msgs), tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **kwargs
        )
        full, mask = list(out["input_ids"]), list(out["assistant_masks"])
        blocks = _runs(mask)
        if len(blocks) != len(turns):
            raise MaskError(
                f"the chat template's {{% generation %}} blocks mark {len(blocks)} spans, the conversation has "
                f"{len(turns)} assistant turns"
            )
    else:
        full = chat_ids(tokenizer, msgs, kwargs)
        blocks = []
        for i in turns:
            start = common_prefix(chat_ids(tokenizer, msgs[:i], kwargs, add_generation_prompt=True), full)
            blocks.append((start, len(full)))
    return full, [_cut(full, a, b, stop_ids, train_on_eot) for a, b in blocks]


def _runs(mask: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i, m in enumerate(mask):
        if m and out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        elif m:
            out.append((i, i + 1))
    return out


def _cut(full: Sequence[int], a: int, b: int, stop_ids: set[int], eot: bool) -> tuple[int, int]:
    """The span [a, b) up to its first stop token (one just after the block counts: a template may render the
    end-of-turn outside its generation block)."""
    stop = next((i for i in range(a, min(b + 1, len(full))) if full[i] in stop_ids), None)
    if stop is None:
        return a, b
    return a, stop + 1 if eot else stop


def conversation_features(
    tokenizer: Any, row: dict[str, Any], kwargs: dict[str, Any], stop_ids: set[int], policy: TurnPolicy
) -> tuple[list[int], list[int]]:
    """(input ids, trained-token mask) of a conversational row under ``policy``."""
    kw = render_kwargs(row, kwargs)
    msgs = list(row["prompt"]) + list(row["completion"])
    if policy.turns == "last" or (
        len(assistant_turns(msgs)) == 1 and not has_generation_markers(tokenizer.chat_template)
    ):
        prompt = chat_ids(tokenizer, row["prompt"], kw, add_generation_prompt=True)
        full = chat_ids(tokenizer, msgs, kw)
        mask = trained_mask(prompt, full, stop_ids, policy.train_on_eot)
        return full, mask if policy.trains(msgs[-1]) else [0] * len(full)
    full, spans = turn_spans(tokenizer, msgs, kw, stop_ids, policy.train_on_eot)
    mask = [0] * len(full)
    for i, (a, b) in zip(assistant_turns(msgs), spans, strict=True):
        if policy.trains(msgs[i]):
            mask[a:b] = [1] * (b - a)
    return full, mask


def common_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common prefix of two sequences (token ids, or text)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def trained_mask(prompt: Sequence[int], full: Sequence[int], stop_ids: set[int], eot: bool = True) -> list[int]:
    """1 for the tokens the loss trains: after the common prefix with the prompt, up to the first stop token
    (included when ``eot``)."""
    start = common_prefix(prompt, full)
    end = next((i + 1 for i in range(start, len(full)) if full[i] in stop_ids), len(full))
    if not eot and end > start and full[end - 1] in stop_ids:
        end -= 1
    return [0] * start + [1] * (end - start) + [0] * (len(full) - end)


def training_features(
    tokenizer: Any, dataset: Any, kwargs: dict[str, Any], stop_ids: set[int], policy: TurnPolicy | None = None
) -> Any:
    """Conversational rows → ``input_ids`` + ``completion_mask`` (what TRL's SFTTrainer trains on as is): every
    assistant turn the ``policy`` trains (default: all of them); other columns but
    ``prompt``/``completion``/``tools`` (a ``task`` label) are kept."""
    policy = policy or TurnPolicy()

    def features(row: dict[str, Any]) -> dict[str, list[int]]:
        try:
            full, mask = conversation_features(tokenizer, row, kwargs, stop_ids, policy)
        except MaskError as exc:
            raise UserInputError(f"row {row.get('source_ref', '?')}: {exc}") from None
        except Exception as exc:  # the template refuses the conversation (its raise_exception, a TemplateError)
            msgs = list(row["prompt"]) + list(row["completion"])
            turn = next(
                (k for k in range(1, len(msgs) + 1) if _fails(tokenizer, msgs[:k], render_kwargs(row, kwargs))), None
            )
            task = f"task {row['task']!r}, " if row.get("task") else ""
            at = f", turn {turn}" if turn else ""
            raise UserInputError(
                f"{task}row {row.get('source_ref', '?')}{at}: the chat template cannot render the conversation: {exc}"
            ) from None
        return {"input_ids": full, "completion_mask": mask}

    drop = [c for c in ("prompt", "completion", "tools", "source_ref") if c in dataset.column_names]
    return dataset.map(features, remove_columns=drop)


def _fails(tokenizer: Any, messages: Sequence[Any], kwargs: dict[str, Any]) -> bool:
    try:
        chat_ids(tokenizer, messages, kwargs)
    except Exception:
        return True
    return False


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
