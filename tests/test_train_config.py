"""card.train → SFTConfig/PEFT config: the allow-list, per-mode/method/device defaults, and field checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from _train_data import write_card

from cardtune.curate.card.load import load_card
from cardtune.curate.errors import UserInputError
from cardtune.train import config as cfg
from cardtune.train.sft_fields import RESERVED, SFT_CONFIG_FIELDS, json_kinds


def test_static_field_list_matches_installed_trl() -> None:
    import typing

    import trl

    hints = typing.get_type_hints(trl.SFTConfig)
    installed = {f.name: json_kinds(hints[f.name]) for f in dataclasses.fields(trl.SFTConfig)}
    assert installed == SFT_CONFIG_FIELDS  # names and the JSON kinds each field's annotation accepts
    assert set(RESERVED) <= set(SFT_CONFIG_FIELDS)


def test_sft_values_of_the_wrong_type_are_caught_by_the_card_loader(tmp_path: Path) -> None:
    card = write_card(tmp_path / "c.yaml", sft={"learning_rate": "fast", "num_train_epochs": 2, "bf16": "yes"})
    with pytest.raises(UserInputError) as err:
        load_card(card)
    messages = [i.message for i in err.value.issues]
    assert any("`learning_rate` must be float or int, got str 'fast'" in m for m in messages)
    assert any("`bf16` must be bool" in m for m in messages) and len(messages) == 2
    card = write_card(tmp_path / "d.yaml", sft={"learning_rate": "2e-4"})
    with pytest.raises(UserInputError, match=r"write 2\.0e-4"):
        load_card(card)


def test_unknown_sft_field_is_caught_by_the_card_loader_with_did_you_mean(tmp_path: Path) -> None:
    card = write_card(tmp_path / "c.yaml", sft={"lerning_rate": 1e-3})
    with pytest.raises(UserInputError) as err:
        load_card(card)
    assert "unknown SFTConfig field 'lerning_rate' (did you mean 'learning_rate'?)" in str(err.value)
    assert f"{card}:" in str(err.value)


def test_reserved_field_says_where_to_set_it(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"set `train\.seed`"):
        load_card(write_card(tmp_path / "c.yaml", sft={"seed": 3}))


@pytest.mark.parametrize(
    ("mode", "method", "lr", "epochs"),
    [("instruction", "lora", 2e-4, 1), ("finetune", "full", 2e-5, 3), ("finetune", "prompt_tuning", 3e-2, 3)],
)
def test_defaults_per_mode_and_method(tmp_path: Path, mode: str, method: str, lr: float, epochs: int) -> None:
    card = load_card(write_card(tmp_path / "c.yaml", mode, method, sft={}))
    kw = cfg.sft_kwargs(card, on_gpu=False)
    assert kw["learning_rate"] == lr
    assert kw["num_train_epochs"] == epochs
    assert kw["completion_only_loss"] is True
    # CPU: fp32, no checkpointing, no packing (TRL 1.16 defaults bf16 and checkpointing on)
    assert kw["bf16"] is False and kw["activation_checkpointing"] is False and kw["packing"] is False
    assert kw["seed"] == card.train.seed and kw["report_to"] == "none"
    assert kw["use_cpu"] is True  # torchrun-started CPU processes join one gloo group only with it
    gpu = cfg.sft_kwargs(card, on_gpu=True)
    assert gpu["bf16"] is True and "use_cpu" not in gpu


def test_card_overrides_defaults_and_cli_overrides_card(tmp_path: Path) -> None:
    card = load_card(write_card(tmp_path / "c.yaml", sft={"learning_rate": 0.5, "max_steps": 7, "weight_decay": 0.1}))
    kw = cfg.sft_kwargs(card, on_gpu=False, max_steps=2)
    assert kw["learning_rate"] == 0.5 and kw["weight_decay"] == 0.1 and kw["max_steps"] == 2


def test_sft_config_is_built_and_quiet_on_cpu(tmp_path: Path) -> None:
    import warnings

    card = load_card(write_card(tmp_path / "c.yaml"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        conf = cfg.make_sft_config(card, str(tmp_path / "out"), cfg.sft_kwargs(card, on_gpu=False))
    assert conf.bf16 is False and conf.activation_checkpointing is False and conf.gradient_checkpointing is False
    assert not (tmp_path / "out").exists()


def test_packing_on_cpu_is_an_error_at_its_line(tmp_path: Path) -> None:
    card = load_card(write_card(tmp_path / "c.yaml", sft={"packing": True}))
    with pytest.raises(UserInputError, match="packing: is a GPU option"):
        cfg.sft_kwargs(card, on_gpu=False)


def test_bad_passthrough_value_is_a_user_error(tmp_path: Path) -> None:
    card = load_card(write_card(tmp_path / "c.yaml", sft={"lr_scheduler_type": "sideways"}))
    with pytest.raises(UserInputError, match="invalid SFTConfig"):
        cfg.make_sft_config(card, str(tmp_path / "out"), cfg.sft_kwargs(card, on_gpu=False))


def test_peft_configs(tmp_path: Path) -> None:
    from peft import LoraConfig, PromptTuningConfig

    lora = load_card(write_card(tmp_path / "a.yaml", method="lora", lora={"r": 4, "alpha": 8}))
    conf = cfg.make_peft_config(lora.train)
    assert isinstance(conf, LoraConfig) and conf.r == 4 and conf.lora_alpha == 8
    assert conf.target_modules == "all-linear"
    pt = load_card(write_card(tmp_path / "b.yaml", method="prompt_tuning", prompt_tuning={"num_virtual_tokens": 5}))
    assert isinstance(cfg.make_peft_config(pt.train), PromptTuningConfig)
    assert cfg.make_peft_config(load_card(write_card(tmp_path / "c.yaml", method="full")).train) is None
