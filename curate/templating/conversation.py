"""Conversation rows: tool calls, tool results, reasoning and a ``tools`` list, read from the chat formats people use.

Owns the card's ``tasks[].conversation`` section (``Conversation``: the format and the field mapping) and
``conversation_rows``, which turns a task's source rows into the row contract's conversation form: ``prompt``
(every message before the final assistant turn) and ``completion`` (that turn) as lists of messages in OpenAI's
shape — ``role`` (system, user, assistant, tool), ``content``, ``reasoning_content``, ``tool_calls`` (``[{id, type,
function: {name, arguments}}]``, arguments as JSON text), ``tool_call_id`` and ``name`` — plus a ``tools`` column
(JSON text of the tool schemas, null when a row has none). Read formats:

* ``openai``: a ``messages`` column of OpenAI chat messages (also axolotl's ``chat_template`` datasets, with
  ``messages``/``role``/``content``/``roles`` mapping their ``field_messages``, ``message_property_mappings`` and
  ``roles``);
* ``sharegpt``: a ``conversations`` column of ``{from, value}`` turns, LLaMA-Factory's tags included:
  ``function_call`` (the value is JSON text of a call or a list of calls) and ``observation`` (a tool result);
  optional ``system`` and ``tools`` columns;
* ``alpaca``: LLaMA-Factory's alpaca form with history: ``instruction`` (+ ``input``), ``output``, ``system`` and
  ``history`` (``[[user, assistant], ...]``).

Messages that only have ``role``/``content`` (and no ``tools`` column) keep the two-field message struct every
other row has, so such sources store exactly what they stored before. Every bad row is an error naming the task,
the row and the turn: an unknown role, a tool call whose arguments are not a JSON object, a tool message with no
preceding call, a conversation without an assistant turn or not ending with one.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import polars as pl
from pydantic import Field

from cardtune.curate.card.section import Section
from cardtune.curate.errors import UserInputError
from cardtune.curate.rows import COMPLETION, PROMPT, SOURCE_REF, TOOLS

TOOL_CALL = pl.Struct(
    {"id": pl.String, "type": pl.String, "function": pl.Struct({"name": pl.String, "arguments": pl.String})}
)
MESSAGE = pl.Struct(
    {
        "role": pl.String,
        "content": pl.String,
        "reasoning_content": pl.String,
        "tool_calls": pl.List(TOOL_CALL),
        "tool_call_id": pl.String,
        "name": pl.String,
    }
)
PLAIN = pl.Struct({"role": pl.String, "content": pl.String})
RICH_FIELDS = ("reasoning_content", "tool_calls", "tool_call_id", "name")
ROLES = ("system", "user", "assistant", "tool")
FUNCTION_CALL = "function_call"  # a ShareGPT turn that is an assistant's tool call
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
    "system": "system",
    "function_call": FUNCTION_CALL,
    "observation": "tool",
    "tool": "tool",
    "function_response": "tool",
}
OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
REASONING = ("reasoning_content", "reasoning", "thinking")


class Conversation(Section):
    """How a task's source holds conversations (the chat formats of OpenAI, ShareGPT/LLaMA-Factory and axolotl).

    Every field has a default per format; set the ones your data names differently.
    """

    format: Literal["openai", "sharegpt", "alpaca"] | None = Field(
        None,
        description="`openai` (a list of {role, content, tool_calls, ...}), `sharegpt` ({from, value} turns, "
        "with `function_call`/`observation`), or `alpaca` (LLaMA-Factory's instruction/input/output + history). "
        "Default: `openai` with a `messages` column, else `sharegpt`.",
    )
    messages: str | None = Field(
        None, description="Column with the turns (axolotl `field_messages`). Default: `messages` / `conversations`."
    )
    role: str | None = Field(None, description="Message field with the role. Default: `role` / `from`.")
    content: str | None = Field(None, description="Message field with the text. Default: `content` / `value`.")
    reasoning: str | None = Field(
        None,
        description="Message field with the reasoning. Default: the first of reasoning_content, reasoning, thinking.",
    )
    roles: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="Role names in the data → system | user | assistant | tool | function_call, as `source: target` "
        "or axolotl's `target: [sources]`. Default: the format's usual names (human, gpt, observation, ...).",
    )
    system: str | None = Field(None, description="Column with a system prompt. Default: `system` when present.")
    tools: str | None = Field(
        None, description="Column with the tool schemas (a list, or JSON text). Default: `tools` when present."
    )
    instruction: str = Field("instruction", description="alpaca: the instruction column. Default: `instruction`.")
    input: str = Field("input", description="alpaca: the optional input column. Default: `input`.")
    output: str = Field("output", description="alpaca: the answer column. Default: `output`.")
    history: str = Field("history", description="alpaca: earlier [user, assistant] pairs. Default: `history`.")


def needs_conversation_form(rows: pl.DataFrame) -> bool:
    """Whether ``messages``/``conversations`` rows hold more than {role, content} (tool calls, tools, reasoning)."""
    if TOOLS in rows.columns:
        return True
    for column, role_field, plain in (("messages", "role", OPENAI_ROLES), ("conversations", "from", SHAREGPT_ROLES)):
        dtype = rows.schema.get(column)
        if not (isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct)):
            continue
        names = {f.name for f in dtype.inner.fields}
        if names & {*RICH_FIELDS, *REASONING}:
            return True
        if role_field in names:
            rich = {k for k, v in plain.items() if v in ("tool", FUNCTION_CALL)}
            roles = pl.col(column).list.eval(pl.element().struct.field(role_field).cast(pl.String).str.to_lowercase())
            if rows.select(roles.list.eval(pl.element().is_in(sorted(rich))).list.any().any()).item():
                return True
    return False


class _Bad(Exception):
    def __init__(self, message: str, turn: int | None = None) -> None:
        super().__init__(message)
        self.turn = turn


def conversation_rows(rows: pl.DataFrame, task: str, spec: Conversation | None) -> pl.DataFrame:
    """``source_ref``, ``prompt``, ``completion`` (and ``tools`` when any row has tools) of a conversation task."""
    spec = spec or Conversation()
    fmt = spec.format or ("openai" if "messages" in rows.columns or spec.messages else "sharegpt")
    if fmt == "alpaca":
        need = [spec.instruction, spec.output]
    else:
        need = [spec.messages or ("messages" if fmt == "openai" else "conversations")]
    missing = [c for c in need if c not in rows.columns]
    if missing:
        raise UserInputError(
            f"task {task!r}: a {fmt} conversation needs column(s) {', '.join(missing)} "
            f"(set them in `conversation:`); the source has: {', '.join(rows.columns)}"
        )
    roles = _role_map(spec, fmt)
    system_col = spec.system or "system"
    tools_col = spec.tools or TOOLS
    prompts: list[list[dict[str, Any]]] = []
    completions: list[list[dict[str, Any]]] = []
    tools: list[str | None] = []
    for row in rows.iter_rows(named=True):
        ref = str(row[SOURCE_REF])
        try:
            msgs = _alpaca(row, spec) if fmt == "alpaca" else _messages(row.get(need[0]), fmt, spec, roles)
            system = row.get(system_col) if system_col in row else None
            added = bool(system) and not (msgs and msgs[0]["role"] == "system")
            if added:
                msgs.insert(0, _message("system", str(system)))
            _check(msgs, first=0 if added else 1)  # turns are numbered as in the source
            tools.append(_tools(row.get(tools_col)) if tools_col in row else None)
        except _Bad as exc:
            turn = f", turn {exc.turn}" if exc.turn is not None else ""
            raise UserInputError(f"task {task!r}, row {ref}{turn}: {exc}") from None
        prompts.append(msgs[:-1])
        completions.append(msgs[-1:])
    rich = any(t is not None for t in tools) or any(
        m[k] is not None for conv in (*prompts, *completions) for m in conv for k in RICH_FIELDS
    )
    dtype = pl.List(MESSAGE if rich else PLAIN)
    if not rich:
        prompts = [[{"role": m["role"], "content": m["content"]} for m in p] for p in prompts]
        completions = [[{"role": m["role"], "content": m["content"]} for m in c] for c in completions]
    out = pl.DataFrame(
        {
            SOURCE_REF: rows.get_column(SOURCE_REF).cast(pl.String),
            PROMPT: pl.Series(prompts, dtype=dtype),
            COMPLETION: pl.Series(completions, dtype=dtype),
        }
    )
    return out.with_columns(pl.Series(TOOLS, tools, dtype=pl.String)) if rich else out


def _role_map(spec: Conversation, fmt: str) -> dict[str, str]:
    out = dict(OPENAI_ROLES if fmt == "openai" else SHAREGPT_ROLES)
    for key, value in spec.roles.items():
        if isinstance(value, list):  # axolotl: target: [sources]
            out.update({str(v).lower(): key for v in value})
        else:
            out[key.lower()] = value
    bad = sorted({v for v in out.values() if v not in (*ROLES, FUNCTION_CALL)})
    if bad:
        raise UserInputError(f"conversation.roles: {bad} are not system, user, assistant, tool or function_call")
    return out


def _message(role: str, content: str, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **{k: extra.get(k) for k in RICH_FIELDS}}


def _messages(turns: Any, fmt: str, spec: Conversation, roles: dict[str, str]) -> list[dict[str, Any]]:
    if turns is None:
        raise _Bad("it has no conversation (the column is null)")
    role_key = spec.role or ("role" if fmt == "openai" else "from")
    content_key = spec.content or ("content" if fmt == "openai" else "value")
    out: list[dict[str, Any]] = []
    for turn, m in enumerate(turns, start=1):
        if not isinstance(m, dict):
            raise _Bad(f"a turn must be a mapping with `{role_key}` and `{content_key}`", turn)
        raw_role = m.get(role_key)
        if raw_role is None:
            raise _Bad(f"the message has no `{role_key}`", turn)
        role = roles.get(str(raw_role).lower())
        if role is None:
            known = ", ".join(sorted(roles))
            raise _Bad(f"unknown role {raw_role!r} (known: {known}; map others in `conversation.roles`)", turn)
        content = m.get(content_key)
        if content is not None and not isinstance(content, str):
            raise _Bad(f"`{content_key}` must be text, got {type(content).__name__} (join content parts first)", turn)
        reasoning = next((m.get(k) for k in ([spec.reasoning] if spec.reasoning else REASONING) if m.get(k)), None)
        if role == FUNCTION_CALL:
            out.append(_message("assistant", "", tool_calls=_sharegpt_calls(content, turn)))
            continue
        calls = _calls(m.get("tool_calls"), turn) if role == "assistant" else None
        out.append(
            _message(
                role,
                content or "",
                reasoning_content=reasoning if role == "assistant" else None,
                tool_calls=calls or None,
                tool_call_id=m.get("tool_call_id") if role == "tool" else None,
                name=m.get("name") if role == "tool" else None,
            )
        )
    return out


def _alpaca(row: dict[str, Any], spec: Conversation) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for turn, pair in enumerate(row.get(spec.history) or [], start=1):
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise _Bad(f"`{spec.history}` entry {turn} must be a [user, assistant] pair of texts", 2 * turn - 1)
        out += [_message("user", pair[0]), _message("assistant", pair[1])]
    query = row.get(spec.instruction) or ""
    extra = row.get(spec.input)
    out.append(_message("user", f"{query}\n{extra}" if extra else query))
    out.append(_message("assistant", row.get(spec.output) or ""))
    return out


def _arguments(value: Any, turn: int) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise _Bad(f"a tool call's arguments are not valid JSON ({exc.msg}): {value[:60]!r}", turn) from None
    if not isinstance(value, dict):
        raise _Bad(f"a tool call's arguments must be a JSON object, got {type(value).__name__}", turn)
    return json.dumps(_no_nulls(value), ensure_ascii=False)


def _calls(value: Any, turn: int) -> list[dict[str, Any]]:
    out = []
    for call in value or []:
        fn = call.get("function") if isinstance(call, dict) else None
        fn = fn if isinstance(fn, dict) else call if isinstance(call, dict) else None
        if not fn or not fn.get("name"):
            raise _Bad("a tool call needs a function name ({function: {name, arguments}})", turn)
        args = _arguments(fn.get("arguments"), turn)
        out.append({"id": call.get("id"), "type": "function", "function": {"name": str(fn["name"]), "arguments": args}})
    return out


def _sharegpt_calls(value: str | None, turn: int) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(value or "")
    except json.JSONDecodeError as exc:
        raise _Bad(f"a function_call turn must be JSON of {{name, arguments}} ({exc.msg})", turn) from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    if not calls or not all(isinstance(c, dict) for c in calls):
        raise _Bad("a function_call turn must be JSON of {name, arguments} (or a list of them)", turn)
    return _calls(calls, turn)


def _check(msgs: list[dict[str, Any]], first: int = 1) -> None:
    pending: list[dict[str, Any]] = []  # the calls of the latest assistant turn still open to results
    for turn, m in enumerate(msgs, start=first):
        role = m["role"]
        if role == "tool":
            if not pending:
                raise _Bad("a tool message with no preceding tool call", turn)
            ids = [c["id"] for c in pending if c["id"]]
            if m["tool_call_id"] and ids and m["tool_call_id"] not in ids:
                raise _Bad(f"tool_call_id {m['tool_call_id']!r} matches none of the preceding calls {ids}", turn)
            if m["name"] is None and len(pending) == 1:
                m["name"] = pending[0]["function"]["name"]
        elif role == "assistant":
            pending = list(m["tool_calls"] or [])
            if not m["content"].strip() and not pending:
                raise _Bad("an assistant turn has empty content and no tool calls", turn)
        else:
            pending = []
            if not m["content"].strip():
                raise _Bad(f"a {role} turn has empty or null content", turn)
    if not any(m["role"] == "assistant" for m in msgs):
        raise _Bad("the conversation has no assistant turn")
    if msgs[-1]["role"] != "assistant":
        raise _Bad("the conversation does not end with an assistant turn", len(msgs) - 1 + first)
    if len([m for m in msgs if m["role"] != "system"]) < 2:
        raise _Bad("a conversation needs at least a user turn and an assistant turn")


def _tools(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _Bad(f"`tools` is not valid JSON ({exc.msg})") from None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise _Bad("`tools` must be a list of tool schemas (JSON objects)")
    if not value:
        return None
    out = [t if t.get("type") == "function" and "function" in t else {"type": "function", "function": t} for t in value]
    return json.dumps(_no_nulls(out), ensure_ascii=False)


def _no_nulls(value: Any) -> Any:
    """Drop null mapping values: JSON Lines readers unify object keys across rows, filling the missing with null."""
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_no_nulls(v) for v in value]
    return value
