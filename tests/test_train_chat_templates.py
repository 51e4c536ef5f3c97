"""Real chat templates (tests/data/chat_templates, from axolotl and llama.cpp) through the parity check; declared
end-of-turn tokens and template kwargs in the card; each refusal names its cause class."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _train_data import _frame, _rows, write_card, write_version

from cardtune.curate.card.load import load_card
from cardtune.curate.errors import UserInputError
from cardtune.train import chat, models, parity

DATA = Path(__file__).parent / "data" / "chat_templates"
GEMMA = DATA / "axolotl" / "gemma.jinja"
PHI35 = DATA / "axolotl" / "phi_35.jinja"
QWEN3 = DATA / "axolotl" / "qwen3.jinja"
GPT_OSS = DATA / "llama.cpp" / "openai-gpt-oss-120b.jinja"
R1 = DATA / "llama.cpp" / "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"
HERMES = DATA / "llama.cpp" / "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja"
GLM = DATA / "llama.cpp" / "GLM-4.6.jinja"


def _loaded(
    template: Path | str | None, end_of_turn: tuple[str, ...] = (), add: bool = False, **kwargs: Any
) -> models.Loaded:
    tok = models.default_tokenizer()
    loaded = models.Loaded(models.default_model(tok, 0), tok, "default", is_default=True)
    models.apply_chat_template_choice(loaded, template, end_of_turn=end_of_turn, add_special_tokens=add, kwargs=kwargs)
    return loaded


def _rows_() -> list[dict[str, Any]]:
    """Single-turn rows without a system message (several real templates refuse a system role)."""
    rows = _frame(_rows("sentiment", 6, 0) + _rows("echo", 6, 1), "instruction").to_dicts()
    return [{**r, "prompt": [m for m in r["prompt"] if m["role"] != "system"]} for r in rows]


def _check(loaded: models.Loaded, rows: list[dict[str, Any]] | None = None) -> parity.ParityResult:
    return parity.check_parity(
        loaded.tokenizer,
        rows or _rows_(),
        conversational=True,
        stop_ids=models.stop_token_ids(loaded),
        kwargs=loaded.chat_template_kwargs,
    )


def _cause(loaded: models.Loaded, rows: list[dict[str, Any]] | None = None) -> parity.ParityError:
    with pytest.raises(parity.ParityError) as err:
        _check(loaded, rows)
    assert err.value.failure.cause in parity.CAUSES
    return err.value


def test_undeclared_end_of_turn_is_named_and_declaring_it_passes() -> None:
    err = _cause(_loaded(GEMMA))
    assert err.failure.cause == "end_of_turn_not_a_token"
    assert "'<end_of_turn>' is not a single token" in str(err) and "add_special_tokens: true" in str(err)
    loaded = _loaded(GEMMA, ("<end_of_turn>",), add=True)
    result = _check(loaded)
    assert "<end_of_turn>" in result.stop_tokens
    eot = loaded.tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert eot in loaded.model.generation_config.eos_token_id  # generation stops there too
    assert loaded.model.get_input_embeddings().weight.shape[0] == len(loaded.tokenizer)  # resized


def test_declared_marker_that_is_not_a_token_without_adding_it() -> None:
    with pytest.raises(UserInputError, match=r"'<end_of_turn>' is not a single token .*`add_special_tokens: true`"):
        _loaded(GEMMA, ("<end_of_turn>",), add=False)


def test_fixed_template_text_inside_the_turn_is_accepted_and_reported() -> None:
    result = _check(_loaded(GPT_OSS, ("<|return|>",), add=True))
    assert result.around_completion == ("<|channel|>final<|message|>", "")
    result = _check(_loaded(QWEN3))  # an empty think block the model learns to write
    assert "</think>" in result.around_completion[0]


def test_template_kwargs_make_the_generation_prompt_agree() -> None:
    assert "enable_thinking" in chat.template_variables(QWEN3.read_text())
    result = _check(_loaded(QWEN3, enable_thinking=False))
    assert result.around_completion == ("", "")  # the generation prompt now holds the empty think block


def test_tokens_after_the_stop_token_are_neither_checked_nor_trained() -> None:
    assert _cause(_loaded(PHI35)).failure.cause == "end_of_turn_not_a_token"  # `<|end|>` is text here
    result = _check(_loaded(PHI35, ("<|end|>",), add=True))
    assert result.untrained_after_stop == "\n"
    chatml = _loaded("chatml")  # `<|im_end|>` then "\n": the newline is not trained
    prompt, full = chat.conversation_ids(chatml.tokenizer, _rows_()[0], {})
    mask = chat.trained_mask(prompt, full, models.stop_token_ids(chatml))
    last = max(i for i, m in enumerate(mask) if m)
    assert chatml.tokenizer.convert_ids_to_tokens(full[last]) == "<|im_end|>"
    assert chatml.tokenizer.decode(full[last + 1 :]) == "\n" and sum(mask) == len(full) - len(prompt) - 1


def test_marker_text_before_a_later_stop_is_noted_not_refused() -> None:
    loaded = _loaded(None)
    loaded.tokenizer.chat_template = PHI35.read_text().replace("<|end|>\n'", "<|end|>\n' + eos_token")
    result = _check(loaded)
    assert result.around_completion[1].strip() == "<|end|>" and any("'<|end|>'" in n for n in result.notes)


def test_generation_prompt_that_opens_a_think_block_is_refused() -> None:
    err = _cause(_loaded(R1, ("<｜end▁of▁sentence｜>",), add=True))
    assert err.failure.cause == "generation_prompt_mismatch"
    assert "the generation prompt opens '<think>\\n" in str(err) and "the training render does not" in str(err)


def test_template_without_end_of_turn_is_refused() -> None:
    err = _cause(_loaded(GLM))
    assert err.failure.cause == "no_end_of_turn" and "never learn to stop" in str(err)


def test_tool_template_needs_its_tools() -> None:
    err = _cause(_loaded(HERMES))
    assert err.failure.cause == "render_error" and "not iterable" in str(err)
    assert "tools" in chat.template_variables(HERMES.read_text(), provided=chat.PROVIDED - {"tools"})
    _check(_loaded(HERMES, tools=[]))
    row = {
        **_rows_()[0],
        "tools": json.dumps([{"type": "function", "function": {"name": "f", "description": "d", "parameters": {}}}]),
    }
    prompt, _ = chat.conversation_ids(_loaded(HERMES).tokenizer, row, {})  # per-row tools, as TRL reads them
    assert '"name": "f"' in models.default_tokenizer().decode(prompt)


def test_kwargs_written_into_the_template_render_the_same_as_passing_them() -> None:
    text = "\n  {{ messages[0]['content'] }}{% if enable_thinking %}<think>{% endif %}{{ tools | tojson }}"
    tok = models.default_tokenizer()
    msgs = [{"role": "user", "content": "hi"}]
    for kwargs in ({"enable_thinking": True, "tools": [{"a": 'x"y', "b": None}]}, {"enable_thinking": False}):
        tok.chat_template = text
        passed = tok.apply_chat_template(msgs, tokenize=False, **kwargs)
        tok.chat_template = chat.with_defaults(text, kwargs)
        assert tok.apply_chat_template(msgs, tokenize=False) == passed
    qwen = _loaded(QWEN3, enable_thinking=False).tokenizer  # the saved tokenizer renders the trained context
    assert qwen.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True).endswith("</think>\n\n")


HISTORY = """{%- for m in messages -%}<|im_start|>{{ m['role'] }}
{{ m['content'] }}{% if m['role'] == 'user' and messages[-1]['role'] == 'assistant' %} (answered){% endif %}<|im_end|>
{% endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant
{% endif -%}"""
VARIES = """{%- for m in messages -%}<|im_start|>{{ m['role'] }}
{% if m['role'] == 'assistant' %}{{ messages[0]['content'][-3:] }}: {% endif %}{{ m['content'] }}<|im_end|>
{% endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant
{% endif -%}"""
STOP_FIRST = """{%- for m in messages -%}<|im_start|>{{ m['role'] }}
{% if m['role'] == 'assistant' %}<|im_end|>{% endif %}{{ m['content'] }}<|im_end|>
{% endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant
{% endif -%}"""
REWRITES = """{%- for m in messages -%}<|im_start|>{{ m['role'] }}
{{ m['content'] | upper }}<|im_end|>
{% endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant
{% endif -%}"""


@pytest.mark.parametrize(
    ("template", "cause", "says"),
    [
        (HISTORY, "history_changed", "changes the turns before the completion"),
        (VARIES, "template_text_varies", "differs between rows"),
        (STOP_FIRST, "stop_before_completion", "comes before the completion"),
        (REWRITES, "completion_not_verbatim", "do not contain the completion verbatim"),
    ],
)
def test_each_refusal_names_its_cause(template: str, cause: str, says: str) -> None:
    loaded = _loaded(None)
    loaded.tokenizer.chat_template = template
    err = _cause(loaded)
    assert err.failure.cause == cause and says in str(err)


def _card(tmp_path: Path, **train: Any) -> Path:
    return write_card(tmp_path / "card.yaml", **train)


def test_card_fields_validate_at_their_lines(tmp_path: Path) -> None:
    (tmp_path / "g.jinja").write_text(GEMMA.read_text())
    card = load_card(_card(tmp_path, chat_template="g.jinja"))
    assert card.train.chat_template is not None and card.train.chat_template.path == "g.jinja"
    assert card.train.model_dump()["chat_template"] == "g.jinja"  # the string form dumps as written
    spec = {"path": "g.jinja", "end_of_turn": ["<end_of_turn>"], "add_special_tokens": True}
    card = load_card(_card(tmp_path, chat_template=spec, chat_template_kwargs={"enable_thinking": False}))
    assert card.train.chat_template is not None and card.train.chat_template.end_of_turn == ["<end_of_turn>"]
    bad = [
        ({"chat_template": {"path": "g.jinja", "edn_of_turn": ["x"]}}, r"\.edn_of_turn: unknown .*'end_of_turn'"),
        ({"chat_template": {"path": "g.jinja", "add_special_tokens": True}}, "needs the `end_of_turn` tokens"),
        ({"chat_template": {"path": "g.jinja", "end_of_turn": ["x", "x"]}}, "listed twice"),
        ({"chat_template_kwargs": {"add_generation_prompt": True}}, "is set by cardtune"),
        ({"chat_template_kwargs": {"tools": "f"}}, "must be a list of mappings"),
        ({"chat_template_kwargs": {"not-a-name": 1}}, "not a template variable name"),
    ]
    for train, match in bad:
        with pytest.raises(UserInputError, match=r"card\.yaml:\d+: train\.chat_template" + r".*" + match):
            load_card(_card(tmp_path, **train))
    with pytest.raises(
        UserInputError, match=r"card\.yaml:\d+: train: .*with method: prompt_tuning: .*never be learned"
    ):
        load_card(_card(tmp_path, chat_template=spec, method="prompt_tuning"))


TURNS = """{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}
{{ m['content'] | trim }}{{ date_string if m['role'] == 'system' else '' }}<end_of_turn>
{% endfor %}{% if add_generation_prompt %}<start_of_turn>assistant
{% endif %}"""


@pytest.mark.slow
def test_tune_with_declared_end_of_turn_and_kwargs(tmp_path: Path) -> None:
    from cardtune.train.adapters import load_run, read_run
    from cardtune.train.run import tune

    # gemma's turn format (its end-of-turn is no token of the embedded tokenizer), with a system role
    (tmp_path / "g.jinja").write_text(TURNS)
    version = write_version(tmp_path / "v", "instruction", n_train=8)
    spec = {"path": "g.jinja", "end_of_turn": ["<end_of_turn>"], "add_special_tokens": True}
    card = _card(tmp_path, chat_template=spec, chat_template_kwargs={"date_string": "1 Jan 2026"}, sft={"max_steps": 1})
    run = tune(card, output=tmp_path / "runs", version_dir=version, progress=False).run_dir
    info = read_run(run)
    assert info.chat_template == spec and info.chat_template_kwargs == {"date_string": "1 Jan 2026"}
    loaded = load_run(run)  # base + adapter with the added token
    eot = loaded.tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert eot in info.stop_token_ids and len(loaded.tokenizer) == models.default_tokenizer().vocab_size + 1
    assert "date_string" in loaded.tokenizer.chat_template  # the defaults travel with the saved tokenizer
    import torch

    embed, ids = loaded.model.get_input_embeddings(), torch.tensor([[eot]])
    with torch.no_grad():
        trained = embed(ids)
        with loaded.model.disable_adapter():
            initial = embed(ids)
    assert not torch.allclose(trained, initial)  # LoRA trained the added token's row (else it could never stop)
    from transformers import AutoModelForCausalLM

    from cardtune.train.adapters import merge

    merged = AutoModelForCausalLM.from_pretrained(merge(run))  # the trained row survives the merge
    with torch.no_grad():
        assert torch.allclose(merged.get_input_embeddings()(ids), trained, atol=1e-5)
