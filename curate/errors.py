"""Errors for bad user input, shared by both halves (curation and training): ``Issue`` and ``UserInputError``.

An ``Issue`` is one problem with the file, line and dotted field it is at; a ``UserInputError`` carries one or
more of them and means exit code 1 with one line per issue, never a traceback. ``did_you_mean`` is the one
"did you mean" rule used by every registry and schema error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    """One problem in a user file, with the line it is on (0 when the whole file is at fault)."""

    file: str
    line: int
    loc: Loc
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        dotted = format_loc(self.loc)
        return f"{where}: {dotted}: {self.message}" if dotted else f"{where}: {self.message}"


class UserInputError(Exception):
    """Bad user input (a card, a template, a data file): one or more precise issues. Exit code 1."""

    def __init__(self, issues: Sequence[Issue] | str) -> None:
        if isinstance(issues, str):
            issues = [Issue(file="", line=0, loc=(), message=issues)]
        self.issues: list[Issue] = list(issues)
        super().__init__("\n".join(_plain(i) for i in self.issues))


def _plain(issue: Issue) -> str:
    return str(issue) if issue.file else (f"{format_loc(issue.loc)}: " if issue.loc else "") + issue.message


def format_loc(loc: Loc) -> str:
    """``("tasks", 1, "weight")`` → ``tasks[1].weight``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a close option exists, else an empty string."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
