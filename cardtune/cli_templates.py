"""``cardtune templates ...``: list, show, render (a highlighted preview on real rows), lint, import.

Parses arguments and calls ``cardtune.curate`` (templating, render, lint, promptsource); user mistakes
are one red line and exit 1 through ``user_errors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cardtune._console import console, err_console, fail, print_issues, user_errors
from cardtune.curate.errors import UserInputError

FIELD_STYLES = ("bold cyan", "bold magenta", "bold green", "bold yellow", "bold blue", "bold red")

DirOption = Annotated[
    list[Path] | None,
    typer.Option("--dir", "-d", help="Extra template directory or file (repeatable), besides the shipped library."),
]


def _library(dirs: list[Path] | None) -> Any:
    from cardtune.curate.templating.library import TemplateLibrary

    return TemplateLibrary.load(*(dirs or []))


def _styled(text: str, names: list[str]) -> Text:
    """A rendered text with each source field's runs coloured (markers from ``templating.preview``)."""
    from cardtune.curate.templating.preview import segments

    out = Text()
    for run, i in segments(text):
        out.append(run, style=FIELD_STYLES[i % len(FIELD_STYLES)] if i is not None else "")
    return out


def _preview(t: Any, row: dict[str, Any], h: int, title: str) -> Panel:
    from cardtune.curate.templating.preview import mark
    from cardtune.curate.templating.render import RenderError, render_row

    names = t.inputs
    marked = {n: mark(row[n], i) for i, n in enumerate(names)}
    try:
        r = render_row(t, marked, h)
    except RenderError:
        r = render_row(t, {n: row[n] for n in names}, h)  # a filter needed the plain value; no highlighting
    body = Text()
    turns = ([("system", r.system)] if r.system is not None else []) + list(r.turns) + [("assistant", r.completion)]
    for role, content in turns:
        body.append(f"{role}:\n", style="dim italic")
        body.append_text(_styled(content, names))
        body.append("\n\n")
    if r.answer_choices is not None:
        body.append("answer_choices: ", style="dim italic")
        body.append_text(_styled(" | ".join(r.answer_choices), names))
    legend = Text("  ").join(Text(n, style=FIELD_STYLES[i % len(FIELD_STYLES)]) for i, n in enumerate(names))
    return Panel(body, title=Text(title), subtitle=legend, title_align="left", expand=True)


def register(app: typer.Typer) -> None:
    """Attach the ``templates`` sub-app to the main CLI."""
    sub = typer.Typer(help="Instruction templates: list, show, render previews, lint, import promptsource.")
    app.add_typer(sub, name="templates")

    @sub.command("list")
    def list_(
        family: Annotated[str | None, typer.Option("--family", "-f", help="Only this family.")] = None,
        dirs: DirOption = None,
    ) -> None:
        """List templates (id, inputs, shots, choices)."""
        with user_errors():
            lib = _library(dirs)
            families = lib.families()
            if family is not None and family not in families:
                from cardtune.curate.errors import did_you_mean

                raise fail(f"unknown family {family!r}{did_you_mean(family, families)}")
            table = Table(show_lines=False)
            table.add_column("id", no_wrap=True)
            for col in ("inputs", "shots", "choices", "task"):
                table.add_column(col)
            shown = [t for t in lib if family is None or t.family == family]
            for t in shown:
                kind = "original" if t.spec.metadata.original_task is not False else "inversion"
                choices = "yes" if t.spec.answer_choices is not None else ""
                table.add_row(Text(t.id), Text(", ".join(t.inputs)), t.shots, choices, kind)
            console.print(table)
            console.print(f"{len(shown)} template(s) in {len({t.family for t in shown})} family(ies)")

    @sub.command()
    def show(template_id: Annotated[str, typer.Argument(help="Template id.")], dirs: DirOption = None) -> None:
        """Show a template's definition and its rendering of its file's first example row."""
        import yaml
        from rich.syntax import Syntax

        with user_errors():
            t = _library(dirs).get(template_id)
            spec = t.spec.model_dump(mode="json", exclude_defaults=True)
            console.print(Text(f"{t.file}:{t.line}", style="dim"))
            console.print(Syntax(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), "yaml", word_wrap=True))
            if t.examples:
                console.print(_preview(t, t.examples[0], 0, f"{t.id} · example row 0"))

    @sub.command()
    def render(
        template_id: Annotated[str, typer.Argument(help="Template id.")],
        source: Annotated[Path, typer.Option("--source", "-s", help="Data file (JSONL, JSON, CSV, Parquet).")],
        n: Annotated[int, typer.Option("--n", "-n", min=1, help="Rows to preview.")] = 3,
        seed: Annotated[
            int, typer.Option("--seed", help="Seed for row choice and option styles (a card's mixture.seed).")
        ] = 0,
        task: Annotated[
            str, typer.Option("--task", help="Task name: with the card's seed, styles match what `build` renders.")
        ] = "preview",
        column: Annotated[
            list[str] | None, typer.Option("--column", "-c", help="Rename INPUT=SOURCE_COLUMN (repeatable).")
        ] = None,
        dirs: DirOption = None,
    ) -> None:
        """Render a few rows of a data file through a template, coloring where each source field went."""
        with user_errors():
            t = _library(dirs).get(template_id)
            rows = _read_rows(source, column or [], task)
            from cardtune.curate.templating.jinja_env import stable_hash
            from cardtune.curate.templating.plan import row_hash
            from cardtune.curate.templating.render import RenderError

            missing = [name for name in t.inputs if name not in rows.columns]
            if missing:
                from cardtune.curate.errors import did_you_mean

                hint = did_you_mean(missing[0], rows.columns)
                raise fail(
                    f"{source}: no column {missing[0]!r} for template {t.id!r}{hint} (columns: "
                    f"{', '.join(rows.columns)}); map one with --column {missing[0]}=<column>"
                )
            picked = sorted(rows.iter_rows(named=True), key=lambda r: stable_hash(seed, r["source_ref"]))[:n]
            for row in picked:
                try:
                    h = row_hash(seed, task, row["source_ref"], t.id)  # the row hash render_task uses
                    console.print(_preview(t, row, h, f"{row['source_ref']} · {t.id}"))
                except RenderError as exc:
                    raise fail(str(exc.issue(task, row["source_ref"]))) from None

    @sub.command()
    def lint(
        paths: Annotated[list[Path] | None, typer.Argument(help="Files/directories (default: the library).")] = None,
    ) -> None:
        """Lint templates: parse, inputs == variables, example rows render, whitespace, answer choices."""
        from cardtune.curate.templating.lint import lint_paths

        with user_errors():
            report = lint_paths(paths or [])
        for issue in report.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(str(issue))}", highlight=False)
        if report.errors:
            print_issues(UserInputError(report.errors))
        verdict = "[green]ok[/]" if report.ok else "[bold red]failed[/]"
        console.print(
            f"{verdict}: {len(report.templates)} template(s) in {report.files} file(s), "
            f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        )
        if not report.ok:
            raise typer.Exit(1)

    @sub.command("import")
    def import_(
        path: Annotated[Path, typer.Argument(help="A promptsource templates.yaml.")],
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write cardtune's format here.")] = None,
    ) -> None:
        """Convert a promptsource templates.yaml; report per template what could not be converted."""
        from cardtune.curate.templating.promptsource import import_promptsource

        with user_errors():
            conv = import_promptsource(path)
        for line in conv.report():
            console.print(line, markup=False)
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(conv.yaml_text, encoding="utf-8")
            console.print(f"wrote {output}", markup=False)


def _read_rows(source: Path, renames: list[str], task_name: str = "preview") -> Any:
    """Read a data file as the build would (same reader, renames, ``source_ref``)."""
    from cardtune.curate.card.schema import Card
    from cardtune.curate.inputs import resolve_inputs
    from cardtune.curate.sources.read import load_source

    columns: dict[str, str] = {}
    for item in renames:
        target, sep, col = item.partition("=")
        if not sep or not target or not col:
            raise fail(f"--column expects INPUT=SOURCE_COLUMN, got {item!r}")
        columns[target] = col
    task = {"name": task_name, "source": {"path": str(source.resolve())}, "columns": columns}
    card = Card.model_validate({"name": "preview", "tasks": [task]})
    return load_source(resolve_inputs(card).sources[task_name], card.tasks[0])
