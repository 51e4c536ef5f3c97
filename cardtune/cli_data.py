"""Dataset commands: ``build``, ``ls``, ``inspect``, ``diff`` and ``report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cardtune._console import console, err_console, user_errors


def build(
    card: Annotated[Path, typer.Argument(help="The card file.", show_default=False)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the mixture plan (rows, rates, targets, repeats); write nothing.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if this version already exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")] = False,
) -> None:
    """Build the dataset version a card describes (content-addressed; a cache hit when nothing changed)."""
    from cardtune.curate.card.load import load_card
    from cardtune.curate.pipeline import build as build_version
    from cardtune.curate.reporting.tables import counts_table, plan_table

    with user_errors():
        # build() resolves templates and checks source columns itself (the same checks as `cardtune validate`)
        result = build_version(load_card(card), force=force, dry_run=dry_run, progress=not quiet)
    manifest = result.manifest
    if result.cached:
        console.print(f"[green]cached[/] {result.version_dir} (same card, templates and sources; --force rebuilds)")
        return
    if not quiet:
        unit = manifest.get("tokens", {}).get("unit", "words")
        console.print(plan_table(manifest["mixture"]["plan"], manifest["mixture"]["strategy"], unit))
        console.print(counts_table(manifest))
    if result.dry_run:
        console.print(f"[yellow]dry run[/]: would write {result.version_dir} (nothing written)")
        return
    splits = manifest["counts"]["splits"]
    sizes = ", ".join(f"{name} {sum(splits[name].values()):,}" for name in ("train", "eval", "heldout"))
    console.print(f"[green]built[/] {result.version_dir}  ({sizes})")
    if result.removed:
        console.print(
            f"[yellow]replaced[/] the previous copy; removed {', '.join(result.removed)} (not written by a build: "
            "run `cardtune report` again)",
            markup=True,
        )


def ls(
    root: Annotated[Path, typer.Argument(help="Output root holding <name>/<id>/ versions.")] = Path("datasets"),
) -> None:
    """List dataset versions per card."""
    from cardtune.curate.store.versions import list_versions

    versions = list_versions(root)
    if not versions:
        console.print(f"no versions under {root}/ (build one with `cardtune build CARD`)")
        return
    table = Table(title=f"versions under {root}/", title_justify="left")
    for col in ("card", "version id", "label", "mode", "train", "eval", "heldout", "built"):
        table.add_column(col, justify="right" if col in ("train", "eval", "heldout") else "left")
    for name, vdir, manifest in versions:
        splits: dict[str, dict[str, int]] = manifest.get("counts", {}).get("splits", {})
        table.add_row(
            name,
            vdir.name,
            str(manifest.get("card_version", "")),
            str(manifest.get("mode", "")),
            *(f"{sum(splits.get(s, {}).values()):,}" for s in ("train", "eval", "heldout")),
            str(manifest.get("created", "")),
        )
    console.print(table)


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
    console.print(f"[bold]{ma['name']}[/] {ma['version_id']} → {mb['name']} {mb['version_id']}")
    if not changes:
        console.print("[green]identical inputs and counts[/]")
        return
    table = Table(show_lines=False)
    for col in ("section", "field", "old", "new"):
        table.add_column(col, overflow="fold")
    for c in changes:
        table.add_row(c.section, c.path, _short(c.old), _short(c.new))
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
    console.print(f"wrote {path}")
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
