"""The card schema and its loader: every mistake reported at once, each with file:line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardtune.curate.card.load import load_card
from cardtune.curate.card.schema import Card
from cardtune.curate.errors import UserInputError
from cardtune.curate.inputs import card_path

GOOD = """\
name: demo
mode: instruction
tasks:
  - name: a
    source: {path: a.jsonl}
    weight: 2
  - name: b
    source: {hf: super_glue, config: rte, revision: abc}
    held_out: true
mixture: {strategy: temperature, temperature: 2.0, cap: 100}
"""


def write(tmp_path: Path, text: str, name: str = "card.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors(path: Path) -> list[str]:
    with pytest.raises(UserInputError) as info:
        load_card(path)
    return [str(i) for i in info.value.issues]


def test_good_card_loads_with_defaults(tmp_path: Path) -> None:
    card = load_card(write(tmp_path, GOOD))
    assert isinstance(card, Card)
    assert card.tasks[0].weight == 2.0
    assert card.tasks[1].source.split == "train"
    assert card.mixture.strategy == "temperature"
    assert card.filters.dedup.exact is not None and card.filters.dedup.exact.scope == "both"
    assert card.filters.dedup.near is None
    assert card_path("a.jsonl", card.base_dir) == tmp_path.resolve() / "a.jsonl"
    assert card_path("~/a.jsonl", card.base_dir) == Path.home() / "a.jsonl"
    assert "train" not in card.data_sections() and "output" not in card.data_sections()


def test_card_is_frozen(tmp_path: Path) -> None:
    card = load_card(write(tmp_path, GOOD))
    with pytest.raises(Exception, match="frozen"):
        card.name = "other"  # type: ignore[misc]


def test_five_mistakes_are_all_reported_with_lines(tmp_path: Path) -> None:
    text = """\
name: demo
mode: instrction
tasks:
  - name: a
    source: {path: a.jsonl}
    templte: [nli/*]
    weight: 0
  - name: a
    source: {path: b.jsonl}
split: {eval_fraction: lots}
"""
    found = errors(write(tmp_path, text))
    joined = "\n".join(found)
    assert len(found) == 5, joined
    assert (
        f"{tmp_path / 'card.yaml'}:2: mode: 'instrction' is not one of instruction, finetune (did you mean 'instruction'?)"
        in found
    )
    assert any(":6: tasks[0].templte: unknown field (did you mean 'templates'?)" in e for e in found)
    assert any(":7: tasks[0].weight:" in e and "greater than 0" in e for e in found)
    assert any(":8: tasks[1].name: duplicate task name 'a'" in e for e in found)
    assert any(":10: split.eval_fraction:" in e for e in found)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("name: [unclosed\n", "invalid YAML, column"),
        ("- name: x\n", "a card must be a mapping, got a list"),
        ("name: x\nname: y\ntasks: []\n", ":2: name: duplicate key (first given on line 1)"),
        ("name: x\ntasks: {name: a}\n", "tasks: expected a list"),
        ("name: x\ntasks:\n  - name: a\n    source: {path: a, hf: b}\n", "give exactly one of `path`"),
        ("name: x\ntasks:\n  - name: a\n    source: {path: a}\n    weight: -1\n", ":5: tasks[0].weight:"),
        ("name: x\ntasks:\n  - name: a\n    source: {path: a}\n    held_out: true\n", "every task is held_out"),
        (
            "name: x\ntasks:\n  - name: a\n    source: {path: a}\nmixture: {strategy: count, total: 3}\n",
            "`count` takes",
        ),
        ("name: x\ntasks:\n  - name: a\n    source: {path: a}\nmixture: {total_tokens: 3}\n", "needs a `tokenizer`"),
        (
            "name: x\ntasks:\n  - name: a\n    source: {path: a}\nfilters: {dedup: {near: {bands: 10, rows: 10}}}\n",
            "bands*rows = 100 but num_perm is 128",
        ),
        ("name: x\ntasks:\n  - name: a\n    source: !!python/object:os.system {}\n", "unsupported YAML"),
        (
            "name: x\ntasks:\n  - name: a\n    source: {path: a}\nmixture: {stratgy: fixed}\n",
            "mixture.stratgy: unknown field (did you mean 'strategy'?)",
        ),
    ],
)
def test_bad_cards_give_one_precise_line(tmp_path: Path, text: str, expected: str) -> None:
    found = errors(write(tmp_path, text))
    assert any(expected in e for e in found), found


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert any("card not found" in e for e in errors(tmp_path / "nope.yaml"))
    assert any("is a directory" in e for e in errors(tmp_path))


def test_errors_are_sorted_by_line(tmp_path: Path) -> None:
    text = "name: x\ntasks:\n  - name: a\n    source: {path: a}\n    weight: 0\nmode: nope\nsplit: {seed: x}\n"
    found = errors(write(tmp_path, text))
    lines = [int(e.split(":")[1]) for e in found]
    assert lines == sorted(lines) and len(found) == 3
