"""Writes tool_calls.sharegpt.jsonl: small multi-turn tool-calling conversations in LLaMA-Factory's ShareGPT layout.

Deterministic (seeded). Each row has `conversations` ({from, value} with human / gpt / function_call /
observation turns), a `system` prompt and `tools` (JSON text of the tool schemas), as LLaMA-Factory's
`glaive_toolcall` sample does. Run: python data_cards/chat/data/make_chat_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
    {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
]
CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Tokyo", "Quito", "Rome", "Perth"]
SKIES = ["sunny", "cloudy", "rainy", "windy"]


def conversation(r: random.Random) -> list[dict[str, str]]:
    city = r.choice(CITIES)
    sky, temp = r.choice(SKIES), r.randint(-5, 35)
    a, b = r.randint(1, 60), r.randint(1, 60)
    turns = [
        {"from": "human", "value": f"What is the weather in {city}?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": city}})},
        {"from": "observation", "value": json.dumps({"sky": sky, "celsius": temp})},
        {"from": "gpt", "value": f"It is {sky} in {city}, {temp} degrees."},
        {"from": "human", "value": f"And what is {a} plus {b}?"},
    ]
    if r.random() < 0.5:
        turns += [
            {"from": "function_call", "value": json.dumps({"name": "add", "arguments": {"a": a, "b": b}})},
            {"from": "observation", "value": str(a + b)},
        ]
    turns.append({"from": "gpt", "value": f"{a} plus {b} is {a + b}."})
    return turns


def main() -> None:
    r = random.Random(13)
    out = Path(__file__).with_name("tool_calls.sharegpt.jsonl")
    with out.open("w", encoding="utf-8") as f:
        for _ in range(48):
            row = {
                "conversations": conversation(r),
                "system": "You are a helpful assistant with tools.",
                "tools": json.dumps(TOOLS),
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
