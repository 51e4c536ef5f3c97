"""Importing promptsource ``templates.yaml`` files into cardtune templates, saying what could not be converted.

Owns ``import_promptsource`` / ``convert_promptsource``. The file is read with the safe loader: the only
tags allowed are promptsource's ``!Template`` and ``!TemplateMetadata`` (read as plain mappings, never
constructed as objects). Each template's ``jinja`` is split at its one ``|||`` into prompt and completion;
``answer_choices`` (a ``|||``-separated string, a Jinja expression, or the older list form) carries over.
Rendered parts are stripped, as promptsource does. Templates that cannot be expressed are skipped with a
reason (``|||`` inside a Jinja block, random ``shuffle``, HTML ``highlight``, unsafe attribute access);
promptsource's unseeded ``choice`` filter becomes cardtune's stable per-row ``choice`` (noted).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import meta, nodes

from cardtune.curate.card.yamlsrc import LocatedYaml, load_located, read_user_file
from cardtune.curate.errors import Issue, UserInputError
from cardtune.curate.templating.jinja_env import ENV, PROVIDED, unsafe_access
from cardtune.curate.templating.library import Part, Template, templates_from_located

ALLOWED_TAGS = ("!Template", "!TemplateMetadata")
UNSUPPORTED_FILTERS = {
    "highlight": "uses the `highlight` filter (HTML markup for promptsource's viewer)",
    "shuffle": "uses `shuffle` (unseeded, in-place randomness)",
}
METADATA_KEYS = ("original_task", "choices_in_prompt", "metrics", "languages")


@dataclass
class Conversion:
    """The result of importing one promptsource file."""

    file: str
    dataset: str
    subset: str | None
    family: str
    templates: list[Template] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (promptsource name, reason)
    notes: dict[str, list[str]] = field(default_factory=dict)  # cardtune id -> what changed in conversion
    yaml_text: str = ""  # the converted templates in cardtune's file format

    def report(self) -> list[str]:
        """Human-readable lines: what was converted, with notes, and what was skipped and why."""
        lines = [f"{self.file}: {len(self.templates)} converted, {len(self.skipped)} skipped (family {self.family})"]
        lines += [f"  note {tid}: {note}" for tid, notes in self.notes.items() for note in notes]
        lines += [f"  skipped {name!r}: {reason}" for name, reason in self.skipped]
        return lines


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9_.\-]+", "-", text.lower()).strip("-._")
    return slug or "template"


def _untag(text: str, file: str) -> str:
    """``text`` with promptsource's tags blanked out (same length and lines); any other tag is an error."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return text  # load_located reports it with a line
    issues: list[Issue] = []
    chars = list(text)
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if node.tag in ALLOWED_TAGS and text.startswith(node.tag, node.start_mark.index):
            start = node.start_mark.index
            chars[start : start + len(node.tag)] = " " * len(node.tag)
        elif not node.tag.startswith("tag:yaml.org,2002:"):
            issues.append(Issue(file, node.start_mark.line + 1, (), f"YAML tag {node.tag!r} is not allowed"))
        if isinstance(node, yaml.MappingNode):
            stack.extend(v for kv in node.value for v in kv)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    if issues:
        raise UserInputError(issues)
    return "".join(chars)


def _split(jinja: str) -> tuple[str, str] | str:
    """(prompt, completion) sources, or the reason the template cannot be split."""
    count = jinja.count("|||")
    if count != 1:
        return f"expected exactly one `|||` separator in `jinja`, found {count}"
    prompt, completion = jinja.split("|||")
    # The common `... {% if label != -1 %}||| {{ answer }}{% endif %}`: move the opening `if` after the split.
    opening = re.search(r"(\{%-?\s*if\b[^%]*-?%\})\s*$", prompt)
    if opening and re.search(r"\{%-?\s*endif\s*-?%\}\s*$", completion) and "{% if" not in prompt[: opening.start()]:
        prompt, completion = prompt[: opening.start()], opening.group(1) + completion
    for part in (prompt, completion):
        try:
            ast = ENV.parse(part)
        except jinja2.TemplateSyntaxError as exc:
            return f"`|||` sits inside a Jinja block, so prompt and completion cannot be separated ({exc.message})"
        bad = unsafe_access(ast)
        if bad is not None:
            return f"accesses {bad[0]}, which the sandbox forbids"
        for flt in ast.find_all(nodes.Filter):
            if flt.name in UNSUPPORTED_FILTERS:
                return UNSUPPORTED_FILTERS[flt.name]
    return prompt.strip(), completion.strip()


def _variables(*sources: str) -> list[str]:
    found: set[str] = set()
    for source in sources:
        found |= meta.find_undeclared_variables(ENV.parse(source))
    return sorted(found - PROVIDED - set(ENV.globals))


def _convert_one(entry: dict[str, Any], family: str, used: set[str]) -> tuple[dict[str, Any], list[str]] | str:
    name = str(entry.get("name") or entry.get("id") or "template")
    jinja = entry.get("jinja")
    if not isinstance(jinja, str) or not jinja.strip():
        return "no `jinja` text"
    split = _split(jinja)
    if isinstance(split, str):
        return split
    prompt, completion = split
    notes: list[str] = []
    choices_raw = entry.get("answer_choices")
    choices: list[str] | str | None = None
    if isinstance(choices_raw, list):
        choices = [str(c) for c in choices_raw]
    elif isinstance(choices_raw, str) and choices_raw.strip():
        if "{" in choices_raw:
            try:
                bad = unsafe_access(ENV.parse(choices_raw))
            except jinja2.TemplateSyntaxError as exc:
                return f"answer_choices is not valid Jinja ({exc.message})"
            if bad is not None:  # skipped with a reason, like an unsafe `jinja` (not a failure of the whole file)
                return f"answer_choices accesses {bad[0]}, which the sandbox forbids"
            choices = choices_raw
        else:
            choices = [c.strip() for c in choices_raw.split("|||")]
    if "choice" in {f.name for src in (prompt, completion) for f in ENV.parse(src).find_all(nodes.Filter)}:
        notes.append("the `choice` filter is now a stable per-row pick (promptsource's was unseeded random)")
    raw_meta = entry.get("metadata")
    meta_in: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    metadata: dict[str, Any] = {k: meta_in[k] for k in METADATA_KEYS if meta_in.get(k) is not None}
    dropped = sorted(k for k in meta_in if k not in METADATA_KEYS and meta_in[k] is not None)
    if dropped:
        notes.append(f"metadata keys not carried over: {', '.join(dropped)}")
    if entry.get("reference"):
        metadata["reference"] = str(entry["reference"])
    metadata["shots"] = "any"
    tid = f"{family}/{_slug(name)}"
    n = 2
    while tid in used:
        tid, n = f"{family}/{_slug(name)}-{n}", n + 1
    used.add(tid)
    sources = [prompt, completion] + ([choices] if isinstance(choices, str) else [])
    spec: dict[str, Any] = {"id": tid, "inputs": _variables(*sources), "prompt": prompt, "completion": completion}
    if choices is not None:
        spec["answer_choices"] = choices
    spec["strip"] = True
    spec["metadata"] = metadata
    return spec, notes


def convert_promptsource(text: str, file: str) -> Conversion:
    """Convert promptsource YAML ``text`` (from ``file``). Raises ``UserInputError`` if it is not such a file."""
    located = load_located(_untag(text, file), file)
    data = located.data
    if not (isinstance(data, dict) and isinstance(data.get("templates"), dict) and data.get("dataset")):
        raise UserInputError([located.issue((), "not a promptsource file (needs `dataset:` and `templates:`)")])
    dataset, subset = str(data["dataset"]), (str(data["subset"]) if data.get("subset") else None)
    family = _slug(f"{dataset}_{subset}" if subset else dataset).replace(".", "-")
    conv = Conversion(file=file, dataset=dataset, subset=subset, family=family)
    specs: list[dict[str, Any]] = []
    origins: list[Any] = []
    used: set[str] = set()
    for key, entry in data["templates"].items():
        if not isinstance(entry, dict):
            conv.skipped.append((str(key), "not a !Template mapping"))
            continue
        result = _convert_one(entry, family, used)
        if isinstance(result, str):
            conv.skipped.append((str(entry.get("name") or key), result))
            continue
        spec, notes = result
        specs.append(spec)
        origins.append(key)
        if notes:
            conv.notes[spec["id"]] = notes
    header = (
        f"# Converted from promptsource: {Path(file).name} ({dataset}{'/' + subset if subset else ''})\n"
        "# Add `examples:` (a few real rows) so `cardtune templates lint` can render these templates.\n"
    )
    body = {"family": family, "description": f"Imported from promptsource ({dataset}).", "templates": specs}
    conv.yaml_text = header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)
    if specs:
        ours = load_located(conv.yaml_text, file)
        converted = templates_from_located(ours, conv.yaml_text, {k: tuple(v) for k, v in conv.notes.items()})
        conv.templates = [_relocate(t, located, key) for t, key in zip(converted, origins, strict=True)]
    return conv


def _relocate(t: Template, located: LocatedYaml, key: Any) -> Template:
    """Point a converted template's lines back at the promptsource file (its ``jinja`` line)."""
    line = located.line_of(("templates", key, "jinja"))

    def move(part: Part) -> Part:
        return dataclasses.replace(part, first_line=line, block=False)

    return dataclasses.replace(
        t,
        line=located.line_of(("templates", key)),
        turns=tuple((role, move(p)) for role, p in t.turns),
        completion=move(t.completion),
        choices=move(t.choices) if t.choices is not None else None,
        system=move(t.system) if t.system is not None else None,
    )


def import_promptsource(path: Path) -> Conversion:
    """Read and convert a promptsource ``templates.yaml``."""
    return convert_promptsource(read_user_file(path, what="promptsource templates file"), str(path))
