"""Tasks without templates: existing conversation or prompt/completion columns, normalized to the row contract.

Owns ``passthrough`` and ``PassthroughEngine`` (the ``engine.Engine`` for slices without a template): a ``messages`` column (list of {role, content}), a ShareGPT ``conversations`` column
(list of {from, value}; ``human``→user, ``gpt``→assistant), or plain ``prompt``/``completion`` columns
(strings, or message lists in instruction mode). The final assistant turn becomes ``completion``; every
turn before it becomes ``prompt``. Conversations with tool calls, tool results, reasoning or a ``tools`` column,
and tasks with a ``conversation:`` section (other layouts: LLaMA-Factory, axolotl), go through
``conversation.py`` instead. All checks are vectorized; the first bad row is named in the error.
"""

from __future__ import annotations

import polars as pl

from cardtune.curate.errors import UserInputError
from cardtune.curate.rows import (
    ANSWER_CHOICES,
    COMPLETION,
    COMPLETION_TEXT,
    CONVERSATION,
    FIELDS_TEXT,
    PROMPT,
    PROMPT_TEXT,
    SOURCE_REF,
    TASK,
    TEMPLATE_ID,
    TOOLS,
    flat_text,
)
from cardtune.curate.templating import conversation
from cardtune.curate.templating.conversation import Conversation, conversation_rows, needs_conversation_form
from cardtune.curate.templating.library import Template
from cardtune.curate.templating.plan import PlanSlice

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {k: v for k, v in conversation.SHAREGPT_ROLES.items() if v in ROLES}  # plain rows: no tool turns
PLAIN_ALIASES = {k: v for k, v in conversation.OPENAI_ROLES.items() if k != v and v in ROLES}  # developer -> system


def _first_bad(rows: pl.DataFrame, bad: pl.Expr) -> str | None:
    hit = rows.select(pl.col(SOURCE_REF).cast(pl.String).filter(bad.fill_null(True)).first()).item()
    return None if hit is None else str(hit)


ROLE_CHECK = "a role is not system, user or assistant"


def _which_turn(frame: pl.DataFrame, ref: str, message: str) -> str:
    """``message`` with the turn named, for a role the plain form does not take."""
    if message != ROLE_CHECK:
        return message
    turns = frame.filter(pl.col(SOURCE_REF) == ref).get_column(CONVERSATION)[0]
    bad = next((i, t["role"]) for i, t in enumerate(turns) if t["role"] not in ROLES)
    return f"turn {bad[0] + 1}: role {bad[1]!r} is not system, user or assistant"


def _fail(task: str, ref: str, message: str) -> UserInputError:
    return UserInputError(f"task {task!r}, row {ref}: {message}")


def _normalize_sharegpt(rows: pl.DataFrame, task: str) -> pl.Expr:
    dtype = rows.schema["conversations"]
    if not (isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct)):
        raise UserInputError(f"task {task!r}: `conversations` must be a list of {{from, value}}, got {dtype}")
    fields = {f.name for f in dtype.inner.fields}
    if not {"from", "value"} <= fields:
        raise UserInputError(f"task {task!r}: `conversations` items need `from` and `value`, got {sorted(fields)}")
    el = pl.element().struct
    role = el.field("from").cast(pl.String).str.to_lowercase().replace_strict(SHAREGPT_ROLES, default=None)
    bad_from = pl.col("conversations").list.eval(role.is_null()).list.any()
    ref = _first_bad(rows, bad_from)
    if ref is not None:
        raise _fail(task, ref, f"a `conversations` turn has an unknown `from` (known: {', '.join(SHAREGPT_ROLES)})")
    return pl.col("conversations").list.eval(
        pl.struct(role.alias("role"), el.field("value").cast(pl.String).alias("content"))
    )


def _messages_expr(rows: pl.DataFrame, task: str, column: str) -> pl.Expr:
    dtype = rows.schema[column]
    inner = dtype.inner if isinstance(dtype, pl.List) else None
    if dtype == pl.String and column in ("prompt", "completion"):  # one side plain text, the other messages
        speaker = "user" if column == "prompt" else "assistant"
        return pl.concat_list(
            [pl.struct(pl.lit(speaker, dtype=pl.String).alias("role"), pl.col(column).alias("content"))]
        )
    if not isinstance(inner, pl.Struct) or not {"role", "content"} <= {f.name for f in inner.fields}:
        raise UserInputError(f"task {task!r}: `{column}` must be a list of {{role, content}}, got {dtype}")
    content = next(f.dtype for f in inner.fields if f.name == "content")
    if content != pl.String:  # e.g. OpenAI content parts [{type, text}]: never silently stringified
        raise UserInputError(
            f"task {task!r}: `{column}` message content must be text, got {content} "
            "(content-part lists such as [{type, text}] are not supported; join them into text first)"
        )
    role_type = next(f.dtype for f in inner.fields if f.name == "role")
    if role_type != pl.String:
        raise UserInputError(f"task {task!r}: `{column}` message role must be text, got {role_type}")
    role = pl.element().struct.field("role").cast(pl.String)
    return pl.col(column).list.eval(
        pl.struct(
            role.replace(PLAIN_ALIASES).alias("role"),  # OpenAI's `developer` is the system turn
            pl.element().struct.field("content").cast(pl.String).alias("content"),
        )
    )


def _split_conversation(rows: pl.DataFrame, task: str, conv: pl.Expr) -> pl.DataFrame:
    frame = rows.select(pl.col(SOURCE_REF).cast(pl.String), conv.alias(CONVERSATION))
    roles = pl.col(CONVERSATION).list.eval(pl.element().struct.field("role"))
    checks = [
        (pl.col(CONVERSATION).is_null(), "it has no conversation (the column is null)"),
        (roles.list.eval(pl.element().is_null()).list.any(), "a message has no `role`"),
        (pl.col(CONVERSATION).list.len() < 2, "a conversation needs at least a user turn and an assistant turn"),
        (roles.list.eval(~pl.element().is_in(ROLES)).list.any(), ROLE_CHECK),
        (roles.list.last() != "assistant", "the conversation does not end with an assistant turn"),
        (
            pl.col(CONVERSATION)
            .list.eval(pl.element().struct.field("content").str.strip_chars().str.len_chars() == 0)
            .list.any(),
            "a turn has empty or null content",
        ),
    ]
    for bad, message in checks:
        ref = _first_bad(frame, bad)
        if ref is not None:
            raise _fail(task, ref, _which_turn(frame, ref, message))
    n = pl.col(CONVERSATION).list.len()
    return frame.select(
        pl.col(SOURCE_REF),
        pl.col(CONVERSATION).list.slice(0, n - 1).alias(PROMPT),
        pl.col(CONVERSATION).list.slice(-1, 1).alias(COMPLETION),
    )


def passthrough(rows: pl.DataFrame, task: str, mode: str, spec: Conversation | None = None) -> pl.DataFrame:
    """Rows of task ``task`` (a task without templates), in the row contract (see module docstring).

    ``spec`` is the task's ``conversation:`` section; with it, or when the conversations hold tool calls, tool
    results, reasoning or a ``tools`` column, rows take the conversation form (``conversation.py``)."""
    cols = set(rows.columns)
    tools = None
    if spec is not None or (("messages" in cols or "conversations" in cols) and needs_conversation_form(rows)):
        if mode == "finetune":
            raise UserInputError(f"task {task!r}: conversations need `mode: instruction` (or give the task templates)")
        out = conversation_rows(rows, task, spec)
        tools = out.get_column(TOOLS) if TOOLS in out.columns else None
    elif "messages" in cols or "conversations" in cols:
        if mode == "finetune":
            raise UserInputError(
                f"task {task!r}: conversation columns need `mode: instruction` (or give the task templates)"
            )
        conv = _messages_expr(rows, task, "messages") if "messages" in cols else _normalize_sharegpt(rows, task)
        out = _split_conversation(rows, task, conv)
    elif {"prompt", "completion"} <= cols:
        out = _plain(rows, task, mode)
    else:
        raise UserInputError(
            f"task {task!r} has no templates, so its source needs a `messages` or `conversations` column, "
            f"or `prompt` and `completion` columns; it has: {', '.join(rows.columns)}"
        )
    if mode == "instruction":
        out = out.with_columns(
            flat_text(PROMPT, out.schema[PROMPT]).alias(PROMPT_TEXT),
            flat_text(COMPLETION, out.schema[COMPLETION]).alias(COMPLETION_TEXT),
        )
    else:
        out = out.with_columns(pl.col(PROMPT).alias(PROMPT_TEXT), pl.col(COMPLETION).alias(COMPLETION_TEXT))
    return out.select(
        pl.lit(task, dtype=pl.String).alias(TASK),
        pl.lit("", dtype=pl.String).alias(TEMPLATE_ID),
        pl.col(SOURCE_REF),
        pl.col(PROMPT),
        pl.col(COMPLETION),
        pl.lit(None, dtype=pl.List(pl.String)).alias(ANSWER_CHOICES),
        pl.col(PROMPT_TEXT),
        pl.col(COMPLETION_TEXT),
        pl.concat_str([pl.col(PROMPT_TEXT), pl.col(COMPLETION_TEXT)], separator="\n").alias(FIELDS_TEXT),
        *([] if tools is None else [pl.lit(tools).alias(TOOLS)]),
    )


def _plain(rows: pl.DataFrame, task: str, mode: str) -> pl.DataFrame:
    schema = rows.schema
    strings = schema["prompt"] == pl.String and schema["completion"] == pl.String
    if not strings:
        if mode == "finetune" or not all(isinstance(schema[c], pl.List | pl.String) for c in ("prompt", "completion")):
            bad = next(c for c in ("prompt", "completion") if schema[c] != pl.String)
            want = "text" if mode == "finetune" else "text or a list of {role, content}"
            raise UserInputError(f"task {task!r}: `{bad}` must be {want}, got {schema[bad]} (in every row)")
        conv = pl.concat_list([_messages_expr(rows, task, "prompt"), _messages_expr(rows, task, "completion")])
        return _split_conversation(rows, task, conv)
    frame = rows.select(pl.col(SOURCE_REF).cast(pl.String), pl.col("prompt"), pl.col("completion"))
    for column in ("prompt", "completion"):
        ref = _first_bad(frame, pl.col(column).str.strip_chars().str.len_chars() == 0)
        if ref is not None:
            raise _fail(task, ref, f"`{column}` is empty or null")
    if mode == "finetune":
        return frame.rename({"prompt": PROMPT, "completion": COMPLETION})

    def msgs(role: str, column: str) -> pl.Expr:
        return pl.concat_list([pl.struct(pl.lit(role, dtype=pl.String).alias("role"), pl.col(column).alias("content"))])

    return frame.select(
        pl.col(SOURCE_REF), msgs("user", "prompt").alias(PROMPT), msgs("assistant", "completion").alias(COMPLETION)
    )


class PassthroughEngine:
    """Tasks without templates; declines a slice that has a template."""

    name = "passthrough"

    def render(
        self, rows: pl.DataFrame, plan_slice: PlanSlice, template: Template | None, mode: str
    ) -> pl.DataFrame | None:
        if template is not None:
            return None
        part = rows if plan_slice.whole else rows[plan_slice.positions()]
        return passthrough(part, plan_slice.plan.task, mode, plan_slice.plan.conversation)
