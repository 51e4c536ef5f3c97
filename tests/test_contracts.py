"""The typed contracts between build and training: ``manifest.json`` (format 2) and ``run.json`` round-trip through
their models, and a file of another format is refused with one line (CLI exit 1, no traceback)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
from _train_data import write_version
from test_build import make_project
from typer.testing import CliRunner

from cardtune.cli import app
from cardtune.curate.errors import UserInputError
from cardtune.curate.mixing.mixture import TaskPlan
from cardtune.curate.pipeline import build
from cardtune.curate.store.manifest import MANIFEST_FORMAT, Manifest, PlanEntry
from cardtune.curate.store.versions import list_versions, read_manifest, resolve_version, scan_versions
from cardtune.train.adapters import read_run
from cardtune.train.record import RUN_FORMAT, RunRecord

runner = CliRunner()


def _as_format_1(vdir: Path) -> None:
    """Rewrite a version's manifest as the previous release wrote it (format 1: filter drops keyed by name)."""
    path = vdir / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["format"] = 1
    data["counts"]["filter_order"] = [f["name"] for f in data["counts"]["filters"]]
    data["counts"]["filters"] = {f["name"]: f["dropped"] for f in data["counts"]["filters"]}
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


def test_a_built_manifest_round_trips(tmp_path: Path) -> None:
    result = build(make_project(tmp_path))
    on_disk = read_manifest(result.version_dir)
    assert isinstance(on_disk, Manifest) and on_disk == result.manifest
    assert on_disk.format == MANIFEST_FORMAT == 2
    text = (result.version_dir / "manifest.json").read_text(encoding="utf-8")
    assert text == on_disk.to_json()  # deterministic bytes: write(read(x)) == x
    raw = json.loads(text)
    assert list(raw) == sorted(raw) and "filter_order" not in raw["counts"]
    # pipeline order survives the sorted keys: filters and timings are ordered lists on disk
    assert [f["name"] for f in raw["counts"]["filters"]] == ["quality", "exact_dedup"]
    assert [t["step"] for t in raw["timings"]][:3] == ["resolve + fingerprint", "read", "render + filter"]
    assert set(on_disk.files) == {"train.parquet", "eval.parquet", "heldout.parquet", "rejects.parquet", "README.md"}


def test_the_train_fixture_manifest_is_a_valid_manifest(tmp_path: Path) -> None:
    vdir = write_version(tmp_path / "datasets")
    manifest = read_manifest(vdir)
    assert manifest.held_out_tasks() == {"negation"}
    assert Manifest.model_validate_json((vdir / "manifest.json").read_text()) == manifest


def test_the_plan_entry_is_exactly_a_task_plan() -> None:
    plan = TaskPlan("t", 10, 1.0, 1.0, 10, 0, 10, False, False, 2.5)
    assert set(PlanEntry.model_fields) == {f.name for f in fields(TaskPlan)} | {"estimated_tokens"}
    assert PlanEntry.of(plan).estimated_tokens == 25


def test_a_manifest_refuses_unknown_keys(tmp_path: Path) -> None:
    vdir = write_version(tmp_path / "datasets")
    data = json.loads((vdir / "manifest.json").read_text())
    data["counts"]["filter_order"] = []
    (vdir / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(UserInputError, match=r"manifest.json: invalid manifest: counts.filter_order: Extra inputs"):
        read_manifest(vdir)


@pytest.mark.parametrize("fmt", [1, 3, None, "2"])
def test_a_manifest_of_another_format_is_refused_in_one_line(tmp_path: Path, fmt: object) -> None:
    vdir = write_version(tmp_path / "datasets")
    data = json.loads((vdir / "manifest.json").read_text())
    if fmt is None:
        del data["format"]
    else:
        data["format"] = fmt
    (vdir / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(UserInputError) as info:
        read_manifest(vdir)
    (line,) = str(info.value).splitlines()
    shown = "(none)" if fmt is None else json.dumps(fmt)
    assert line == (
        f"{vdir / 'manifest.json'}: manifest format {shown} is not supported by this cardtune (expects 2); "
        "rebuild the version with cardtune build CARD"
    )


def test_inspect_of_an_old_version_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = build(make_project(tmp_path))
    _as_format_1(result.version_dir)
    res = runner.invoke(app, ["inspect", str(result.version_dir)])
    assert res.exit_code == 1 and not isinstance(res.exception, Exception)  # typer.Exit(1), no crash
    assert "Traceback" not in res.output
    (line,) = [x for x in res.stderr.splitlines() if x.strip()]
    assert line == (
        f"error: {result.version_dir / 'manifest.json'}: manifest format 1 is not supported by this cardtune "
        f"(expects 2); rebuild the version with cardtune build {tmp_path / 'card.yaml'}"
    )
    by_id = runner.invoke(app, ["inspect", result.version_id[:8], "--root", str(tmp_path / "datasets")])
    assert by_id.exit_code == 1 and "manifest format 1 is not supported" in by_id.stderr  # found, then refused


def test_ls_skips_and_marks_an_old_version(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    good = write_version(root, "instruction")
    old = write_version(root, "finetune")
    _as_format_1(old)
    assert [v for _, v, _ in list_versions(root)] == [good]  # skipped, not a crash
    scanned = {v.dir: v for v in scan_versions(root)}
    assert scanned[old].manifest is None and scanned[old].problem.startswith("manifest format 1 is not supported")
    assert resolve_version(old.name[:8], root) == old  # an id lookup still finds it (read_manifest then refuses)
    res = runner.invoke(app, ["ls", str(root)])
    assert res.exit_code == 0, res.output
    assert good.name[:8] in res.stdout and old.name[:8] in res.stdout and "unreadable" in res.stdout
    assert f"skipped {old}: manifest format 1 is not supported" in res.stderr


def _record(tmp_path: Path) -> RunRecord:
    manifest = read_manifest(write_version(tmp_path / "datasets"))
    return RunRecord(
        run_id="toy-abc-20260101T000000Z",
        card="toy",
        card_path=None,
        mode="instruction",
        method="lora",
        model="default",
        model_source="default",
        stop_token_ids=(2, 5),
        base_model="base_model",
        base_run=None,
        chat_template=None,
        dataset={"version_id": manifest.version_id, "dir": str(tmp_path / "datasets")},
        tasks=manifest.tasks,
        seed=42,
        device={"type": "cpu", "name": "x86_64", "processes": 1},
        versions={"python": "3.11", "trl": "1.16.0"},
        sft={"max_steps": 3, "bf16": False, "learning_rate": 2e-4, "optim": "adamw_torch", "max_length": None},
        params={"trainable": 10, "total": 100},
        tokens_trained=1234,
        length_check={"rows": 48, "overlong": 0},
        parity={"rows_checked": 4, "stop_tokens": ["</s>"]},
        metrics={"train_loss": 1.5, "train_runtime": 2.0},
        global_step=3,
        resumed_from=None,
        finished="2026-01-01T00:00:00+00:00",
        timings={"load_s": 1, "checks_s": 1, "setup_s": 1, "train_s": 2.5, "save_s": 1, "total_s": 6.5},
    )


def _run_dir(tmp_path: Path, text: str) -> Path:
    run = tmp_path / "runs" / "toy-run"
    (run / "model").mkdir(parents=True)
    (run / "run.json").write_text(text, encoding="utf-8")
    return run


def test_a_run_record_round_trips(tmp_path: Path) -> None:
    record = _record(tmp_path)
    run = _run_dir(tmp_path, record.to_json())
    again = read_run(run)
    assert again == record and again.format == RUN_FORMAT
    assert again.timings.train_s == 2.5 and again.dataset.version_id == record.dataset.version_id
    raw = json.loads((run / "run.json").read_text())
    assert {"dataset", "params", "metrics", "timings", "global_step", "resumed_from", "tasks"} <= set(raw)


@pytest.mark.parametrize("fmt", [0, 2, None])
def test_a_run_json_of_another_format_is_refused_in_one_line(tmp_path: Path, fmt: object) -> None:
    data = json.loads(_record(tmp_path).to_json())
    if fmt is None:
        del data["format"]
    else:
        data["format"] = fmt
    run = _run_dir(tmp_path, json.dumps(data))
    with pytest.raises(UserInputError) as info:
        read_run(run)
    (line,) = str(info.value).splitlines()
    shown = "(none)" if fmt is None else str(fmt)
    assert line.startswith(f"{run / 'run.json'}: run.json format {shown} is not supported by this cardtune (expects 1)")
    res = runner.invoke(app, ["compare", str(run)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"run.json format {shown} is not supported" in res.stderr


def test_a_run_json_missing_a_field_names_it(tmp_path: Path) -> None:
    data = json.loads(_record(tmp_path).to_json())
    del data["timings"]["train_s"]
    with pytest.raises(UserInputError, match=r"run.json: invalid run.json: timings.train_s: Field required"):
        read_run(_run_dir(tmp_path, json.dumps(data)))
