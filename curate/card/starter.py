"""``cardtune init``: a commented starter card, plus a tiny sample source so it validates and builds as is."""

from __future__ import annotations

import json

SAMPLE_ROWS = [
    {"question": "What is the capital city of Australia?", "answer": "Canberra"},
    {"question": "How many legs does a spider have?", "answer": "Eight"},
    {"question": "Which planet is known as the Red Planet?", "answer": "Mars"},
    {"question": "What gas do plants absorb from the air?", "answer": "Carbon dioxide"},
    {"question": "Who wrote the play Romeo and Juliet?", "answer": "William Shakespeare"},
    {"question": "What is the boiling point of water at sea level in Celsius?", "answer": "100 degrees"},
    {"question": "Which ocean is the largest?", "answer": "The Pacific Ocean"},
    {"question": "What is the chemical symbol for gold?", "answer": "Au"},
]

CARD = """\
# {name}: a cardtune dataset card. Field reference: data_cards/README.md (or `cardtune schema`).
# Check it with `cardtune validate {card_file}`, preview with `cardtune build {card_file} --dry-run`.
name: {name}
version: 0.1.0                    # a human label; the content hash of the inputs is the real version id
description: My instruction-tuning mixture.
license: cc-by-4.0
mode: instruction                 # instruction (chat prompt/completion) | finetune (plain strings)

tasks:
  - name: trivia
    # a local JSONL/JSON/CSV/TSV/Parquet file, glob or directory (relative to this card),
    # or a hub dataset: {{hf: org/name, config: ..., split: train, revision: <commit sha>}}
    source: {{path: {data_path}}}
    # columns: {{question: query}}  # template input <- source column, when the names differ
    templates: ["closed_book_qa/*"]  # ids or globs: `cardtune templates list`
    weight: 1.0
    # held_out: true              # keep this task out of training, whole, for zero-shot eval

mixture:
  strategy: examples_proportional # fixed | examples_proportional | temperature | count
  # cap: 3000                     # per-task example cap (seqio `maximum`)
  # total: 20000                  # total training examples (default: sum of capped task sizes)
  seed: 1234

filters:
  quality: {{min_chars: 5}}
  dedup:
    exact: {{scope: both}}
    # near: {{threshold: 0.8}}     # MinHash-LSH near-duplicate removal
  # decontaminate:
  #   benchmarks: [{{name: my_eval, path: evals/test.jsonl, fields: [question, answer]}}]

split: {{eval_fraction: 0.1, seed: 1234}}

train:
  model: default                  # the embedded tiny model; or a hub id / local path
  method: lora                    # full | lora | prompt_tuning
  sft: {{learning_rate: 2.0e-4, num_train_epochs: 1}}
"""


def starter_files(name: str, card_file: str, data_path: str) -> dict[str, str]:
    """The card text and its sample source, keyed by role (``card``, ``data``)."""
    return {
        "card": CARD.format(name=name, card_file=card_file, data_path=data_path),
        "data": "".join(json.dumps(row) + "\n" for row in SAMPLE_ROWS),
    }
