"""`cardtune eval` on conversations: the loss per assistant turn (checked against the model's own loss on each
span alone) and generation of the final assistant turn from the history (tool calls, results and tools included)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cardtune.train import chat, evaluate, models, turn_loss

TOOLS = json.dumps([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Weather in Oslo?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": None, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
        ],
    },
    {"role": "tool", "content": '{"sky": "rainy"}', "name": "get_weather"},
    {"role": "assistant", "content": "It is rainy in Oslo."},
    {"role": "user", "content": "Thanks!"},
    {"role": "assistant", "content": "You are welcome."},
]


def _loaded(template: str = "chatml") -> models.Loaded:
    tok = models.default_tokenizer()
    loaded = models.Loaded(models.default_model(tok, 0), tok, "default", is_default=True)
    models.apply_chat_template_choice(loaded, template, end_of_turn=(), add_special_tokens=False)
    return loaded


def _row(msgs: list[dict[str, Any]], template_id: str = "") -> dict[str, Any]:
    return {"task": "chat", "template_id": template_id, "prompt": msgs[:-1], "completion": msgs[-1:], "tools": TOOLS}


def test_loss_per_assistant_turn_equals_the_models_loss_on_each_span() -> None:
    import torch

    loaded = _loaded()
    rows = [_row(CONVERSATION), _row(CONVERSATION[:5]), _row(CONVERSATION[1:3] + CONVERSATION[6:], "tpl")]
    out = turn_loss.turn_losses(loaded, rows, batch_size=2)  # two conversations of different lengths, padded
    assert out["rows"] == 2 and out["skipped"] == 0  # the templated row is not a conversation row
    assert [(t["assistant_turn"], t["rows"]) for t in out["turns"]] == [(1, 2), (2, 2), (3, 1)]
    stops = models.stop_token_ids(loaded)
    for k, got in enumerate(out["turns"]):
        nll, n = 0.0, 0
        for row in rows[:2]:
            msgs = [*row["prompt"], *row["completion"]]
            full, spans = chat.turn_spans(loaded.tokenizer, msgs, chat.render_kwargs(row, {}), stops)
            if k >= len(spans):
                continue
            a, b = spans[k]
            labels = [-100] * len(full)
            labels[a:b] = full[a:b]
            with torch.no_grad():
                loss = loaded.model(input_ids=torch.tensor([full]), labels=torch.tensor([labels])).loss
            nll, n = nll + float(loss) * (b - a), n + (b - a)
        assert got["tokens"] == n
        assert got["loss"] == pytest.approx(nll / n, abs=1e-4)
    table = turn_loss.turn_loss_table({"turn_loss": out})
    assert table is not None and table.row_count == 3
    assert turn_loss.turn_loss_table({"tasks": {}}) is None


def test_generation_of_the_final_turn_sees_the_whole_history_and_tools() -> None:
    loaded = _loaded()
    tok = loaded.tokenizer
    row = _row(CONVERSATION)
    ids = evaluate._prompt_ids(tok, row, conversational=True)
    full, spans = chat.turn_spans(tok, CONVERSATION, chat.render_kwargs(row, {}), models.stop_token_ids(loaded))
    assert ids == full[: spans[-1][0]]  # exactly what precedes the final assistant turn, generation prompt included
    text = tok.decode(ids)
    assert "get_weather" in text and '{"sky": "rainy"}' in text and "Thanks!" in text and "<tools>" in text
    (out,) = evaluate._generate(loaded, [row], True, max_new=3, batch_size=1)
    assert isinstance(out, str)


@pytest.mark.slow
def test_eval_of_a_chat_run_stores_and_prints_the_loss_per_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cardtune.cli import app
    from cardtune.train.run import tune

    shutil.copytree(Path(__file__).resolve().parent.parent / "data_cards" / "chat", tmp_path / "chat")
    monkeypatch.chdir(tmp_path)
    run = tune(tmp_path / "chat" / "chat.yaml", output=tmp_path / "runs", max_steps=1, progress=False).run_dir
    out = CliRunner().invoke(app, ["eval", str(run), "--split", "eval", "--limit", "3"], terminal_width=200)
    assert out.exit_code == 0, out.output
    result = json.loads((run / "eval.json").read_text(encoding="utf-8"))
    turns = result["turn_loss"]["turns"]
    assert result["turn_loss"]["rows"] == 3 and turns[0]["assistant_turn"] == 1 and turns[0]["rows"] == 3
    assert all(t["loss"] > 0 for t in turns)
    assert "loss per assistant turn" in out.output
    assert all(s["output"] is not None for s in result["samples"])
