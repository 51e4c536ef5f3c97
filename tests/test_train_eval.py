"""``eval``, ``compare``, task adapters on a tuned base, ``adapters merge``, and the CLI around them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _train_data import write_card, write_version
from typer.testing import CliRunner

from cardtune.cli import app
from cardtune.curate.errors import UserInputError
from cardtune.train import adapters, compare, evaluate
from cardtune.train.run import tune


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    version = write_version(root / "datasets", "instruction")
    out = {"version": version}
    for method in ("full", "lora"):
        card = write_card(root / f"{method}.yaml", method=method, name=f"toy-{method}")
        out[method] = tune(card, output=root / "runs", version_dir=version, progress=False).run_dir
    return out


def test_normalize() -> None:
    assert evaluate.normalize("  The Answer: Yes! ") == "answer yes"


@pytest.mark.slow
def test_eval_scores_seen_and_held_out_tasks(runs: dict[str, Path]) -> None:
    result = evaluate.evaluate(runs["lora"], split="all", limit=3)
    assert set(result["tasks"]) == {"sentiment", "echo", "negation"}
    assert result["tasks"]["negation"]["held_out"] and not result["tasks"]["echo"]["held_out"]
    assert result["tasks"]["sentiment"]["n"] == 3
    assert "accuracy" in result["tasks"]["sentiment"] and "accuracy" not in result["tasks"]["echo"]
    assert {"exact_match", "rougeL"} <= set(result["tasks"]["echo"])
    assert result["aggregate"]["seen"]["tasks"] == 2 and result["aggregate"]["held_out"]["tasks"] == 1
    assert json.loads((runs["lora"] / "eval.json").read_text())["split"] == "all"
    only_held = evaluate.evaluate(runs["lora"], split="heldout")
    assert set(only_held["tasks"]) == {"negation"} and only_held["tasks"]["negation"]["n"] == 6


@pytest.mark.slow
def test_choice_loglik_matches_unbatched_computation(runs: dict[str, Path]) -> None:
    import torch

    from cardtune.train import data, models

    loaded = adapters.load_run(runs["full"])
    version = data.open_version(json.loads((runs["full"] / "run.json").read_text())["dataset"]["dir"])
    row = version.splits["eval"].to_list()[0]
    stops = models.stop_token_ids(loaded)
    manual = []
    with torch.inference_mode():
        for choice in row["answer_choices"]:
            ctx, cont = evaluate._choice_ids(loaded.tokenizer, row, choice, True, stops)
            logits = loaded.model(input_ids=torch.tensor([ctx + cont])).logits[0]
            logp = torch.log_softmax(logits, -1)
            manual.append(float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont))))
        batched = evaluate._rank_choices(loaded, [row, row], True, batch_size=3)
    gold = row["answer_choices"].index(row["completion"][0]["content"])
    assert batched[0] == batched[1]
    assert batched[0] is not None and batched[0][0] == (manual.index(max(manual)) == gold)


@pytest.mark.slow
def test_compare_table(runs: dict[str, Path]) -> None:
    for method in ("full", "lora"):
        evaluate.evaluate(runs[method], limit=2)
    collected = compare.collect([runs["full"], runs["lora"]])
    body = dict(compare.rows(collected))
    assert body["trainable params"][0] != body["trainable params"][1]
    assert body["method"] == ["instruction · full", "instruction · lora"]
    assert "seen (macro)" in body and "held-out (macro)" in body and "negation (held-out)" in body


def test_compare_needs_eval(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no such run directory"):
        compare.collect([tmp_path / "nope"])


@pytest.mark.slow
def test_task_adapter_on_a_tuned_base_and_merge(runs: dict[str, Path], tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    card = write_card(tmp_path / "task.yaml", method="lora", name="task", base=str(runs["lora"]))
    task = tune(card, output=tmp_path / "runs", version_dir=runs["version"], progress=False)
    assert task.info is not None and task.info.base_run == str(runs["lora"])
    assert not (task.run_dir / "base_model").exists()
    stacked = adapters.load_run(task.run_dir)
    merged_dir = adapters.merge(task.run_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    ids = torch.tensor([[3, 10, 20, 30, 40]])
    with torch.inference_mode():
        assert torch.allclose(stacked.model(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)
    with pytest.raises(UserInputError, match="already exists"):
        adapters.merge(task.run_dir)
    with pytest.raises(UserInputError, match="already holds full weights"):
        adapters.merge(runs["full"])


@pytest.mark.slow
def test_cli_tune_eval_compare_merge(tmp_path: Path, runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    card = write_card(tmp_path / "cli.yaml", method="lora", name="cli")
    runner = CliRunner()
    res = runner.invoke(app, ["tune", str(card), "--version-dir", str(runs["version"]), "--max-steps", "2"])
    assert res.exit_code == 0, res.output
    assert "loss" in res.output and "done" in res.output
    (run,) = (tmp_path / "runs").iterdir()
    res = runner.invoke(app, ["eval", str(run), "--limit", "2", "--split", "eval"])
    assert res.exit_code == 0, res.output
    assert "macro" in res.output
    res = runner.invoke(app, ["compare", str(run), str(run)])
    assert res.exit_code == 0 and "trainable params" in res.output, res.output
    res = runner.invoke(app, ["adapters", "merge", str(run), "-o", str(tmp_path / "merged")])
    assert res.exit_code == 0 and (tmp_path / "merged" / "config.json").is_file(), res.output
    res = runner.invoke(app, ["eval", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "no such run directory" in res.output


def test_cli_help_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys; from cardtune.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
