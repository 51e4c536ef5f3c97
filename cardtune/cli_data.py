"""Dataset commands: ``build``, ``ls``, ``inspect``, ``diff`` and ``report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cardtune._console import console, err_console, esc, user_errors


def build(
    card: Annotated[Path, typer.Argument(help="The card file.", show_default=False)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the mixture plan (rows, rates, targets, repeats); write nothing.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if this version already exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Local worker processes (default: all cores for sources of 64 MiB or more, else one). "
            "Never changes the output.",
            show_default=False,
        ),
    ] = None,
    partition_rows: Annotated[
        int | None,
        typer.Option(
            "--partition-rows",
            min=1,
            help="Rows per partition (default 50,000): bounds each worker's memory. Never changes the output.",
            show_default=False,
        ),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="Where the passes run: `local` or `ray` (needs cardtune[ray]).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address", help="Ray cluster address (`--executor ray`); default: start a local one.", show_default=False
        ),
    ] = None,
) -> None:
    """Build the dataset version a card describes (content-addressed; a cache hit when nothing changed).

    Every executor and worker count gives the same version id and the same bytes.
    """
    from cardtune.curate.card.load import load_card
    from cardtune.curate.execute.executors import make_executor
    from cardtune.curate.pipeline import build as build_version
    from cardtune.curate.reporting.tables import counts_table, plan_table

    with user_errors():
        loaded = load_card(card)
        runner = make_executor(executor, workers, address) if executor != "local" or address is not None else None
        try:
            # build() resolves templates and checks source columns itself (the same checks as `cardtune validate`)
            result = build_version(
                loaded,
                force=force,
                dry_run=dry_run,
                progress=not quiet,
                workers=workers,
                executor=runner,
                partition_rows=partition_rows,
            )
        finally:
            if runner is not None:
                runner.close()
    manifest = result.manifest
    stored = f"{result.url} (local copy {result.version_dir})" if result.url else str(result.version_dir)
    if result.cached:
        how = {"fetched": "fetched from the store", "uploaded": "uploaded to the store"}.get(result.transfer or "")
        console.print(
            f"[green]cached[/] {esc(stored)} (same card, templates and sources; {esc(how + '; ' if how else '')}"
            "--force rebuilds)"
        )
        return
    if not quiet:
        console.print(plan_table(manifest.mixture.plan, manifest.mixture.strategy, manifest.tokens.unit))
        console.print(counts_table(manifest))
    if result.dry_run:
        console.print(f"[yellow]dry run[/]: would write {esc(result.version_dir)} (nothing written)")
        return
    sizes = ", ".join(f"{name} {sum(rows.values()):,}" for name, rows in manifest.counts.splits.items())
    console.print(f"[green]built[/] {esc(stored)}  ({esc(sizes)})")
    if result.removed:
        console.print(
            f"[yellow]replaced[/] the previous copy; removed {esc(', '.join(result.removed))} (not written by a build: "
            "run `cardtune report` again)",
            markup=True,
        )


def ls(
    root: Annotated[Path, typer.Argument(help="Output root holding <name>/<id>/ versions.")] = Path("datasets"),
) -> None:
    """List dataset versions per card (a version this cardtune cannot read is marked, with what to do)."""
    from cardtune.curate.store.versions import scan_versions

    versions = scan_versions(root)
    if not versions:
        console.print(f"no versions under {esc(root)}/ (build one with `cardtune build CARD`)")
        return
    table = Table(title=Text(f"versions under {root}/"), title_justify="left")
    for col in ("card", "version id", "label", "mode", "train", "eval", "heldout", "built"):
        table.add_column(col, justify="right" if col in ("train", "eval", "heldout") else "left")
    unreadable = []
    for v in versions:
        if v.manifest is None:
            unreadable.append(v)
            table.add_row(
                Text(v.name), Text(v.dir.name), Text("unreadable (see below)", style="yellow"), "", "", "", "", ""
            )
            continue
        m = v.manifest
        table.add_row(
            Text(v.name),
            Text(v.dir.name),
            Text(str(m.card_version)),
            m.mode,
            *(f"{sum(rows.values()):,}" for _, rows in m.counts.splits.items()),
            m.created,
        )
    console.print(table)
    for v in unreadable:
        err_console.print(f"[yellow]skipped[/] {escape(str(v.dir))}: {escape(v.problem)}")


def inspect(
    version: Annotated[str, typer.Argument(help="Version directory, `<name>/<id>` or an id prefix.")],
    root: Annotated[Path, typer.Option("--root", help="Output root to search ids in.")] = Path("datasets"),
    samples: Annotated[int, typer.Option("--samples", help="Sample rows per task.")] = 2,
    rejects: Annotated[int, typer.Option("--rejects", help="Rejected rows to list with their evidence.")] = 10,
) -> None:
    """Tables for a version: requested vs realized mix, the filter funnel, lengths, rejects and samples."""
    from cardtune.curate.reporting.tables import inspect_renderable
    from cardtune.curate.store.versions import resolve_version

    with user_errors():
        vdir = resolve_version(version, root)
        console.print(inspect_renderable(vdir, n_samples=samples, n_rejects=rejects))


def diff(
    a: Annotated[str, typer.Argument(help="Old version (directory or id).")],
    b: Annotated[str, typer.Argument(help="New version (directory or id).")],
    root: Annotated[Path, typer.Option("--root", help="Output root to search ids in.")] = Path("datasets"),
) -> None:
    """What changed between two versions: card fields, templates, sources, and the counts they produced."""
    from cardtune.curate.store.diff import diff_manifests
    from cardtune.curate.store.versions import read_manifest, resolve_version

    with user_errors():
        ma = read_manifest(resolve_version(a, root))
        mb = read_manifest(resolve_version(b, root))
    changes = diff_manifests(ma, mb)
    console.print(f"[bold]{escape(ma.name)}[/] {ma.version_id} → {escape(mb.name)} {mb.version_id}")
    if not changes:
        console.print("[green]identical inputs and counts[/]")
        return
    table = Table(show_lines=False)
    for col in ("section", "field", "old", "new"):
        table.add_column(col, overflow="fold")
    for c in changes:
        table.add_row(c.section, Text(c.path), Text(_short(c.old)), Text(_short(c.new)))
    console.print(table)
    inputs = [c for c in changes if c.section != "counts"]
    err_console.print(f"{len(inputs)} input change(s), {len(changes) - len(inputs)} count change(s)")


def report(
    version: Annotated[str, typer.Argument(help="Version directory, `<name>/<id>` or an id prefix.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write (default: in the version).")
    ] = None,
    root: Annotated[Path, typer.Option("--root", help="Output root to search ids in.")] = Path("datasets"),
    open_: Annotated[bool, typer.Option("--open", help="Open the report in the default browser.")] = False,
) -> None:
    """Write a self-contained report.html with charts: mixture, lengths, filter funnel, rejects."""
    from cardtune.curate.reporting.html import write_report
    from cardtune.curate.store.versions import resolve_version

    with user_errors():
        path = write_report(resolve_version(version, root), output)
    console.print(f"wrote {esc(path)}")
    if open_:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


def _short(value: Any, n: int = 60) -> str:
    if value is None:
        return "—"
    text = str(value)
    return text if len(text) <= n else text[: n - 1] + "…"


def register(app: typer.Typer) -> None:
    """Attach the dataset commands to the root app."""
    for fn in (build, ls, inspect, diff, report):
        app.command()(fn)
