"""Regenerate the small datasets of the example cards in this folder (deterministic; committed: no network).

``flan-mini.yaml``, ``finetune-*.yaml``, ``lora.yaml`` and ``prompt-tuning.yaml`` read these; ``demo.yaml`` reads
its own balanced data in ``demo/`` (``demo/make_data.py``).

The rows are synthetic but well-formed, with the column names of the public datasets they imitate
(SST-2-style sentiment, GSM8K-style arithmetic with separate rationale and answer, AG-News-style topics,
SNLI-style NLI), so a card written
against them ports to the real datasets by changing `source:` only.

    python data_cards/data/make_demo_data.py
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent


def sentiment(rng: random.Random, n: int) -> list[dict[str, object]]:
    subjects = [
        "The film",
        "This restaurant",
        "The new phone",
        "The hotel",
        "This album",
        "The novel",
        "The service",
        "The concert",
        "This laptop",
        "The sequel",
        "The museum tour",
        "The coffee",
    ]
    good = [
        "was a delight from start to finish",
        "exceeded every expectation I had",
        "is worth every penny",
        "left me smiling for days",
        "was warm, clever and beautifully made",
        "is the best I have tried this year",
        "felt fresh and genuinely moving",
        "was friendly, fast and spotless",
    ]
    bad = [
        "was a complete waste of time",
        "fell apart after two days",
        "is overpriced and disappointing",
        "bored me to tears",
        "was rude, slow and dirty",
        "is the worst I have tried this year",
        "felt lazy and predictable",
        "broke my heart in the wrong way",
    ]
    extra = [
        "",
        " I would go back.",
        " Honestly.",
        " My friends agreed.",
        " Five stars from me.",
        " Never again.",
        " The ending surprised me.",
        " The staff noticed.",
    ]
    rows = []
    for i in range(n):
        label = rng.randint(0, 1)
        tail = rng.choice(extra)
        if (label == 1 and tail == " Never again.") or (label == 0 and tail == " Five stars from me."):
            tail = ""
        text = f"{rng.choice(subjects)} {rng.choice(good if label else bad)}.{tail}"
        rows.append({"idx": i, "sentence": text, "label": label})
    return rows


def arithmetic(rng: random.Random, n: int) -> list[dict[str, object]]:
    names = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
    items = ["apples", "stickers", "books", "marbles", "pencils", "cookies", "stamps", "shells"]
    rows = []
    for _ in range(n):
        who, what = rng.choice(names), rng.choice(items)
        a, b, c = rng.randint(2, 40), rng.randint(2, 30), rng.randint(1, 9)
        kind = rng.randint(0, 2)
        if kind == 0:
            q = f"{who} has {a} {what} and buys {b} more. How many {what} does {who} have now?"
            steps, ans = f"{who} starts with {a} {what} and buys {b} more, so {a} + {b} = {a + b}.", a + b
        elif kind == 1:
            a = a + b
            q = f"{who} had {a} {what} and gave {b} of them to a friend. How many {what} are left?"
            steps, ans = f"{who} gives away {b} of {a} {what}, so {a} - {b} = {a - b}.", a - b
        else:
            q = f"{who} buys {c} packs of {what} with {b} {what} in each pack. How many {what} is that in total?"
            steps, ans = f"There are {c} packs of {b} {what}, so {c} * {b} = {c * b}.", c * b
        rows.append({"question": q, "rationale": steps, "answer": str(ans)})
    return rows


def topics(rng: random.Random, n: int) -> list[dict[str, object]]:
    heads = {
        0: [
            "Leaders meet to discuss the border dispute in {p}",
            "Elections in {p} draw record turnout",
            "Floods force thousands from their homes in {p}",
            "Peace talks resume in {p} after a long pause",
        ],
        1: [
            "{p} United win the cup final in extra time",
            "Star striker from {p} signs a three-year deal",
            "Marathon record falls in {p}",
            "{p} take the series after a dramatic last over",
        ],
        2: [
            "Shares of {p} Motors jump after strong quarterly earnings",
            "Central bank of {p} holds interest rates",
            "Retail sales in {p} slow ahead of the holidays",
            "{p} Air to cut costs as fuel prices rise",
        ],
        3: [
            "Researchers in {p} unveil a faster battery chemistry",
            "New telescope in {p} spots a distant galaxy",
            "Startup from {p} releases an open-source chip design",
            "Scientists in {p} map the genome of a rare frog",
        ],
    }
    places = ["Kenya", "Chile", "Norway", "Vietnam", "Canada", "Morocco", "Peru", "Finland", "Ghana", "Japan"]
    rows = []
    for i in range(n):
        label = rng.randint(0, 3)
        title = rng.choice(heads[label]).format(p=rng.choice(places))
        rows.append({"id": f"ag-{i:04d}", "text": f"{title}.", "label": label})
    return rows


def nli(rng: random.Random, n: int) -> list[dict[str, object]]:
    # (premise, entailed, neutral, contradicted); labels 0 entailment, 1 neutral, 2 contradiction
    facts = [
        (
            "A woman is riding a bicycle down a busy street",
            "A person is cycling",
            "The woman is late for work",
            "Nobody is outside",
        ),
        (
            "Two dogs are playing with a ball in the park",
            "Animals are playing outdoors",
            "The dogs belong to one family",
            "The dogs are asleep indoors",
        ),
        (
            "The chef is slicing onions in a small kitchen",
            "Someone is preparing food",
            "The chef is making soup",
            "The kitchen is empty",
        ),
        (
            "A group of students is listening to a lecture",
            "People are in a class",
            "The lecture is about history",
            "The students are swimming",
        ),
        (
            "An old man is reading a newspaper on a bench",
            "A man is reading",
            "The man is waiting for a bus",
            "The man is running a race",
        ),
        (
            "Children are building a snowman in the yard",
            "It is cold outside",
            "The children are siblings",
            "The children are at the beach",
        ),
        (
            "A musician plays the violin on a street corner",
            "Someone is making music",
            "The musician is a student",
            "The street is silent",
        ),
        (
            "The team celebrates after scoring a goal",
            "A team scored",
            "The team won the championship",
            "The team lost without scoring",
        ),
    ]
    rows = []
    for i in range(n):
        premise, *hyps = rng.choice(facts)
        label = rng.randint(0, 2)
        rows.append({"idx": i, "sentence1": premise + ".", "sentence2": hyps[label] + ".", "label": label})
    return rows


def main() -> None:
    rng = random.Random(20261123)
    with (HERE / "sentiment.jsonl").open("w", encoding="utf-8") as fh:
        for row in sentiment(rng, 400):
            fh.write(json.dumps(row) + "\n")
    with (HERE / "arithmetic.jsonl").open("w", encoding="utf-8") as fh:
        for row in arithmetic(rng, 400):
            fh.write(json.dumps(row) + "\n")
    with (HERE / "topics.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text", "label"])
        writer.writeheader()
        writer.writerows(topics(rng, 300))
    (HERE / "nli.json").write_text(json.dumps(nli(rng, 200), indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
