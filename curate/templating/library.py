"""Instruction templates as validated data: the file schema, compiling, loading, and the template library.

Owns: the pydantic models of a template file (``templates/<family>/<name>.yaml`` or a card-local directory),
``Template`` (one compiled template: each Jinja part compiled once in the sandbox, with the file line of
every part so errors read ``file:line: templates[2].prompt: ...``), loading a file / directory / the shipped
library, and ``TemplateLibrary.resolve`` (ids and globs, with "did you mean").
The file schema lives in ``schema.py`` (re-exported here); rendering rows in ``render.py``; lint in ``lint.py``; promptsource import in ``promptsource.py``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import meta, nodes

from cardtune.curate.card.yamlsrc import LocatedYaml, check_bounded, load_located, read_user_file, validate_model
from cardtune.curate.errors import Issue, Loc, UserInputError, did_you_mean
from cardtune.curate.templating.jinja_env import ENV, PROVIDED, unsafe_access
from cardtune.curate.templating.sandbox import refused_features
from cardtune.curate.templating.schema import (
    CHOICE_SEP,
    TURN,
    FewShotFormat,
    Message,
    Metadata,
    TemplateFile,
    TemplateSpec,
    TurnsForm,
)
from cardtune.curate.templating.turns import Over, turn_fields

__all__ = [
    "CHOICE_SEP",
    "FewShotFormat",
    "Message",
    "Metadata",
    "Part",
    "Template",
    "TemplateFile",
    "TemplateLibrary",
    "TemplateSpec",
    "TurnsForm",
    "load_template_file",
    "load_templates",
    "resolve_card_templates",
    "template_bytes",
    "templates_from_text",
]


@dataclass(frozen=True, eq=False)
class Part:
    """One compiled Jinja source of a template, and where it sits in its file."""

    loc: Loc  # e.g. ("templates", 2, "prompt")
    source: str
    compiled: jinja2.Template
    ast: nodes.Template
    first_line: int  # file line of the source's first line
    block: bool  # a block scalar: template line n is file line first_line + n - 1

    @property
    def name(self) -> str:
        from cardtune.curate.errors import format_loc

        return format_loc(self.loc[2:])

    def file_line(self, template_line: int) -> int:
        return self.first_line + template_line - 1 if self.block else self.first_line


@dataclass(frozen=True, eq=False)
class Template:
    """A compiled template. Build with ``load_templates``; render with ``cardtune.curate.templating.render``."""

    spec: TemplateSpec
    family: str
    file: str
    line: int
    index: int
    examples: tuple[dict[str, Any], ...]
    system: Part | None
    turns: tuple[tuple[str, Part], ...]  # (role, part) of the prompt side: user/assistant turns, no system
    completion: Part | None  # None for a `jinja` template: its completion is the rendered text after `split`
    # (a `turns` template: ``turns`` is its one user part and ``completion`` its assistant part, each rendered
    # once per turn; ``over`` says over which list inputs)
    choices: Part | None  # answer_choices given as Jinja
    notes: tuple[str, ...] = field(default=())  # conversion notes (promptsource import)
    jinja: Part | None = None  # the `jinja` form: the whole text, rendered once per row and split at `spec.split`
    over: Over | None = None  # the `turns` form: the list inputs its turns run over

    @property
    def multi_turn(self) -> bool:
        """A `messages` or `turns` template: zero-shot only, never given few-shot exemplars."""
        return self.spec.messages is not None or self.over is not None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def inputs(self) -> list[str]:
        return list(self.spec.inputs)

    @property
    def shots(self) -> str:
        return self.spec.metadata.shots

    @property
    def split(self) -> str | None:
        """The marker a `jinja` template's rendered text is split at (None for the other forms)."""
        return self.spec.split

    def parts(self) -> list[Part]:
        out = [p for p in (self.system, self.choices) if p is not None]
        return out + [p for _, p in self.turns] + [p for p in (self.completion, self.jinja) if p is not None]

    def variables(self) -> set[str]:
        """Every variable the Jinja sources read from the row (names the renderer provides excluded)."""
        found: set[str] = set()
        for part in self.parts():
            found |= meta.find_undeclared_variables(part.ast)
        if self.over is not None:  # `turn` is provided; `turn.<name>` reads the `over` input <name>
            found.discard(TURN)
            fields, whole = self.turn_fields()
            found |= set(self.over.names) if whole else fields & set(self.over.names)
        return found - PROVIDED - set(ENV.globals)

    def turn_fields(self) -> tuple[set[str], bool]:
        """A `turns` template's ``turn.<name>`` reads (positions excluded) and whether ``turn`` is used whole."""
        fields: set[str] = set()
        whole = False
        for part in [p for _, p in self.turns] + ([self.completion] if self.completion is not None else []):
            found, used_whole = turn_fields(part.ast)
            fields, whole = fields | found, whole or used_whole
        return fields, whole

    def static_choices(self) -> tuple[str, ...] | None:
        return tuple(self.spec.answer_choices) if isinstance(self.spec.answer_choices, list) else None

    def literal_text(self) -> str:
        """The constant text of the Jinja sources (``TemplateData`` nodes) and answer choices: boilerplate."""
        chunks: list[str] = []
        for part in self.parts():
            for node in part.ast.find_all(nodes.TemplateData):
                text = str(node.data)  # the split marker of a `jinja` template is never output: not boilerplate
                chunks.extend(text.split(self.spec.split) if part is self.jinja and self.spec.split else [text])
        chunks.extend(self.static_choices() or ())
        return "\n".join(c for c in chunks if c.strip())

    def digest(self) -> str:
        """sha256 of ``template_bytes`` (for dataset version ids)."""
        return hashlib.sha256(template_bytes(self)).hexdigest()

    def where(self, part: Part | None = None, template_line: int | None = None) -> tuple[str, int]:
        """(file, line) of the template, or of a line inside one of its parts."""
        if part is None:
            return self.file, self.line
        return self.file, part.file_line(template_line or 1)


# ---------------------------------------------------------------------------------------------- loading


def _scalar_lines(text: str) -> dict[Loc, tuple[int, bool]]:
    """Loc → (first content line, is block scalar) for every scalar; also rejects unknown YAML tags."""
    out: dict[Loc, tuple[int, bool]] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out  # load_located reports syntax errors with lines

    def walk(node: yaml.Node, loc: Loc) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(v, (*loc, str(k.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*loc, i))
        elif isinstance(node, yaml.ScalarNode):
            block = node.style in ("|", ">")
            out[loc] = (node.start_mark.line + (2 if block else 1), node.style == "|")

    if root is not None:
        walk(root, ())
    return out


def _compile(
    source: str, loc: Loc, tid: str, located: LocatedYaml, lines: dict[Loc, tuple[int, bool]], issues: list[Issue]
) -> Part | None:
    first, block = lines.get(loc, (located.line_of(loc), False))

    def at(tline: int) -> int:
        return first + tline - 1 if block else first

    too_deep = f"template {tid!r}: nested too deeply to compile (simplify the expression)"
    try:
        ast = ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        issues.append(Issue(located.file, at(exc.lineno), loc, f"template {tid!r}: Jinja syntax error: {exc.message}"))
        return None
    except RecursionError:
        issues.append(Issue(located.file, at(1), loc, too_deep))
        return None
    bad = unsafe_access(ast)
    if bad is not None:
        issues.append(
            Issue(
                located.file,
                at(bad[1]),
                loc,
                f"template {tid!r}: access to {bad[0]} is not allowed (sandbox: no `_` attributes); never rendered",
            )
        )
        return None
    refused = refused_features(ast)
    for line, reason in refused:
        issues.append(Issue(located.file, at(line), loc, f"template {tid!r}: {reason}; never rendered"))
    if refused:
        return None
    try:
        compiled = ENV.from_string(ast)
    except jinja2.TemplateSyntaxError as exc:  # unknown filter/test names are compile-time errors
        hint = ""
        name = re.search(r"named '([^']+)'", exc.message or "")
        if name:
            hint = did_you_mean(name.group(1), list(ENV.filters) + list(ENV.tests))
        issues.append(Issue(located.file, at(exc.lineno), loc, f"template {tid!r}: {exc.message}{hint}"))
        return None
    except (RecursionError, SyntaxError):  # Python's own nesting limits, on the compiled code
        issues.append(Issue(located.file, at(1), loc, too_deep))
        return None
    return Part(loc=loc, source=source, compiled=compiled, ast=ast, first_line=first, block=block)


def templates_from_located(
    located: LocatedYaml, text: str, notes: dict[str, tuple[str, ...]] | None = None
) -> list[Template]:
    """Validate and compile a parsed template file. Raises ``UserInputError`` with every issue found."""
    if not isinstance(located.data, dict):
        raise UserInputError([located.issue((), "a template file must be a mapping with `family` and `templates`")])
    spec_file: TemplateFile = validate_model(TemplateFile, located)
    lines = _scalar_lines(text)
    issues: list[Issue] = []
    out: list[Template] = []
    for i, spec in enumerate(spec_file.templates):
        base: Loc = ("templates", i)
        if not spec.id.startswith(spec_file.family + "/"):
            issues.append(
                located.issue((*base, "id"), f"id {spec.id!r} must start with the family `{spec_file.family}/`")
            )
        parts: dict[Loc, Part | None] = {}

        def comp(
            loc: Loc, source: str, spec: TemplateSpec = spec, parts: dict[Loc, Part | None] = parts
        ) -> Part | None:
            parts[loc] = _compile(source, loc, spec.id, located, lines, issues)
            return parts[loc]

        system = comp((*base, "system"), spec.system) if spec.system is not None else None
        choices = comp((*base, "answer_choices"), spec.answer_choices) if isinstance(spec.answer_choices, str) else None
        turns: list[tuple[str, Part | None]] = []
        completion: Part | None = None
        whole: Part | None = None
        over: Over | None = None
        if spec.jinja is not None:
            whole = comp((*base, "jinja"), spec.jinja)
        elif spec.turns is not None:  # one user part and one assistant part, rendered per turn
            turns.append(("user", comp((*base, "turns", "user"), spec.turns.user)))
            completion = comp((*base, "turns", "assistant"), spec.turns.assistant)
            over_loc: Loc = (*base, "turns", "over")
            over = Over(tuple(spec.turns.over), over_loc, located.line_of(over_loc))
            if system is not None and TURN in meta.find_undeclared_variables(system.ast):
                message = f"template {spec.id!r}: `{TURN}` is only defined in turns.user and turns.assistant"
                issues.append(Issue(located.file, system.first_line, system.loc, message))
        elif spec.messages is not None:
            for j, msg in enumerate(spec.messages):
                part = comp((*base, "messages", j, "content"), msg.content)
                if msg.role == "system":
                    system = part
                else:
                    turns.append((msg.role, part))
            _, completion = turns.pop()
        else:
            assert spec.prompt is not None and spec.completion is not None
            turns.append(("user", comp((*base, "prompt"), spec.prompt)))
            completion = comp((*base, "completion"), spec.completion)
        if any(p is None for p in parts.values()) or (completion is None and whole is None):
            continue
        out.append(
            Template(
                spec=spec,
                family=spec_file.family,
                file=located.file,
                line=located.line_of(base),
                index=i,
                examples=tuple(spec_file.examples),
                system=system,
                turns=tuple((role, p) for role, p in turns if p is not None),
                completion=completion,
                choices=choices,
                notes=(notes or {}).get(spec.id, ()),
                jinja=whole,
                over=over,
            )
        )
    seen: dict[str, int] = {}
    for t in out:
        if t.id in seen:
            issues.append(
                located.issue(("templates", t.index, "id"), f"duplicate id {t.id!r} (also line {seen[t.id]})")
            )
        seen.setdefault(t.id, t.line)
    if issues:
        raise UserInputError(sorted(issues, key=lambda i: i.line))
    return out


def _is_promptsource(data: object) -> bool:
    return isinstance(data, dict) and "dataset" in data and isinstance(data.get("templates"), dict)


def load_template_file(path: Path) -> list[Template]:
    """Load one file: our format, or a promptsource ``templates.yaml`` (converted; see ``promptsource.py``)."""
    return templates_from_text(read_user_file(path, what="template file"), str(path))


def templates_from_text(text: str, file: str) -> list[Template]:
    """The templates of a template file's text (``file`` names it in errors); what ``load_template_file`` does
    after reading (``cardtune studio`` checks unsaved edits with it)."""
    check_bounded(text, file)  # alias bombs and recursive aliases, before anything walks the YAML
    located = None if "!Template" in text else load_located(text, file)
    if located is None or _is_promptsource(located.data):
        from cardtune.curate.templating.promptsource import convert_promptsource

        return convert_promptsource(text, file).templates  # the text already read, not the file again
    return templates_from_located(located, text)


MAX_WALK = 20_000  # directory entries looked at under one template folder before giving up


def template_files(path: Path) -> list[Path]:
    """The YAML files of a template directory (recursive, sorted, hidden folders skipped), or ``[path]`` for a file.

    The search is bounded: the file-system root is refused, and a tree with more than ``MAX_WALK`` entries stops
    with a clear line (a ``templates_dir`` pointed at the wrong folder must not walk the whole disk).
    """
    if path.is_dir():
        resolved = path.resolve()
        if resolved == Path(resolved.anchor):
            raise UserInputError(f"{path}: refusing to search the file-system root for templates")
        found: list[Path] = []
        seen = 0
        for folder, dirs, files in os.walk(resolved):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            seen += len(dirs) + len(files)
            if seen > MAX_WALK:
                raise UserInputError(
                    f"{path}: more than {MAX_WALK} files and folders under this template directory; "
                    "point it at the folder that holds your template .yaml files"
                )
            found.extend(Path(folder) / f for f in files if f.endswith((".yaml", ".yml")))
        base = path if not path.is_absolute() else resolved
        return sorted(base / p.relative_to(resolved) for p in found)
    if not path.exists():
        raise UserInputError(f"{path}: template file or directory not found")
    return [path]


def load_templates(paths: Iterable[Path]) -> list[Template]:
    """Load files and directories; every file's issues are collected before raising."""
    issues: list[Issue] = []
    out: list[Template] = []
    for root in paths:
        for file in template_files(Path(root)):
            try:
                out.extend(load_template_file(file))
            except UserInputError as exc:
                issues.extend(exc.issues)
    if issues:
        raise UserInputError(issues)
    return out


def shipped_dir() -> Path:
    """Folder of the template library shipped with cardtune."""
    from cardtune.templates import library_path

    return library_path()


class TemplateLibrary:
    """Templates by id: the shipped library plus any extra directories (ids must be unique)."""

    def __init__(self, templates: Iterable[Template]) -> None:
        self._by_id: dict[str, Template] = {}
        issues: list[Issue] = []
        for t in templates:
            other = self._by_id.get(t.id)
            if other is not None:
                msg = f"duplicate template id {t.id!r} (also {other.file}:{other.line}); rename one of them"
                issues.append(Issue(t.file, t.line, ("templates", t.index, "id"), msg))
                continue
            self._by_id[t.id] = t
        if issues:
            raise UserInputError(issues)

    @classmethod
    def load(cls, *paths: Path, shipped: bool = True) -> TemplateLibrary:
        roots = ([shipped_dir()] if shipped else []) + [Path(p) for p in paths]
        return cls(load_templates(roots))

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Template]:
        return iter(sorted(self._by_id.values(), key=lambda t: t.id))

    def __contains__(self, tid: object) -> bool:
        return tid in self._by_id

    @property
    def ids(self) -> list[str]:
        return sorted(self._by_id)

    def families(self) -> dict[str, list[Template]]:
        out: dict[str, list[Template]] = {}
        for t in self:
            out.setdefault(t.family, []).append(t)
        return out

    def get(self, tid: str) -> Template:
        try:
            return self._by_id[tid]
        except KeyError:
            raise UserInputError(f"unknown template {tid!r}{did_you_mean(tid, self._by_id)}") from None

    def match(self, pattern: str) -> list[Template]:
        """Templates whose id matches ``pattern`` (an id, a glob like ``nli/*``, or a bare family name)."""
        if pattern in self._by_id:
            return [self._by_id[pattern]]
        if "/" not in pattern and not any(ch in pattern for ch in "*?["):
            pattern += "/*"
        return [self._by_id[i] for i in sorted(fnmatch.filter(self._by_id, pattern))]

    def resolve(self, patterns: Sequence[str]) -> list[Template]:
        """Templates for ``patterns`` in order, each once. Raises on a pattern that matches nothing."""
        out: dict[str, Template] = {}
        bad: list[str] = []
        for pattern in patterns:
            found = self.match(pattern)
            if not found:
                bad.append(self.unmatched_message(pattern))
            out.update((t.id, t) for t in found)
        if bad:
            raise UserInputError("; ".join(bad))
        return list(out.values())

    def unmatched_message(self, pattern: str) -> str:
        options = [*self._by_id, *(f"{f}/*" for f in self.families())]
        return f"no template matches {pattern!r}{did_you_mean(pattern, options)}"


def template_bytes(t: Template) -> bytes:
    """Canonical bytes of a template (its validated spec as sorted JSON): what a version id hashes.

    Formatting and comments in the file do not change it; any change to text, inputs or metadata does. The
    fields of the `jinja` and `turns` forms are left out when unused, so templates of the other forms keep their
    bytes.
    """
    spec = t.spec.model_dump(mode="json")
    for name in ("jinja", "split", "turns"):
        if spec[name] is None:
            del spec[name]
    return json.dumps(spec, sort_keys=True, ensure_ascii=False).encode("utf-8")


def resolve_card_templates(card: Any, inputs: Any) -> dict[str, list[Template]]:
    """Task name → templates for a ``Card`` and its resolved inputs (see ``card_templates.task_templates``)."""
    from cardtune.curate.templating.card_templates import task_templates

    return task_templates(card, inputs)
