"""Importing promptsource ``templates.yaml`` files into cardtune templates, saying what could not be converted.

Owns ``import_promptsource`` / ``convert_promptsource``. The file is read with the safe loader: the only
tags allowed are promptsource's ``!Template`` and ``!TemplateMetadata`` (read as plain mappings, never
constructed as objects; anchors and aliases such as ``metadata: &id001 !TemplateMetadata`` ... ``*id001`` load).
A template whose ``jinja`` splits at its one top-level ``|||`` into two independent halves becomes a
``prompt``/``completion`` template (the fast path can render it); any other — ``|||`` inside a Jinja block, one
``|||`` per branch, a ``{% set %}`` before the marker read after it — becomes a ``jinja`` + ``split: "|||"``
template, rendered whole and split at the marker as promptsource's ``Template.apply`` does. ``answer_choices``
(a ``|||``-separated string, a Jinja expression, or the older list form) carries over; rendered parts are
stripped, as promptsource does. Templates that cannot be expressed are skipped with a reason (``shuffle``,
HTML ``highlight``, unsafe attribute access, changing row data with ``.append`` and the like, what the
sandbox refuses); promptsource's unseeded ``choice`` and
Jinja's ``random`` filters become cardtune's stable per-row ``choice`` (noted).
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
from cardtune.curate.templating.library import CHOICE_SEP, Part, Template, templates_from_located
from cardtune.curate.templating.sandbox import refused_features

ALLOWED_TAGS = ("!Template", "!TemplateMetadata")
UNSUPPORTED_FILTERS = {
    "highlight": "uses the `highlight` filter (HTML markup for promptsource's viewer)",
    "shuffle": "uses `shuffle` (unseeded, in-place randomness)",
}
METADATA_KEYS = ("original_task", "choices_in_prompt", "metrics", "languages")
MUTATING = frozenset(
    {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", "update", "setdefault", "popitem"}
)
"""Methods that change a list or dict: the sandbox allows them on lists and dicts the template built, never on
row data (``sandbox.LocalList``)."""
_RANDOM = re.compile(r"(\|\s*)random\b(\s*\(\s*\))?")  # Jinja's unseeded `| random` / `| random()`
_PROPERTIES = re.compile(r"(?:&\S+\s+)?(!\w+)")  # a node's anchor (optional), then its tag


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
    names: dict[str, str] = field(default_factory=dict)  # cardtune id -> promptsource name
    yaml_text: str = ""  # the converted templates in cardtune's file format

    def report(self) -> list[str]:
        """Human-readable lines: what was converted, with notes, and what was skipped and why."""
        lines = [f"{self.file}: {len(self.templates)} converted, {len(self.skipped)} skipped (family {self.family})"]
        whole = [t.id for t in self.templates if t.jinja is not None]
        if whole:
            lines.append(
                f"  {len(whole)} as `jinja` + `split` (rendered whole, then split at `|||`): {', '.join(whole)}"
            )
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
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:  # an alias: the anchored node itself was handled
            continue
        seen.add(id(node))
        tag = _PROPERTIES.match(text, node.start_mark.index) if node.tag in ALLOWED_TAGS else None
        if tag is not None and tag.group(1) == node.tag:  # `!Template`, or `&id001 !TemplateMetadata`
            chars[tag.start(1) : tag.end(1)] = " " * len(node.tag)
        elif not node.tag.startswith("tag:yaml.org,2002:"):
            issues.append(Issue(file, node.start_mark.line + 1, (), f"YAML tag {node.tag!r} is not allowed"))
        if isinstance(node, yaml.MappingNode):
            stack.extend(v for kv in node.value for v in kv)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    if issues:
        raise UserInputError(issues)
    return "".join(chars)


def _check(source: str) -> str | None:
    """Why ``source`` cannot be a cardtune template (as ``library._compile`` would refuse it), or None."""
    try:
        ast = ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"not valid Jinja ({exc.message})"
    bad = unsafe_access(ast)
    if bad is not None:
        return f"accesses {bad[0]}, which the sandbox forbids"
    for flt in ast.find_all(nodes.Filter):
        if flt.name in UNSUPPORTED_FILTERS:
            return UNSUPPORTED_FILTERS[flt.name]
    assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for call in ast.find_all(nodes.Call):
        if isinstance(call.node, nodes.Getattr) and call.node.attr in MUTATING:
            root: nodes.Node = call.node.node
            while isinstance(root, (nodes.Getattr, nodes.Getitem)):
                root = root.node
            if isinstance(root, nodes.Name) and root.name not in assigned:  # a row input, not the template's own
                return f"changes the row's `{root.name}` with `.{call.node.attr}(...)`, which the sandbox refuses"
    refused = refused_features(ast)
    if refused:
        return refused[0][1]
    try:
        ENV.from_string(ast)
    except jinja2.TemplateSyntaxError as exc:  # an unknown filter or test
        return f"{exc.message} (not in cardtune's template environment)"
    return None


def _split(jinja: str) -> tuple[str, str] | None:
    """(prompt, completion) sources when ``jinja`` splits at its one ``|||`` into independent halves, else None.

    Independent: each half is valid Jinja on its own, and nothing the prompt half assigns (``{% set %}``,
    macros) is read by the completion half; then rendering the halves apart equals rendering the whole and
    splitting the output, which is what promptsource does.
    """
    if jinja.count("|||") != 1:
        return None
    prompt, completion = jinja.split("|||")
    # The common `... {% if label != -1 %}||| {{ answer }}{% endif %}`: move the opening `if` after the split.
    opening = re.search(r"(\{%-?\s*if\b[^%]*-?%\})\s*$", prompt)
    if opening and re.search(r"\{%-?\s*endif\s*-?%\}\s*$", completion) and "{% if" not in prompt[: opening.start()]:
        prompt, completion = prompt[: opening.start()], opening.group(1) + completion
    try:
        before, after = ENV.parse(prompt), ENV.parse(completion)
    except jinja2.TemplateSyntaxError:
        return None  # `|||` sits inside a Jinja block
    assigned = {n.name for n in before.find_all(nodes.Name) if n.ctx in ("store", "param")}
    assigned |= {m.name for m in before.find_all(nodes.Macro)}
    if any(n.name in assigned for n in after.find_all(nodes.Name) if n.ctx == "load"):
        return None
    return prompt.strip(), completion.strip()


def _filters(source: str) -> list[nodes.Filter]:
    try:
        return list(ENV.parse(source).find_all(nodes.Filter))
    except jinja2.TemplateSyntaxError:
        return []


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
    notes: list[str] = []
    if _RANDOM.search(jinja) and "random" in {f.name for f in _filters(jinja)}:
        jinja = _RANDOM.sub(r"\1choice", jinja)
        notes.append("Jinja's `random` filter is now the stable per-row `choice` (promptsource's was unseeded)")
    reason = _check(jinja)
    if reason is not None:
        return reason
    halves = _split(jinja)
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
    if "choice" in {f.name for f in _filters(entry["jinja"])}:
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
    text: dict[str, str] = (
        {"prompt": halves[0], "completion": halves[1]} if halves else {"jinja": jinja.strip(), "split": CHOICE_SEP}
    )
    sources = [text.get("jinja", jinja)] + ([choices] if isinstance(choices, str) else [])
    spec: dict[str, Any] = {"id": tid, "inputs": _variables(*sources), **text}
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
        conv.names[spec["id"]] = str(entry.get("name") or key)
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

    def maybe(part: Part | None) -> Part | None:
        return move(part) if part is not None else None

    return dataclasses.replace(
        t,
        line=located.line_of(("templates", key)),
        turns=tuple((role, move(p)) for role, p in t.turns),
        completion=maybe(t.completion),
        choices=maybe(t.choices),
        system=maybe(t.system),
        jinja=maybe(t.jinja),
    )


def import_promptsource(path: Path) -> Conversion:
    """Read and convert a promptsource ``templates.yaml``."""
    return convert_promptsource(read_user_file(path, what="promptsource templates file"), str(path))
