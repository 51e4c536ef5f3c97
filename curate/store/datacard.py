"""The auto-written ``README.md`` of a version: a Hugging Face dataset card (YAML front matter + prose).

Deterministic by construction (no timestamps, sorted keys), so equal inputs give an equal README.
"""

from __future__ import annotations

import yaml

from cardtune.curate.card.schema import Card
from cardtune.curate.store.manifest import Manifest


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    for bound, label in bounds:
        if n < bound:
            return label
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def source_label(card: Card, task_index: int) -> str:
    """How a task's source is named in the dataset card (hub id, or the local path as written)."""
    src = card.tasks[task_index].source
    return src.hf if src.hf is not None else f"local:{src.path}"


def render_readme(card: Card, version: str, manifest: Manifest) -> str:
    """The dataset card text for a version."""
    counts = dict(manifest.counts.splits.items())
    names = list(counts)  # train, eval, heldout (and eval_unseen_templates when the version has it)
    total = sum(sum(split.values()) for split in counts.values())
    front = {
        "license": card.license,
        "pretty_name": card.name,
        "task_categories": ["text-generation"],
        "tags": ["cardtune", "instruction-tuning" if card.mode == "instruction" else "fine-tuning"],
        "source_datasets": sorted({source_label(card, i) for i in range(len(card.tasks))}),
        "size_categories": [_size_category(total)],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"{split}.parquet"} for split in names],
            }
        ],
        "dataset_info": {
            "splits": [{"name": split, "num_examples": sum(counts.get(split, {}).values())} for split in names]
        },
    }
    lines = ["---", yaml.safe_dump(front, sort_keys=True, allow_unicode=True).rstrip(), "---", ""]
    lines += [f"# {card.name}", ""]
    if card.description:
        lines += [card.description.strip(), ""]
    lines += [
        f"Built by [cardtune](https://github.com/cardtune/cardtune) {manifest.cardtune} from the card "
        f"`{card.name}` (label `{card.version}`), mode `{card.mode}`.",
        "",
        f"- **Version id:** `{version}` (content hash of the card's data sections, templates, sources)",
        f"- **Format:** {_format_note(card)}",
        "",
        "## Tasks",
        "",
        "| task | source | templates | train | eval | heldout |",
        "|---|---|---|---:|---:|---:|",
    ]
    for i, task in enumerate(card.tasks):
        row = [counts.get(split, {}).get(task.name, 0) for split in ("train", "eval", "heldout")]
        templates = ", ".join(task.templates) or "(passthrough)"
        lines.append(f"| {task.name} | {source_label(card, i)} | {templates} | {row[0]} | {row[1]} | {row[2]} |")
    plan = manifest.mixture.plan
    if plan:
        lines += [
            "",
            f"## Mixture (`{card.mixture.strategy}`)",
            "",
            "| task | available | share | target | upsampled |",
        ]
        lines.append("|---|---:|---:|---:|---|")
        for p in plan:
            lines.append(f"| {p.task} | {p.available} | {p.share:.3f} | {p.target} | {'yes' if p.upsampled else ''} |")
    drops = manifest.counts.filters  # in the order they ran
    if drops:
        lines += ["", "## Filters", "", "| filter | rows dropped |", "|---|---:|"]
        for f in drops:
            lines.append(f"| {f.name} | {f.total} |")
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        f"cardtune build {card.name}.yaml   # same card, templates and sources -> the same version id",
        "```",
        "",
        "```python",
        "import cardtune",
        f'ds = cardtune.load("{card.output.dir}/{card.name}/{version}")',
        "```",
        "",
    ]
    return "\n".join(lines)


def _format_note(card: Card) -> str:
    if card.mode == "instruction":
        return (
            "conversational `prompt` / `completion` message lists (TRL applies the model's chat template; "
            "loss on the completion only)"
        )
    return "plain `prompt` / `completion` strings"
