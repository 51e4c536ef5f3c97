"""Resolved inputs: one path rule (relative to the card's folder), and what is hashed is what is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cardtune.curate.card.load import load_card
from cardtune.curate.errors import UserInputError
from cardtune.curate.inputs import card_path, resolve_inputs, resolve_train_inputs
from cardtune.curate.pipeline import build
from cardtune.curate.store.versions import read_manifest

CARD = """\
name: tok
tasks:
  - name: qa
    source: {path: data/qa.jsonl}
mixture: {tokenizer: tok/tokenizer.json}
filters:
  quality: {tokenizer: tok/tokenizer.json, max_tokens: 1000}
output: {dir: out}
"""


def tokenizer_file(directory: Path, vocab: list[str]) -> Path:
    """A WordLevel tokenizer whose vocabulary decides how many tokens a text has (unknown words merge)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab={"[UNK]": 0, **{w: i + 1 for i, w in enumerate(vocab)}}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace() if vocab else pre_tokenizers.Split("\n", "removed")
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    return directory / "tokenizer.json"


def project(root: Path) -> Path:
    """A card in ``root/proj/`` with its tokenizer next to it; the working directory will be ``root``."""
    proj = root / "proj"
    (proj / "data").mkdir(parents=True)
    rows = [{"prompt": f"say {i} words please", "completion": "one two three"} for i in range(20)]
    (proj / "data" / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tokenizer_file(proj / "tok", ["say", "words", "please", "one", "two", "three"])
    (proj / "card.yaml").write_text(CARD, encoding="utf-8")
    return proj / "card.yaml"


def test_tokenizer_is_read_from_the_cards_folder_never_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = project(tmp_path)
    monkeypatch.chdir(tmp_path)  # the card's parent folder, as in the bug report
    tokenizer_file(tmp_path / "tok", [])  # a *different* ./tok/tokenizer.json in the working directory
    first = build(card)
    manifest = read_manifest(first.version_dir)
    # the card-relative tokenizer: "say N words please" is 4 tokens (N is [UNK]), "one two three" is 3
    per_row = 4 + 3
    train_rows = sum(manifest.counts.splits.train.values())
    assert manifest.tokens.train["qa"] == per_row * train_rows
    # editing the file in the working directory changes nothing: same id, a cache hit
    tokenizer_file(tmp_path / "tok", ["say"])
    assert build(card).cached and build(card).version_id == first.version_id
    # editing the card-relative tokenizer changes the id
    tokenizer_file(tmp_path / "proj" / "tok", ["say", "words"])
    second = build(card)
    assert second.version_id != first.version_id and not second.cached


def test_one_rule_for_every_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card_file = project(tmp_path)
    monkeypatch.chdir(tmp_path)
    card = load_card(card_file)
    inputs = resolve_inputs(card)
    assert inputs.sources["qa"].files == (tmp_path / "proj" / "data" / "qa.jsonl",)
    assert inputs.tokenizer("tok/tokenizer.json").path == tmp_path / "proj" / "tok" / "tokenizer.json"
    assert inputs.output_root == Path("out") / "tok"  # output.dir: the one input relative to the working directory
    assert card_path("~/x.jsonl", card.base_dir) == Path.home() / "x.jsonl"
    assert resolve_train_inputs(card).model is None  # `default`: the embedded model


def test_a_path_that_does_not_exist_is_an_error_at_the_cards_line(tmp_path: Path) -> None:
    card_file = project(tmp_path)
    card_file.write_text(CARD.replace("quality: {tokenizer: tok/tokenizer.json", "quality: {tokenizer: ./nope.json"))
    with pytest.raises(UserInputError) as info:
        resolve_inputs(load_card(card_file))
    (issue,) = info.value.issues
    assert issue.line == 7 and issue.loc == ("filters", "quality", "tokenizer")
    assert "relative to the card's folder" in issue.message
    # a bare name that is not a local path is a hub id (resolved when it is loaded), not an error here
    card_file.write_text(CARD.replace("tok/tokenizer.json, max_tokens", "gpt2, max_tokens"))
    named = resolve_inputs(load_card(card_file)).tokenizer("gpt2")
    assert named.path is None and named.hub_id == "gpt2"


def test_validate_reports_every_unresolvable_input_at_once(tmp_path: Path) -> None:
    from cardtune.curate.card.validate import validate_card

    card_file = project(tmp_path)
    card_file.write_text(
        CARD.replace("data/qa.jsonl", "data/missing.jsonl").replace(
            "quality: {tokenizer: tok", "quality: {tokenizer: ./x"
        )
    )
    with pytest.raises(UserInputError) as info:
        validate_card(card_file)
    locs = [i.loc for i in info.value.issues]
    assert ("tasks", 0, "source") in locs and ("filters", "quality", "tokenizer") in locs


def test_a_source_edited_during_the_build_is_never_published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fingerprint/read race: the id is computed from the bytes hashed; rows read later must be those bytes."""
    from cardtune.curate.execute import stages

    card = project(tmp_path)
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "proj" / "data" / "qa.jsonl"
    original = source.read_text(encoding="utf-8")
    real = stages.read_part

    def edit_then_read(part, task, resolved):  # type: ignore[no-untyped-def]
        source.write_text(original.replace("say 3 words", "say 3 other words"), encoding="utf-8")
        return real(part, task, resolved)

    monkeypatch.setattr(stages, "read_part", edit_then_read)
    with pytest.raises(UserInputError, match="changed while the build was reading it"):
        build(card)
    assert not any((tmp_path / "out").rglob("manifest.json"))  # nothing published under the old content's id
    monkeypatch.setattr(stages, "read_part", real)
    source.write_text(original, encoding="utf-8")
    result = build(card)
    assert not result.cached
    import polars as pl

    rows = pl.concat([pl.read_parquet(result.version_dir / f"{s}.parquet") for s in ("train", "eval")])
    texts = (
        rows["prompt"].cast(pl.String).to_list()
        if rows.schema["prompt"] == pl.String
        else [str(p) for p in rows["prompt"].to_list()]
    )
    assert any("say 3 words" in t for t in texts) and not any("other" in t for t in texts)
