"""Conversation rows: OpenAI messages with tool calls and reasoning, ShareGPT with function_call/observation,
LLaMA-Factory's alpaca-with-history and axolotl's field mapping; the bad inputs, each naming task, row and turn;
a build of the chat card whose parquet `datasets` loads as conversations; filters over whole conversations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from cardtune.curate.errors import UserInputError
from cardtune.curate.pipeline import build
from cardtune.curate.rows import COMPLETION, PROMPT, PROMPT_TEXT, SOURCE_REF, TOOLS, with_flat_text
from cardtune.curate.templating.conversation import Conversation
from cardtune.curate.templating.passthrough import passthrough

ROOT = Path(__file__).resolve().parent.parent
CHAT = ROOT / "data_cards" / "chat"


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    frame = pl.DataFrame(rows)
    return frame.with_columns(pl.Series(SOURCE_REF, [f"chat:{i}" for i in range(frame.height)]))


def _pass(rows: list[dict[str, Any]], spec: Conversation | None = None) -> pl.DataFrame:
    return passthrough(_frame(rows), "chat", "instruction", spec)


def _conv(out: pl.DataFrame, i: int = 0) -> list[dict[str, Any]]:
    row = out.row(i, named=True)
    return [*row[PROMPT], *row[COMPLETION]]


CALL = {"name": "get_weather", "arguments": {"city": "Oslo"}}
SHAREGPT = [
    {"from": "human", "value": "Weather in Oslo?"},
    {"from": "function_call", "value": json.dumps(CALL)},
    {"from": "observation", "value": '{"sky": "rainy"}'},
    {"from": "gpt", "value": "Rainy."},
    {"from": "human", "value": "Thanks"},
    {"from": "gpt", "value": "You are welcome."},
]


def test_sharegpt_function_call_and_observation_become_tool_calls_and_results() -> None:
    out = _pass([{"conversations": SHAREGPT, "system": "Be brief.", "tools": json.dumps([{"name": "get_weather"}])}])
    msgs = _conv(out)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant", "user", "assistant"]
    call = msgs[2]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert msgs[3]["name"] == "get_weather"  # the result names the tool it answers
    assert json.loads(out.get_column(TOOLS)[0]) == [{"type": "function", "function": {"name": "get_weather"}}]
    assert 'get_weather({"city": "Oslo"})' in out.get_column(PROMPT_TEXT)[0]  # filters see the whole conversation
    stored = with_flat_text(out.drop(PROMPT_TEXT, "_completion_text", "_fields_text"))
    assert stored.get_column(PROMPT_TEXT).to_list() == out.get_column(PROMPT_TEXT).to_list()


def test_openai_messages_with_tool_calls_reasoning_and_tools() -> None:
    messages = [
        {"role": "developer", "content": "Be brief.", "tool_calls": None, "tool_call_id": None},
        {"role": "user", "content": "2+3?", "tool_calls": None, "tool_call_id": None},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
            ],
            "tool_call_id": None,
        },
        {"role": "tool", "content": "5", "tool_calls": None, "tool_call_id": "c1"},
        {"role": "assistant", "content": "5.", "reasoning_content": "2+3=5", "tool_calls": None, "tool_call_id": None},
    ]
    out = _pass([{"messages": messages, "tools": [{"type": "function", "function": {"name": "add"}}]}])
    msgs = _conv(out)
    assert msgs[0]["role"] == "system" and msgs[2]["content"] == "" and msgs[3]["tool_call_id"] == "c1"
    assert msgs[4]["reasoning_content"] == "2+3=5" and msgs[3]["name"] == "add"
    assert out.get_column("_completion_text")[0] == "2+3=5\n5."


def test_axolotl_field_mapping_and_llamafactory_alpaca_history() -> None:
    axolotl = Conversation(
        format="openai",
        messages="chat",
        role="speaker",
        content="text",
        roles={"user": ["human"], "assistant": ["bot"]},
    )
    rows = [{"chat": [{"speaker": "human", "text": "hi"}, {"speaker": "bot", "text": "hello"}]}]
    assert [(m["role"], m["content"]) for m in _conv(_pass(rows, axolotl))] == [("user", "hi"), ("assistant", "hello")]
    alpaca = [{"instruction": "Add", "input": "2 3", "output": "5", "history": [["hi", "hello"]], "system": "S"}]
    out = _pass(alpaca, Conversation(format="alpaca"))
    assert [(m["role"], m["content"]) for m in _conv(out)] == [
        ("system", "S"),
        ("user", "hi"),
        ("assistant", "hello"),
        ("user", "Add\n2 3"),
        ("assistant", "5"),
    ]
    assert out.schema[PROMPT] == pl.List(pl.Struct({"role": pl.String, "content": pl.String}))  # no tool fields


def test_plain_messages_keep_the_two_field_struct() -> None:
    out = _pass([{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}])
    assert out.schema[PROMPT] == pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    assert TOOLS not in out.columns


@pytest.mark.parametrize(
    ("turns", "says"),
    [
        ([{"from": "human", "value": "a"}, {"from": "robot", "value": "b"}], "turn 2: unknown role 'robot'"),
        (
            [
                {"from": "human", "value": "a"},
                {"from": "function_call", "value": '{"name": "f", "arguments": "{oops"}'},
            ],
            "turn 2: a tool call's arguments are not valid JSON",
        ),
        (
            [{"from": "human", "value": "a"}, {"from": "observation", "value": "1"}, {"from": "gpt", "value": "b"}],
            "turn 2: a tool message with no preceding tool call",
        ),
        ([{"from": "human", "value": "a"}, {"from": "observation", "value": "1"}], "no preceding tool call"),
        ([{"from": "system", "value": "s"}, {"from": "human", "value": "a"}], "has no assistant turn"),
    ],
)
def test_bad_conversations_name_task_row_and_turn(turns: list[dict[str, str]], says: str) -> None:
    rows = [{"conversations": SHAREGPT}, {"conversations": turns}]
    with pytest.raises(UserInputError, match="task 'chat', row chat:1") as err:
        _pass(rows, Conversation(format="sharegpt"))
    assert says in str(err.value)


def _chat_card(tmp_path: Path, **changes: Any) -> Path:
    shutil.copytree(CHAT, tmp_path / "chat")
    card = yaml.safe_load((tmp_path / "chat" / "chat.yaml").read_text(encoding="utf-8"))
    card["output"] = {"dir": str(tmp_path / "datasets")}
    card.update(changes)
    path = tmp_path / "chat" / "chat.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False), encoding="utf-8")
    return path


def test_chat_card_builds_conversations_datasets_loads(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    result = build(_chat_card(tmp_path))
    train = datasets.load_dataset("parquet", data_files=str(result.version_dir / "train.parquet"), split="train")
    row = train[0]
    assert {"prompt", "completion", "tools"} <= set(train.column_names)
    roles = [m["role"] for m in [*row["prompt"], *row["completion"]]]
    assert roles[0] == "system" and "tool" in roles and roles[-1] == "assistant"
    assert json.loads(row["tools"])[0]["function"]["name"] == "get_weather"
    assert build(_chat_card(tmp_path / "again")).version_id == result.version_id  # deterministic


def test_bad_row_in_a_build_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cardtune.cli import app

    card = _chat_card(tmp_path)
    data = card.parent / "data" / "tool_calls.sharegpt.jsonl"
    lines = data.read_text(encoding="utf-8").splitlines()
    bad = json.loads(lines[3])
    bad["conversations"][1]["value"] = '{"name": "get_weather", "arguments": "{"}'
    data.write_text("\n".join([*lines[:3], json.dumps(bad), *lines[4:]]) + "\n", encoding="utf-8")
    out = CliRunner().invoke(app, ["build", str(card)])
    assert out.exit_code == 1
    assert "task 'tool_chat', row tool_chat:3, turn 2:" in " ".join(out.output.split())
    assert not any((tmp_path / "datasets").glob("chat/*/manifest.json"))
