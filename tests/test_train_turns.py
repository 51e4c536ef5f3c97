"""Every assistant turn trained: the mask equals exactly the assistant spans, token by token, for each built-in
template and real templates from axolotl and llama.cpp (tests/data/chat_templates); the per-turn parity check and
its cause classes; `turns: last`, `roles`, `train_on_eot`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cardtune.train import chat, models, parity

DATA = Path(__file__).parent / "data" / "chat_templates"
SYSTEM = {"role": "system", "content": "Answer briefly."}
TURNS = [
    {"role": "user", "content": "Name a red fruit."},
    {"role": "assistant", "content": "An apple."},
    {"role": "user", "content": "And a yellow one?"},
    {"role": "assistant", "content": "A banana."},
    {"role": "user", "content": "Which is sweeter?"},
    {"role": "assistant", "content": "The banana, usually."},
]
TOOL_TURNS = [
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
# (template, end-of-turn marker each assistant span ends with, declared end_of_turn, needs a system turn)
TEMPLATES: list[tuple[str | Path, str, tuple[str, ...], bool]] = [
    ("chatml", "<|im_end|>", (), True),
    ("llama-3", "<|eot_id|>", (), True),
    ("mistral", "<|endoftext|>", (), True),
    ("alpaca", "<|endoftext|>", (), True),
    (DATA / "axolotl" / "phi_35.jinja", "<|end|>", ("<|end|>",), True),
    (DATA / "axolotl" / "gemma.jinja", "<end_of_turn>", ("<end_of_turn>",), False),
]


def _loaded(template: str | Path | None, end_of_turn: tuple[str, ...] = ()) -> models.Loaded:
    tok = models.default_tokenizer()
    loaded = models.Loaded(models.default_model(tok, 0), tok, "default", is_default=True)
    models.apply_chat_template_choice(loaded, template, end_of_turn=end_of_turn, add_special_tokens=bool(end_of_turn))
    return loaded


def _row(msgs: list[dict[str, Any]], ref: str = "t:0", **extra: Any) -> dict[str, Any]:
    return {"task": "t", "template_id": "", "source_ref": ref, "prompt": msgs[:-1], "completion": msgs[-1:], **extra}


def _expected_by_text(tok: Any, msgs: list[dict[str, Any]], eot: str, policy: chat.TurnPolicy) -> list[int]:
    """The assistant spans found in the rendered *text* (independently of the token-level code): each trained turn
    from the end of the text rendered up to it with the generation prompt, through its end-of-turn marker."""
    text = tok.apply_chat_template(chat.template_messages(msgs), tokenize=False)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant" or not policy.trains(m):
            continue
        head = tok.apply_chat_template(chat.template_messages(msgs[:i]), tokenize=False, add_generation_prompt=True)
        assert text.startswith(head)
        end = text.index(eot, len(head) + text[len(head) :].index(m["content"].strip() or "get_weather"))
        spans.append((len(head), end + (len(eot) if policy.train_on_eot else 0)))
    return [int(any(a <= s and e <= b for a, b in spans)) for s, e in enc["offset_mapping"]]


@pytest.mark.parametrize(("template", "eot", "declared", "system"), TEMPLATES, ids=lambda v: getattr(v, "stem", v))
def test_exactly_the_assistant_spans_are_trained_on_three_turn_rows(
    template: str | Path, eot: str, declared: tuple[str, ...], system: bool
) -> None:
    loaded = _loaded(template, declared)
    tok, stops = loaded.tokenizer, models.stop_token_ids(loaded)
    msgs = [SYSTEM, *TURNS] if system else TURNS
    policy = chat.TurnPolicy()
    ids, mask = chat.conversation_features(tok, _row(msgs), {}, stops, policy)
    assert mask == _expected_by_text(tok, msgs, eot, policy)
    trained = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
    for m in msgs:
        if m["role"] == "assistant":
            assert m["content"].strip() in trained
    assert "Name a red fruit" not in trained and "Answer briefly" not in trained
    assert trained.count(eot) == 3  # each turn ends at its end-of-turn token, which is trained
    result = parity.check_parity(tok, [_row(msgs)], conversational=True, stop_ids=stops, policy=policy)
    assert result.turns_checked == 3


TOOLS = (
    '[{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.", '
    '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]'
)


@pytest.mark.parametrize("template", ["chatml", "llama-3"])
def test_tool_calls_are_trained_tool_results_never(template: str) -> None:
    loaded = _loaded(template)
    tok, stops = loaded.tokenizer, models.stop_token_ids(loaded)
    row = _row([SYSTEM, *TOOL_TURNS], tools=TOOLS)
    ids, mask = chat.conversation_features(tok, row, {}, stops, chat.TurnPolicy())
    trained = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert "get_weather" in trained and "Oslo" in trained and "rainy in Oslo" in trained
    assert '"sky"' not in trained  # the tool's output is context, never trained
    assert "Weather of a city" in tok.decode(ids[: mask.index(1)])  # the row's tools are rendered into the context
    parity.check_parity(tok, [row], conversational=True, stop_ids=stops, policy=chat.TurnPolicy())
    only_answers = chat.TurnPolicy(roles=("assistant",))
    ids, mask = chat.conversation_features(tok, row, {}, stops, only_answers)
    trained = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert "get_weather" not in trained and "rainy in Oslo" in trained
    parity.check_parity(tok, [row], conversational=True, stop_ids=stops, policy=only_answers)


def test_turns_last_reproduces_the_single_completion_mask() -> None:
    loaded = _loaded("chatml")
    tok, stops = loaded.tokenizer, models.stop_token_ids(loaded)
    row = _row([SYSTEM, *TURNS])
    prompt, full = chat.conversation_ids(tok, row, {})
    ids, mask = chat.conversation_features(tok, row, {}, stops, chat.TurnPolicy(turns="last"))
    assert ids == full and mask == chat.trained_mask(prompt, full, stops)
    assert tok.decode([t for t, m in zip(ids, mask, strict=True) if m]) == "The banana, usually.<|im_end|>"
    _, every = chat.conversation_features(tok, row, {}, stops, chat.TurnPolicy())
    assert sum(every) > sum(mask)


def test_end_of_turn_untrained_when_asked() -> None:
    loaded = _loaded("chatml")
    tok, stops = loaded.tokenizer, models.stop_token_ids(loaded)
    row, policy = _row([SYSTEM, *TURNS]), chat.TurnPolicy(train_on_eot=False)
    ids, mask = chat.conversation_features(tok, row, {}, stops, policy)
    assert mask == _expected_by_text(tok, [SYSTEM, *TURNS], "<|im_end|>", policy)
    assert "<|im_end|>" not in tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
    parity.check_parity(tok, [row], conversational=True, stop_ids=stops, policy=policy)


def test_template_without_markers_gets_the_same_spans_from_per_turn_renders() -> None:
    tagged = _loaded("chatml")
    plain = _loaded(None)
    plain.tokenizer.chat_template = (  # the ChatML template as it was, without {% generation %}
        "{%- for message in messages -%}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant\n{% endif -%}"
    )
    assert not chat.has_generation_markers(plain.tokenizer.chat_template)
    row, stops = _row([SYSTEM, *TURNS]), models.stop_token_ids(tagged)
    assert chat.conversation_features(plain.tokenizer, row, {}, stops, chat.TurnPolicy()) == chat.conversation_features(
        tagged.tokenizer, row, {}, stops, chat.TurnPolicy()
    )


def _failure(template: str, rows: list[dict[str, Any]]) -> parity.ParityError:
    loaded = _loaded(None)
    loaded.tokenizer.chat_template = template
    with pytest.raises(parity.ParityError) as err:
        parity.check_parity(
            loaded.tokenizer,
            rows,
            conversational=True,
            stop_ids=models.stop_token_ids(loaded),
            policy=chat.TurnPolicy(),
        )
    assert err.value.failure.cause in parity.CAUSES
    return err.value


def test_misplaced_generation_block_shows_turn_expected_and_actual_tokens() -> None:
    header_inside = (  # the block also covers the assistant header
        "{%- for message in messages -%}{%- if message['role'] == 'assistant' -%}{% generation %}<|im_start|>assistant\n"
        "{{ message['content'] }}<|im_end|>{% endgeneration %}\n{%- else -%}<|im_start|>{{ message['role'] }}\n"
        "{{ message['content'] }}<|im_end|>\n{%- endif -%}{% endfor -%}"
        "{%- if add_generation_prompt -%}<|im_start|>assistant\n{% endif -%}"
    )
    err = _failure(header_inside, [_row([SYSTEM, *TURNS])])
    assert err.failure.cause == "mask_mismatch"
    assert "turn 3 (assistant)" in str(err) and "expected trained:" in str(err) and "actually trained:" in str(err)
    assert "'<|im_start|>'" in str(err).split("actually trained:")[1]


def test_template_that_rewrites_earlier_turns_is_named_with_the_turn() -> None:
    counting = (  # the system turn says "(long)" once the conversation has more than 4 messages
        "{%- for message in messages -%}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
        "{% if loop.first and messages | length > 4 %} (long){% endif %}<|im_end|>\n"
        "{% endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant\n{% endif -%}"
    )
    err = _failure(counting, [_row([SYSTEM, *TURNS])])
    assert err.failure.cause == "turn_history_changed" and "turn 3 (assistant)" in str(err)
    assert "train.turns: last" in str(err)
    elided = (  # earlier assistant turns render as "..." once a later one follows
        "{%- for message in messages -%}<|im_start|>{{ message['role'] }}\n"
        "{{ message['content'] if message['role'] != 'assistant' or loop.last else '...' }}<|im_end|>\n"
        "{% endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant\n{% endif -%}"
    )
    err = _failure(elided, [_row([SYSTEM, *TURNS])])
    assert err.failure.cause == "completion_not_verbatim" and "turn 3 (assistant)" in str(err)


def test_template_that_refuses_the_alternation_names_the_turn() -> None:
    strict = (
        "{%- for message in messages -%}{%- if message['role'] == 'user' and loop.previtem is defined and "
        "loop.previtem['role'] == 'user' -%}{{ raise_exception('roles must alternate') }}{%- endif -%}"
        "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor -%}"
        "{%- if add_generation_prompt -%}<|im_start|>assistant\n{% endif -%}"
    )
    two_users = [TURNS[0], {"role": "user", "content": "Hello?"}, TURNS[1]]
    err = _failure(strict, [_row(two_users, "chat:7")])
    assert err.failure.cause == "render_error"
    assert "row chat:7" in str(err) and "turn 2" in str(err) and "roles must alternate" in str(err)


def test_qwen3_drops_earlier_think_blocks_so_all_turns_is_refused_and_last_passes() -> None:
    """axolotl's Qwen3 template renders an empty think block only in the final assistant turn: trained on every
    turn, the earlier ones would see a context inference never shows (TRL ships a patched training template)."""
    loaded = _loaded(DATA / "axolotl" / "qwen3.jinja")
    tok, stops, row = loaded.tokenizer, models.stop_token_ids(loaded), _row([SYSTEM, *TURNS])
    with pytest.raises(parity.ParityError) as err:
        parity.check_parity(tok, [row], conversational=True, stop_ids=stops, policy=chat.TurnPolicy())
    assert err.value.failure.cause == "turn_history_changed" and "turn 3 (assistant)" in str(err.value)
    parity.check_parity(tok, [row], conversational=True, stop_ids=stops, policy=chat.TurnPolicy(turns="last"))


def test_hermes_tool_results_render_differently_when_last_so_the_turn_after_is_refused() -> None:
    """llama.cpp's Hermes-2-Pro tool-use template closes a final tool response without the newline it renders when
    a turn follows: the assistant turn after a tool result is refused (naming it), not trained on a wrong span."""
    loaded = _loaded(DATA / "llama.cpp" / "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja")
    tok, stops = loaded.tokenizer, models.stop_token_ids(loaded)
    with pytest.raises(parity.ParityError) as err:
        parity.check_parity(
            tok,
            [_row([SYSTEM, *TOOL_TURNS], tools=TOOLS)],
            conversational=True,
            stop_ids=stops,
            policy=chat.TurnPolicy(),
        )
    assert err.value.failure.cause == "turn_history_changed" and "turn 5 (assistant)" in str(err.value)
    plain = _row([SYSTEM, *TURNS], tools=TOOLS)  # without tool turns every assistant span is exact
    ids, mask = chat.conversation_features(tok, plain, {}, stops, chat.TurnPolicy())
    assert tok.decode([t for t, m in zip(ids, mask, strict=True) if m]) == (
        "An apple.<|im_end|>A banana.<|im_end|>The banana, usually.<|im_end|>"
    )
    parity.check_parity(tok, [plain], conversational=True, stop_ids=stops, policy=chat.TurnPolicy())


@pytest.mark.slow
def test_chat_card_tunes_the_embedded_model_on_every_assistant_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import shutil

    from cardtune.train.run import tune

    shutil.copytree(Path(__file__).resolve().parent.parent / "data_cards" / "chat", tmp_path / "chat")
    monkeypatch.chdir(tmp_path)
    result = tune(tmp_path / "chat" / "chat.yaml", output=tmp_path / "runs", max_steps=2, progress=False)
    record = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["global_step"] == 2 and record["parity"]["rows_checked"] > 0
