"""Pre-flight checks without training: the embedded tokenizer, chat-template parity and the length check."""

from __future__ import annotations

from typing import Any

import pytest
from _train_data import _frame, _rows

from cardtune.curate.errors import UserInputError
from cardtune.train import lengths, models, parity
from cardtune.train.schema import BUILTIN_TEMPLATES


@pytest.fixture(scope="module")
def loaded() -> models.Loaded:
    tok = models.default_tokenizer()
    return models.Loaded(models.default_model(tok, 0), tok, "default", is_default=True)


def _rows_for(mode: str) -> list[dict[str, Any]]:
    return _frame(_rows("sentiment", 6, 0) + _rows("echo", 6, 1), mode).to_dicts()


def test_default_tokenizer_is_small_and_deterministic() -> None:
    a, b = models.default_tokenizer(), models.default_tokenizer()
    assert len(a) <= 1024
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    text = "The movie was great. Is it positive?"
    assert a.decode(a(text)["input_ids"]) == text


@pytest.mark.parametrize("template", [None, *BUILTIN_TEMPLATES])
def test_builtin_chat_templates_pass_parity(loaded: models.Loaded, template: str | None, tmp_path: Any) -> None:
    tok = models.default_tokenizer()
    here = models.Loaded(loaded.model, tok, "default", True)
    models.apply_chat_template_choice(here, template)
    result = parity.check_parity(
        tok, _rows_for("instruction"), conversational=True, stop_ids=models.stop_token_ids(here)
    )
    assert result.rows_checked == 12


def test_finetune_rows_pass_parity(loaded: models.Loaded) -> None:
    rows = _rows_for("finetune")
    parity.check_parity(loaded.tokenizer, rows, conversational=False, stop_ids=models.stop_token_ids(loaded))


BROKEN_PREFIX = """{%- for m in messages -%}<|im_start|>{{ m['role'] }}: {{ m['content'] }}<|im_end|>
{% endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant
{% endif -%}"""
BROKEN_NO_EOT = """{%- for m in messages -%}<|im_start|>{{ m['role'] }}
{{ m['content'] }}{% if m['role'] != 'assistant' %}<|im_end|>{% endif %}
{% endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant
{% endif -%}"""


def test_parity_catches_generation_prompt_that_differs_from_training(loaded: models.Loaded) -> None:
    tok = models.default_tokenizer()
    tok.chat_template = BROKEN_PREFIX
    with pytest.raises(UserInputError) as err:
        parity.check_parity(tok, _rows_for("instruction"), conversational=True, stop_ids=models.stop_token_ids(loaded))
    msg = str(err.value)
    assert "not a prefix" in msg and "'Ċ'" not in msg
    assert "prompt (inference)" in msg and "training sequence" in msg and "':'" in msg  # the offending tokens


def test_parity_catches_missing_end_of_turn(loaded: models.Loaded) -> None:
    tok = models.default_tokenizer()
    tok.chat_template = BROKEN_NO_EOT
    with pytest.raises(UserInputError, match="never learn to stop") as err:
        parity.check_parity(tok, _rows_for("instruction"), conversational=True, stop_ids=models.stop_token_ids(loaded))
    assert "trained tokens: [" in str(err.value)


def test_parity_catches_tokens_merging_across_the_boundary(loaded: models.Loaded) -> None:
    # "...Options: yes, no" + "no": the boundary tokens merge (' no' + 'no' -> ' n', 'on', 'o')
    rows = [{**r, "prompt": r["prompt"].removesuffix("\nAnswer:"), "completion": "no"} for r in _rows_for("finetune")]
    with pytest.raises(UserInputError, match="merge across the prompt/completion boundary"):
        parity.check_parity(loaded.tokenizer, rows, conversational=False, stop_ids=models.stop_token_ids(loaded))


def test_parity_without_any_chat_template(loaded: models.Loaded) -> None:
    tok = models.default_tokenizer()
    tok.chat_template = None
    with pytest.raises(UserInputError, match=r"no chat template: set `train\.chat_template`"):
        parity.check_parity(tok, _rows_for("instruction"), conversational=True, stop_ids={1})


def test_length_check_truncate_drop_and_impossible(loaded: models.Loaded) -> None:
    from datasets import Dataset

    ds = Dataset.from_list(_frame(_rows("sentiment", 8, 0) + _rows("echo", 8, 1), "instruction").to_dicts())
    tok = loaded.tokenizer
    p_len, f_len = lengths.lengths(tok, ds, True)
    cut = sorted(f_len)[len(f_len) // 2]
    kept, report = lengths.check_lengths(tok, ds, conversational=True, max_length=cut, overlong="truncate")
    assert len(kept) == 16 and report.overlong == sum(x > cut for x in f_len)
    assert "truncated" in report.message()
    kept, report = lengths.check_lengths(tok, ds, conversational=True, max_length=cut, overlong="drop")
    assert len(kept) == 16 - report.overlong and "dropped" in report.message()
    with pytest.raises(UserInputError, match="every prompt is at least that long"):
        lengths.check_lengths(tok, ds, conversational=True, max_length=min(p_len), overlong="truncate")


DROPS_ASSISTANT = """{%- for m in messages -%}{% if m['role'] != 'assistant' %}<|im_start|>{{ m['role'] }}
{{ m['content'] }}<|im_end|>
{% endif %}{% endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant
{% endif -%}"""


def test_parity_names_a_template_that_drops_assistant_turns(loaded: models.Loaded) -> None:
    """Was a StopIteration traceback: the training render is a strict prefix of the prompt."""
    tok = models.default_tokenizer()
    tok.chat_template = DROPS_ASSISTANT
    with pytest.raises(UserInputError, match="the chat template drops assistant turns"):
        parity.check_parity(tok, _rows_for("instruction"), conversational=True, stop_ids=models.stop_token_ids(loaded))
