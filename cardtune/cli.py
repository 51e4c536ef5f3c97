"""The ``cardtune`` command line: parses arguments and calls library functions, nothing more.

Each area registers its commands from its own module (``cli_templates``, ``cli_data``, ``cli_train``);
training modules import torch lazily, inside the commands, so ``cardtune validate`` stays fast and light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

import cardtune
from cardtune._console import console, esc, fail, print_issues

app = typer.Typer(
    name="cardtune",
    help="Turn task data into versioned instruction-tuning / fine-tuning datasets, and tune on them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        console.print(f"cardtune {cardtune.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """cardtune: dataset cards in, versioned datasets and tuned models out."""


@app.command()
def validate(
    cards: Annotated[list[Path], typer.Argument(help="Card files to check.", show_default=False)],
) -> None:
    """Check cards: schema, cross-field rules, template references and source columns. Never imports torch."""
    from cardtune._console import err_console
    from cardtune.curate.card.load import unused_option_warnings
    from cardtune.curate.card.validate import validate_card
    from cardtune.curate.errors import UserInputError

    bad = 0
    for path in cards:
        try:
            card = validate_card(path)
        except UserInputError as exc:
            bad += 1
            print_issues(exc)
            continue
        for warning in unused_option_warnings(card):  # legal but ignored: reported, never fatal
            err_console.print(f"[yellow]warning:[/] {esc(warning)}")
        console.print(f"[green]ok[/] {esc(path)}: {esc(card.name)} ({card.mode}, {len(card.tasks)} task(s))")
    if bad:
        raise typer.Exit(1)


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Dataset name; writes data_cards/NAME.yaml unless --output is given.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the card.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter card (and a tiny sample source next to it) that validates and builds."""
    import re

    from cardtune.curate.card.schema import SAFE_NAME
    from cardtune.curate.card.starter import starter_files

    if not re.fullmatch(SAFE_NAME, name) or len(name) > 128:
        raise fail(
            f"{name!r}: a dataset name is one folder name: letters, digits, '.', '_' or '-', not starting with '.'",
            code=2,
        )
    target = output or Path("data_cards") / f"{name}.yaml"
    data = target.parent / "data" / f"{name}.jsonl"
    if target.is_dir():
        raise fail(f"{target}: is a directory; give the card's file name, e.g. {target / (name + '.yaml')}")
    if target.exists() and not force:
        raise fail(f"{target}: already exists (use --force to overwrite)")
    files = starter_files(name, str(target), f"data/{name}.jsonl")
    try:
        data.parent.mkdir(parents=True, exist_ok=True)
        for path, text in ((target, files["card"]), (data, files["data"])):
            if path == data and data.exists():
                continue
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
    except OSError as exc:
        raise fail(f"{exc.filename or target}: cannot write: {exc.strerror or exc}") from None
    console.print(
        f"wrote {esc(target)} (and a sample source {esc(data)}): edit it, then `cardtune validate {esc(target)}`"
    )


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file instead of stdout.")] = None,
) -> None:
    """Print the card's JSON Schema (for editor completion, e.g. yaml-language-server)."""
    from cardtune.curate.card.schema import Card

    text = json.dumps(Card.model_json_schema(), indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise fail(f"{output}: cannot write: {exc.strerror or exc}") from None
        console.print(f"wrote {esc(output)}")


@app.command()
def studio(
    card: Annotated[Path | None, typer.Argument(help="The card to open (default: pick one in the browser).")] = None,
    port: Annotated[int, typer.Option("--port", "-p", help="Port (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (keep 127.0.0.1 unless you mean it).")] = (
        "127.0.0.1"
    ),
    runs: Annotated[Path, typer.Option("--runs", help="Where `cardtune tune` wrote runs.")] = Path("runs"),
) -> None:
    """A local web workbench: edit templates with live previews, shape the mixture, build, read versions and runs."""
    from cardtune.studio import missing

    if missing():
        raise fail(f"cardtune studio needs {', '.join(missing())}: pip install 'cardtune[studio]'")
    if card is not None and not card.is_file():
        raise fail(f"{card}: no such card file")
    from cardtune.studio.server import serve

    serve(card, host, port, runs, say=lambda line: console.print(line, markup=False))


def _register() -> None:
    """Attach the commands of each area; each module imports its heavy dependencies inside its commands."""
    from cardtune import cli_data, cli_templates, cli_train

    for module in (cli_templates, cli_data, cli_train):
        module.register(app)


_register()


def main() -> None:
    """Console-script entry point. SIGTERM is handled like Ctrl-C: staging dirs are removed, runs say how to resume."""
    import signal

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except SystemExit as exc:
        if exc.code == 130:
            # CPython marks an interrupt that leaves any ``exec`` of a source string as unhandled (dataclasses and
            # namedtuples exec their methods while a lazily imported module loads) and, at exit, kills the process
            # with SIGINT instead of exiting 130. One more ``exec`` of a string clears that stale mark: the
            # interrupt *was* handled (staging dirs removed, the ``interrupted`` line printed).
            exec("pass")
        raise
