"""``tune``: each method in each mode trains the embedded model on CPU, saves, reloads and generates; resume;
bad input fails before any training step with nothing written under runs/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _train_data import Interrupt as _Interrupt
from _train_data import write_card, write_version

from cardtune.curate.errors import UserInputError
from cardtune.train.adapters import load_run, read_run
from cardtune.train.run import tune


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("versions")
    return {mode: write_version(root, mode) for mode in ("instruction", "finetune")}


def _generate(run_dir: Path, mode: str) -> str:
    loaded = load_run(run_dir)
    tok = loaded.tokenizer
    if mode == "instruction":
        ids = tok.apply_chat_template(
            [{"role": "user", "content": "Repeat the words: red cat"}], add_generation_prompt=True
        )
        ids = ids["input_ids"]
    else:
        ids = tok("Repeat the words: red cat\nAnswer:")["input_ids"]
    import torch

    out = loaded.model.generate(input_ids=torch.tensor([ids]), max_new_tokens=4, do_sample=False)
    assert out.shape[1] > len(ids)
    return str(tok.decode(out[0, len(ids) :]))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["instruction", "finetune"])
@pytest.mark.parametrize("method", ["full", "lora", "prompt_tuning"])
def test_tune_save_reload_generate(tmp_path: Path, versions: dict[str, Path], mode: str, method: str) -> None:
    card = write_card(tmp_path / "card.yaml", mode, method)
    result = tune(card, output=tmp_path / "runs", version_dir=versions[mode], progress=False)
    run = result.run_dir
    assert run.name.startswith(f"toy-{versions[mode].name[:8]}-") and run.name.endswith("Z")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [run.name]  # no partial dirs left
    for name in ("run.json", "card.yaml", "trainer_state.json", "log_history.jsonl", "model"):
        assert (run / name).exists(), name
    assert not (run / "checkpoints").exists()
    info = json.loads((run / "run.json").read_text())
    assert info["dataset"]["version_id"] == versions[mode].name
    assert info["global_step"] == 3 and info["seed"] == 42 and info["device"]["type"] == "cpu"
    assert info["versions"]["trl"] and info["versions"]["torch"]
    assert 0 < info["params"]["trainable"] <= info["params"]["total"]
    assert info["tokens_trained"] > 0 and info["metrics"]["train_loss"] > 0
    assert info["sft"]["bf16"] is False
    assert read_run(run) == result.info and info["format"] == 1  # the record round-trips through run.json
    if method == "full":
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(run / "model")  # plain Hugging Face reload
        assert info["params"]["trainable"] == info["params"]["total"]
    else:
        assert (run / "model" / "adapter_config.json").is_file() and (run / "base_model" / "config.json").is_file()
        assert info["params"]["trainable"] < info["params"]["total"] / 2
    _generate(run, mode)


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tmp_path: Path, versions: dict[str, Path]) -> None:
    card = write_card(tmp_path / "card.yaml", sft={"max_steps": 4, "save_steps": 2})
    runs = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        tune(card, output=runs, version_dir=versions["instruction"], progress=False, callbacks=[_Interrupt()])
    partial = [p for p in runs.iterdir()]
    assert len(partial) == 1 and partial[0].name.startswith(".") and partial[0].name.endswith(".partial")
    assert (partial[0] / "checkpoints" / "checkpoint-2").is_dir()
    result = tune(card, output=runs, version_dir=versions["instruction"], progress=False, resume=True)
    assert result.info is not None
    assert result.info.resumed_from == "checkpoint-2" and result.info.global_step == 4
    assert result.run_dir.name == partial[0].name[1 : -len(".partial")]
    assert [p.name for p in runs.iterdir()] == [result.run_dir.name]
    with pytest.raises(UserInputError, match="nothing to resume"):
        tune(card, output=runs, version_dir=versions["instruction"], progress=False, resume=True)


def _fails_cleanly(tmp_path: Path, version: Path, match: str, **card: Any) -> None:
    path = write_card(tmp_path / "card.yaml", **card)
    with pytest.raises(UserInputError, match=match):
        tune(path, output=tmp_path / "runs", version_dir=version, progress=False)
    assert not (tmp_path / "runs").exists()


def test_missing_and_incomplete_version(tmp_path: Path, versions: dict[str, Path]) -> None:
    _fails_cleanly(tmp_path, tmp_path / "nope", "no such dataset version directory")
    broken = tmp_path / "v"
    broken.mkdir()
    (broken / "train.parquet").write_bytes(b"")
    _fails_cleanly(tmp_path, broken, r"incomplete dataset version \(no manifest.json\)")
    _fails_cleanly(tmp_path, versions["finetune"], "finetune-mode version, but the card's mode is instruction")


def test_hub_model_while_offline(tmp_path: Path, versions: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    _fails_cleanly(
        tmp_path,
        versions["instruction"],
        "'someorg/no-such-model' is not in the local Hugging Face cache and the hub cannot be reached",
        model="someorg/no-such-model",
    )


def test_unreachable_hub_fails_fast(tmp_path: Path, versions: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """No HF_HUB_OFFLINE, but nothing answers at the endpoint: one line within seconds, not a minute of retries."""
    import socket
    import time

    from huggingface_hub import constants

    with socket.socket() as sock:  # a loopback port that is certainly closed: bind, then release it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    _fails_cleanly(tmp_path, versions["instruction"], "the hub cannot be reached", model="someorg/no-such-model")
    assert time.perf_counter() - started < 20


def test_unknown_sft_field(tmp_path: Path, versions: dict[str, Path]) -> None:
    _fails_cleanly(tmp_path, versions["instruction"], "did you mean 'max_length'", sft={"max_lenght": 10})


def test_max_length_below_every_prompt(tmp_path: Path, versions: dict[str, Path]) -> None:
    _fails_cleanly(tmp_path, versions["instruction"], "every prompt is at least that long", sft={"max_length": 8})


def test_chat_template_that_breaks_parity(tmp_path: Path, versions: dict[str, Path]) -> None:
    (tmp_path / "broken.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    _fails_cleanly(tmp_path, versions["instruction"], "never learn to stop", chat_template="broken.jinja")


def test_chat_template_in_finetune_mode(tmp_path: Path, versions: dict[str, Path]) -> None:
    _fails_cleanly(
        tmp_path, versions["finetune"], "finetune mode uses no chat template", mode="finetune", chat_template="chatml"
    )


@pytest.mark.slow
def test_prompt_tuning_the_model_cannot_fit(tmp_path: Path, versions: dict[str, Path]) -> None:
    _fails_cleanly(
        tmp_path,
        versions["instruction"],
        "exceed the context",
        method="prompt_tuning",
        prompt_tuning={"num_virtual_tokens": 2000},
        sft={"max_length": 512},
    )


@pytest.mark.slow
def test_lora_target_modules_peft_cannot_find(tmp_path: Path, versions: dict[str, Path]) -> None:
    _fails_cleanly(
        tmp_path,
        versions["instruction"],
        "cannot set up lora training of 'default'",
        lora={"target_modules": ["qkv_nope"]},
    )
