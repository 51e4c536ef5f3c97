"""Shared CLI plumbing: consoles, and turning user mistakes into one clear line and an exit code.

Exit codes: 0 ok, 1 invalid input (cards, templates, data), 2 usage error (typer's own).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from cardtune.curate.errors import UserInputError

# Piped output (CI logs, `| less`) gets 120 columns instead of rich's 80, so report tables stay readable;
# a terminal, or COLUMNS, decides otherwise.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120
# User text (paths, task names, template ids, data) is printed as it is: no emoji codes (`:thumbs_up:`) ever,
# and every print site passes user text through `esc` (or a `rich.text.Text`), so `[bold]` stays literal.
console = Console(highlight=False, width=_WIDTH, emoji=False)
# Error lines are never wrapped: `file:line: field: message` must stay one line for editors and grep.
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

EXIT_INVALID = 1


@contextmanager
def user_errors() -> Iterator[None]:
    """Print ``UserInputError`` (and file-system mistakes) as plain lines on stderr and exit 1."""
    try:
        yield
    except UserInputError as exc:
        print_issues(exc)
        raise typer.Exit(EXIT_INVALID) from None
    except OSError as exc:  # a path the user gave: unwritable, a file where a folder is expected, disk full
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"[bold red]error:[/] {esc(where + (exc.strerror or str(exc)))}")
        raise typer.Exit(EXIT_INVALID) from None
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (cardtune.cli.main turns it into one)
        said = str(exc) or "no dataset version or run directory was left half-written"
        err_console.print(f"[yellow]interrupted[/]: {esc(said)}")
        raise typer.Exit(130) from None


def print_issues(exc: UserInputError) -> None:
    """One red ``error:`` line per issue on stderr."""
    for line in str(exc).splitlines() or ["invalid input"]:
        err_console.print(f"[bold red]error:[/] {esc(line)}")


def esc(text: object) -> str:
    """``text`` (a path, a name, data) made safe to put inside a rich markup string: printed verbatim."""
    from rich.markup import escape

    return escape(str(text))


def fail(message: str, code: int = EXIT_INVALID) -> typer.Exit:
    """Print an error line and return the ``typer.Exit`` to raise."""
    err_console.print(f"[bold red]error:[/] {esc(message)}")
    sys.stderr.flush()
    return typer.Exit(code)
