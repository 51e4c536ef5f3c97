"""Regenerate the data of ``data_cards/demo.yaml`` in this folder (deterministic; committed: the demo needs no network).

The rows are synthetic, with the column names of the public datasets they imitate — SST-2-style sentiment
(``sentiment.jsonl``), SNLI-style NLI (``nli.json``), AG-News-style topics (``topics.csv``) and MRPC-style
paraphrase pairs (``paraphrase.jsonl``) — so the card ports to the real datasets by changing ``source:`` only.

Made so that ``make demo`` shows learning, not chance, in about a minute of CPU training of the embedded 2-layer
model: every label is decided by a phrase the model can spot (the review's verdict, the headline's wording, the
hypothesis's kind: a generalization, an added detail, a negation or an opposite), the labels are balanced
(so always giving one answer scores chance: 1/2, 1/3, 1/4), and the rows are distinct (no dedup losses), so the
eval split holds about 60 rows per task.

    python data_cards/data/demo/make_data.py
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

SUBJECTS = [
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
    "The headphones",
    "The bakery",
    "This game",
    "The show",
]
GOOD = [
    "was a delight from start to finish",
    "exceeded every expectation I had",
    "is worth every penny",
    "left me smiling for days",
    "was warm, clever and beautifully made",
    "is the best I have tried this year",
    "felt fresh and genuinely moving",
    "was friendly, fast and spotless",
    "is wonderful",
    "was great fun",
]
BAD = [
    "was a complete waste of time",
    "fell apart after two days",
    "is overpriced and disappointing",
    "bored me to tears",
    "was rude, slow and dirty",
    "is the worst I have tried this year",
    "felt lazy and predictable",
    "broke my heart in the wrong way",
    "is terrible",
    "was a mess",
]
TAILS = [
    "",
    " I went there with my sister.",
    " Honestly.",
    " My friends agreed.",
    " We paid in cash.",
    " It was a Tuesday.",
    " The ending surprised me.",
    " The staff noticed.",
    " I tried it twice.",
]
HEADLINES = {  # AG News labels: 0 World, 1 Sports, 2 Business, 3 Science/Tech
    0: [
        "Leaders meet to discuss the border dispute in {p}",
        "Elections in {p} draw record turnout",
        "Floods force thousands from their homes in {p}",
        "Peace talks resume in {p} after a long pause",
        "President of {p} visits neighbours",
        "Protests grow in the capital of {p}",
        "Parliament of {p} passes new election law",
        "Refugees from {p} cross the border",
    ],
    1: [
        "{p} United win the cup final in extra time",
        "Star striker from {p} signs a three-year deal",
        "Marathon record falls in {p}",
        "{p} take the series after a dramatic last over",
        "Coach of the {p} team resigns after defeat",
        "{p} reach the world cup semifinal",
        "Tennis champion from {p} wins again",
        "Fans in {p} celebrate the league title",
    ],
    2: [
        "Shares of {p} Motors jump after strong quarterly earnings",
        "Central bank of {p} holds interest rates",
        "Retail sales in {p} slow ahead of the holidays",
        "{p} Air to cut costs as fuel prices rise",
        "Oil prices lift the stock market in {p}",
        "Banks in {p} report record profit",
        "Factory output in {p} falls for a third month",
        "Investors pull money from {p} bonds",
    ],
    3: [
        "Researchers in {p} unveil a faster battery chemistry",
        "New telescope in {p} spots a distant galaxy",
        "Startup from {p} releases an open-source chip design",
        "Scientists in {p} map the genome of a rare frog",
        "Engineers in {p} test a robot that climbs walls",
        "A software update from {p} speeds up phones",
        "Space agency of {p} launches a weather satellite",
        "Computer scientists in {p} build a new AI model",
    ],
}
PLACES = [
    "Kenya",
    "Chile",
    "Norway",
    "Vietnam",
    "Canada",
    "Morocco",
    "Peru",
    "Finland",
    "Ghana",
    "Japan",
    "Brazil",
    "Egypt",
    "India",
    "Poland",
    "Spain",
    "Mexico",
    "Nepal",
    "Ireland",
    "Jordan",
    "Portugal",
]
PEOPLE = [
    "A woman",
    "A man",
    "An old man",
    "A young girl",
    "A boy",
    "Two friends",
    "A chef",
    "A nurse",
    "A student",
    "A farmer",
    "A teacher",
    "A musician",
]
ACTS = [  # (what the premise says, a shorter form, a generalization, something that cannot be at the same time)
    ("riding a bicycle down the street", "riding a bike", "cycling", "asleep in bed"),
    ("reading a newspaper on a bench", "reading", "reading", "watching a film at home"),
    ("cooking soup in a small kitchen", "cooking", "preparing food", "sitting in an empty room"),
    ("playing the violin on a corner", "playing music", "making music", "sitting in silence"),
    ("swimming in a lake", "swimming", "in the water", "in the desert"),
    ("painting a fence in the yard", "painting", "painting something", "asleep indoors"),
    ("running along the beach", "running", "outdoors", "driving a car"),
    ("planting trees in a park", "planting trees", "outside", "inside a shop"),
]
DETAILS = [
    "for the first time",
    "because it is their birthday",
    "to win a prize",
    "with a friend from work",
    "after a long day",
    "to impress someone",
]
PARAPHRASES = [  # (sentence, a paraphrase, a sentence that means something else); {s} is the subject
    ("{s} opened a new office in May.", "In May, {s} opened a new office.", "{s} closed its office in May."),
    ("{s} hired twenty people last year.", "Last year {s} took on twenty new staff.", "{s} let twenty people go."),
    ("{s} will move to a bigger building.", "{s} is going to relocate to a larger building.", "{s} will stay put."),
    ("{s} won an award for its design.", "{s} received a prize for its design.", "{s} lost the design contest."),
    ("{s} raised its prices in spring.", "In spring {s} made things more expensive.", "{s} cut its prices."),
    ("{s} answered every letter quickly.", "{s} replied to all the letters fast.", "{s} ignored the letters."),
    ("{s} started a recycling program.", "{s} launched a scheme to recycle.", "{s} ended its recycling."),
    ("{s} donated money to the school.", "{s} gave the school a gift of money.", "{s} asked the school for money."),
]
ORGS = ["The company", "The city council", "The bakery", "The library", "The museum", "The club", "The hospital"]


def _balanced(rng: random.Random, n: int, k: int) -> list[int]:
    labels = [i % k for i in range(n)]
    rng.shuffle(labels)
    return labels


def _distinct(rng: random.Random, n: int, k: int, make: Any) -> list[tuple[int, Any]]:
    """``n`` rows of ``k`` balanced labels, ``make(label)`` drawn until every row is new."""
    out: list[tuple[int, Any]] = []
    seen: set[Any] = set()
    for label in _balanced(rng, n, k):
        for _ in range(1000):
            value = make(label)
            if value not in seen:
                break
        else:
            raise RuntimeError(f"not enough distinct rows for label {label}")
        seen.add(value)
        out.append((label, value))
    return out


def sentiment(rng: random.Random, n: int) -> list[dict[str, Any]]:
    def make(label: int) -> str:
        return f"{rng.choice(SUBJECTS)} {rng.choice(GOOD if label else BAD)}.{rng.choice(TAILS)}"

    return [{"idx": i, "sentence": text, "label": y} for i, (y, text) in enumerate(_distinct(rng, n, 2, make))]


def topics(rng: random.Random, n: int) -> list[dict[str, Any]]:
    def make(label: int) -> str:
        return rng.choice(HEADLINES[label]).format(p=rng.choice(PLACES)) + "."

    return [{"id": f"ag-{i:04d}", "text": t, "label": y} for i, (y, t) in enumerate(_distinct(rng, n, 4, make))]


def nli(rng: random.Random, n: int) -> list[dict[str, Any]]:  # 0 entailment, 1 neutral, 2 contradiction
    def make(label: int) -> tuple[str, str]:
        who = rng.choice(PEOPLE)
        act, short, general, opposite = rng.choice(ACTS)
        if label == 0:
            hypothesis = f"{rng.choice(['Someone', 'A person'])} is {rng.choice([short, general])}."
        elif label == 1:
            hypothesis = f"{who} is {short} {rng.choice(DETAILS)}."
        else:
            hypothesis = rng.choice([f"Nobody is {short}.", f"{who} is {opposite}."])
        return f"{who} is {act}.", hypothesis

    rows = _distinct(rng, n, 3, make)
    return [{"idx": i, "sentence1": p, "sentence2": h, "label": y} for i, (y, (p, h)) in enumerate(rows)]


def paraphrase(rng: random.Random, n: int) -> list[dict[str, Any]]:  # 0 not a paraphrase, 1 paraphrase
    def make(label: int) -> tuple[str, str]:
        org = rng.choice(ORGS)
        first, same, other = (s.replace("{s}", org) for s in rng.choice(PARAPHRASES))
        same = same if same.startswith(org) else same.replace(org, org.lower())
        return first, same if label else other

    rows = _distinct(rng, n, 2, make)
    return [{"idx": i, "sentence1": a, "sentence2": b, "label": y} for i, (y, (a, b)) in enumerate(rows)]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def main() -> None:
    rng = random.Random(2026_12_02)
    _jsonl(HERE / "sentiment.jsonl", sentiment(rng, 500))
    (HERE / "nli.json").write_text(json.dumps(nli(rng, 500), indent=1) + "\n", encoding="utf-8")
    with (HERE / "topics.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text", "label"])
        writer.writeheader()
        writer.writerows(topics(rng, 480))
    _jsonl(HERE / "paraphrase.jsonl", paraphrase(rng, 100))


if __name__ == "__main__":
    main()
