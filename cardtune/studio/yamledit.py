"""Edits to YAML text that keep every other byte: comments, blank lines, quoting, flow or block style, indentation.

A round-trip dump (ruamel.yaml) re-indents and re-flows what it did not change; the studio instead edits the
text at the positions PyYAML's composer reports for each node (``start_mark`` / ``end_mark``). Owns
``set_value`` (replace a scalar, or add a key to a mapping) and ``append_item`` (add an item to a block list).
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml

Path = Sequence[str | int]


def _node(text: str, path: Path) -> yaml.Node:
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is None:
        raise ValueError("the document is empty")
    for part in path:
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode) and 0 <= part < len(node.value):
            node = node.value[part]
        elif isinstance(part, str) and isinstance(node, yaml.MappingNode):
            found = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
            if not found:
                raise KeyError(part)
            node = found[0]
        else:
            raise KeyError(part)
    return node


def set_value(text: str, path: Path, key: str, value: str) -> str:
    """Set ``key`` of the mapping at ``path`` to the YAML scalar text ``value`` (replaced in place, or added)."""
    mapping = _node(text, path)
    if not isinstance(mapping, yaml.MappingNode) or not mapping.value:
        raise ValueError(f"{'.'.join(map(str, path))}: not a mapping")
    for k, v in mapping.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            if not isinstance(v, yaml.ScalarNode):
                raise ValueError(f"{key}: not a scalar")
            return text[: v.start_mark.index] + value + text[v.end_mark.index :]
    if mapping.flow_style:  # {a: 1, b: 2} -> {a: 1, b: 2, key: value}
        close = text.rindex("}", mapping.start_mark.index, mapping.end_mark.index)
        return text[:close].rstrip() + f", {key}: {value}" + text[close:]
    first_key, first_value = mapping.value[0]
    if first_value.end_mark.line != first_key.start_mark.line:
        raise ValueError(f"{'.'.join(map(str, path))}: its first value spans lines; add `{key}` by hand")
    line_end = text.find("\n", first_value.end_mark.index)
    line_end = len(text) if line_end == -1 else line_end
    indent = " " * first_key.start_mark.column
    return text[:line_end] + f"\n{indent}{key}: {value}" + text[line_end:]


def append_item(text: str, path: Path, lines: Sequence[str]) -> str:
    """Append an item (its lines, the first one without the dash, the rest relative to it) to the block list at
    ``path``, indented like the list's existing items."""
    seq = _node(text, path)
    if not isinstance(seq, yaml.SequenceNode) or seq.flow_style or not seq.value:
        raise ValueError(f"{'.'.join(map(str, path))}: not a block list with items")
    col = seq.value[0].start_mark.column
    dash = " " * max(col - 2, 0) + "- "
    body = [dash + lines[0], *(" " * col + line if line else "" for line in lines[1:])]
    end = seq.value[-1].end_mark
    if end.column == 0:  # the last item ended with a block scalar: its end is the next line's start
        at = end.index
        return text[:at] + "\n".join(body) + "\n" + text[at:]
    at = text.find("\n", end.index)
    if at == -1:
        return text + "\n" + "\n".join(body) + "\n"
    return text[:at] + "\n" + "\n".join(body) + text[at:]
