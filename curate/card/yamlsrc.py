"""Safe YAML loading that remembers where every key and item came from.

Cards and template files are untrusted, hand-written YAML. This module owns reading them: a safe loader
(no arbitrary tags), duplicate keys as errors, and a map from each dotted location (``("tasks", 1,
"weight")``) to its 1-based line, so every later error can say ``file:line: tasks[1].weight: ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cardtune.curate.errors import Issue, Loc, UserInputError, did_you_mean


@dataclass
class LocatedYaml:
    """A parsed YAML document plus the line of every location in it."""

    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    file: str = ""

    def line_of(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest recorded parent."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def issue(self, loc: Loc, message: str) -> Issue:
        return Issue(file=self.file, line=self.line_of(loc), loc=tuple(loc), message=message)


MAX_ALIAS_NODES = 100_000
"""Nodes all aliases (``*name``) of one document may expand to, counted with nesting (alias bombs)."""
MAX_DEPTH = 100
"""Deepest nesting of mappings and lists in one document."""

_MERGE = "tag:yaml.org,2002:merge"


class YamlLimitError(yaml.MarkedYAMLError):
    """A document that is too large once its aliases are expanded, recursive, or nested too deep."""


class BoundedComposer(yaml.SafeLoader):
    """A SafeLoader whose composer refuses alias bombs, recursive aliases and very deep nesting, with the line.

    Composing keeps each alias as a shared node, so it is cheap; everything after it (building the data,
    walking for lines) visits an alias once per use. So each collection's expanded size (its nodes, aliases
    counted in full) is known when it closes, and every alias adds its target's size to the document's
    total, which may not pass ``MAX_ALIAS_NODES``. An alias to a collection that is still open (``&a [*a]``,
    ``&a {<<: *a}``) is recursive and refused.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(closed collection node) -> expanded size
        self._expanded = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event: Any = self.peek_event()  # type: ignore[no-untyped-call]
            target = self.anchors.get(event.anchor)
            if target is not None and not isinstance(target, yaml.ScalarNode):
                size = self._sizes.get(id(target))
                if size is None:
                    raise YamlLimitError(
                        problem=f"recursive alias *{event.anchor}: it refers to a mapping or list that contains it",
                        problem_mark=event.start_mark,
                    )
                self._expanded += size
                if self._expanded > MAX_ALIAS_NODES:
                    raise YamlLimitError(
                        problem=f"aliases expand this document beyond {MAX_ALIAS_NODES:,} nodes (at *{event.anchor})",
                        problem_mark=event.start_mark,
                    )
            return super().compose_node(parent, index)
        start: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(start, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                mark: Any = start.start_mark
                raise YamlLimitError(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=mark)
            try:
                node: Any = super().compose_node(parent, index)
            finally:
                self._depth -= 1
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
            self._sizes[id(node)] = 1 + sum(self._sizes.get(id(c), 1) for c in children)
            return node
        return super().compose_node(parent, index)


class _Loader(BoundedComposer):
    """SafeLoader; unknown tags (``!Template``, ``!!python/object``) are errors unless registered."""


def check_bounded(text: str, file: str) -> None:
    """Compose ``text`` with ``BoundedComposer`` only (tags are not resolved); raise on an alias bomb etc."""
    try:
        loader = BoundedComposer(text)
    except yaml.YAMLError:
        return  # a control character: the real load reports it with its line
    try:
        loader.get_single_node()
    except YamlLimitError as exc:
        raise UserInputError([_limit_issue(file, exc)]) from None
    except yaml.YAMLError:
        return  # the real load reports syntax errors with their line
    finally:
        loader.dispose()


def _limit_issue(file: str, exc: yaml.MarkedYAMLError) -> Issue:
    line = exc.problem_mark.line + 1 if exc.problem_mark else 0
    return Issue(file, line, (), f"refused YAML: {exc.problem}")


def read_user_file(path: Path, what: str = "file") -> str:
    """Read a user file as UTF-8 text with one-line errors for the usual mistakes."""
    if not path.exists():
        raise UserInputError(f"{path}: {what} not found")
    if path.is_dir():
        raise UserInputError(f"{path}: is a directory, expected a {what} (a YAML file)")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read {what}: {exc.strerror}") from None


def load_located(text: str, file: str, loader_cls: type[yaml.SafeLoader] = _Loader) -> LocatedYaml:
    """Parse one YAML document, recording lines; raise ``UserInputError`` on syntax errors or dup keys.

    Alias bombs, recursive aliases and nesting deeper than ``MAX_DEPTH`` are refused with their line (see
    ``BoundedComposer``); merge keys (``<<: *defaults``) work, and a key given explicitly overrides a merged one.
    """
    try:
        if not issubclass(loader_cls, BoundedComposer):
            check_bounded(text, file)
        loader = loader_cls(text)
    except yaml.reader.ReaderError as exc:  # a NUL or other control character: YAML refuses it before parsing
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        message = f"invalid YAML: control character #x{code:04x} is not allowed (remove it)"
        raise UserInputError([Issue(file, line, (), message)]) from None
    issues: list[Issue] = []
    try:
        try:
            node = loader.get_single_node()
        except YamlLimitError as exc:
            raise UserInputError([_limit_issue(file, exc)]) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 0
            col = f", column {mark.column + 1}" if mark else ""
            problem = exc.problem or exc.context or "invalid YAML"
            raise UserInputError([Issue(file, line, (), f"invalid YAML{col}: {problem}")]) from None
        except yaml.YAMLError as exc:
            raise UserInputError([Issue(file, 0, (), f"invalid YAML: {exc}")]) from None
        if node is None:
            raise UserInputError([Issue(file, 0, (), "the file is empty")])
        located = LocatedYaml(data=None, file=file)
        located.lines[()] = node.start_mark.line + 1
        located.data = _build(loader, node, (), located, issues)
    finally:
        loader.dispose()
    if issues:
        raise UserInputError(issues)
    return located


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _flatten(node: yaml.MappingNode, out: LocatedYaml, issues: list[Issue]) -> list[tuple[Any, Any, bool]]:
    """(key node, value node, merged) of a mapping, merge keys (``<<``) expanded; merged pairs come first.

    Among merged mappings the first given wins (YAML's merge rule); the caller lets explicit keys override.
    """
    explicit: list[tuple[Any, Any, bool]] = []
    merged: list[tuple[Any, Any, bool]] = []
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            explicit.append((key_node, value_node, False))
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                line = source.start_mark.line + 1
                issues.append(Issue(out.file, line, (), "`<<` (merge) expects a mapping or a list of mappings"))
                continue
            merged.extend((k, v, True) for k, v, _ in _flatten(source, out, issues))
    return merged + explicit


def _build(loader: yaml.SafeLoader, node: yaml.Node, loc: Loc, out: LocatedYaml, issues: list[Issue]) -> Any:
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        issues.append(Issue(out.file, node.start_mark.line + 1, loc, f"unsupported YAML tag {node.tag!r}"))
        return None
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        merged_keys: set[Any] = set()
        for key_node, value_node, merged in _flatten(node, out, issues):
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(Issue(out.file, line, loc, "keys must be plain scalars"))
                continue
            try:
                key = loader.construct_object(key_node, deep=True)
            except yaml.YAMLError as exc:
                issues.append(Issue(out.file, line, loc, f"bad key: {exc}"))
                continue
            if not isinstance(key, (str, int, float, bool)):
                issues.append(Issue(out.file, line, loc, "keys must be plain scalars"))
                continue
            child: Loc = (*loc, key if isinstance(key, (str, int)) else str(key))
            if key in result:
                if merged:
                    continue  # an earlier merged mapping already gave it: the first one wins
                if key not in merged_keys:
                    first = out.lines.get(child, 0)
                    issues.append(Issue(out.file, line, child, f"duplicate key (first given on line {first})"))
                    continue
                merged_keys.discard(key)  # an explicit key overrides a merged one
            elif merged:
                merged_keys.add(key)
            out.lines[child] = line
            result[key] = _build(loader, value_node, child, out, issues)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            child = (*loc, i)
            out.lines[child] = item.start_mark.line + 1
            items.append(_build(loader, item, child, out, issues))
        return items
    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        issues.append(Issue(out.file, node.start_mark.line + 1, loc, f"unsupported YAML: {exc.problem}"))
        return None


def validate_model(model_cls: Any, located: LocatedYaml, base_loc: Loc = ()) -> Any:
    """Validate ``located.data`` (or the part at ``base_loc``) into a pydantic model.

    Every pydantic error becomes an ``Issue`` at the right line; unknown keys and enum values get
    "did you mean". Raises ``UserInputError`` with all issues at once.
    """
    import pydantic

    data: Any = located.data
    for part in base_loc:
        data = data[part]
    try:
        return model_cls.model_validate(data)
    except pydantic.ValidationError as exc:
        issues = [located.issue((*base_loc, *err["loc"]), _message(model_cls, err)) for err in exc.errors()]
        raise UserInputError(_dedupe(issues)) from None


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen: set[str] = set()
    out = []
    for issue in issues:
        if str(issue) not in seen:
            seen.add(str(issue))
            out.append(issue)
    return out


def _message(model_cls: Any, err: Any) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        names = _field_names_at(model_cls, loc[:-1])
        return "unknown field" + did_you_mean(str(loc[-1]), names)
    if kind == "missing":
        return "required field is missing"
    if kind in ("literal_error", "enum"):
        expected = str(err.get("ctx", {}).get("expected", ""))
        import re

        options = re.findall(r"'([^']*)'", expected)
        given = err.get("input")
        hint = did_you_mean(str(given), options) if isinstance(given, str) else ""
        return f"{given!r} is not one of {', '.join(options)}{hint}"
    if kind in {"model_type", "dict_type"}:
        return f"expected a mapping, got {_type_name(err.get('input'))}"
    if kind == "list_type":
        return f"expected a list, got {_type_name(err.get('input'))}"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, ") :]
    if kind.endswith("_type") or kind.endswith("_parsing"):
        msg += f" (got {_type_name(err.get('input'))} {err.get('input')!r})"
    return msg


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _field_names_at(model_cls: Any, loc: Loc) -> list[str]:
    """Field names (and aliases) of the pydantic model found at ``loc`` inside ``model_cls``."""
    import typing

    from pydantic import BaseModel

    current: Any = model_cls
    for part in loc:
        current = _unwrap(current, typing)
        if isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(part)
            if info is None:
                return []
            current = info.annotation
        elif isinstance(part, int):
            continue
        else:
            # dict values or union tags: step into the value type
            continue
    current = _unwrap(current, typing)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(tp: Any, typing: Any) -> Any:
    for _ in range(4):
        origin = typing.get_origin(tp)
        if origin is None:
            return tp
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if origin in (list, tuple, set, frozenset) and args:
            tp = args[0]
        elif origin is dict and len(args) == 2:
            tp = args[1]
        elif args:
            models = [a for a in args if isinstance(a, type)]
            tp = models[0] if models else args[0]
        else:
            return tp
    return tp
