"""Command line: ``consentry lake check DIR`` and ``consentry demo generate DIR``.

Heavy libraries (pyarrow, duckdb, numpy) are imported inside the commands so that ``consentry --help``
stays fast.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from consentry.cli_support import CliConsole
from consentry.errors import ConsentryError

if TYPE_CHECKING:
    from consentry.lake.check import LakeReport
    from consentry.lake.source import LakeSpec

app = typer.Typer(help="Check a lake against the data contract.", no_args_is_help=True)

# The options naming a lake, shared by every command that reads one (``lake check``, ``dataset build``).
LakeFormatOption = Annotated[
    str, typer.Option("--lake-format", help="parquet (folders, default), iceberg or delta.")
]
CatalogOption = Annotated[
    str | None,
    typer.Option(
        "--catalog", help="Iceberg: SQL catalog URI (sqlite:///catalog.db, postgresql+psycopg://...)."
    ),
]
CatalogNameOption = Annotated[
    str | None, typer.Option("--catalog-name", help="Iceberg: the catalog's name in that database (default).")
]
NamespaceOption = Annotated[
    str | None, typer.Option("--namespace", help="Iceberg: the namespace holding accounts, posts, ...")
]
SnapshotOption = Annotated[
    list[str] | None,
    typer.Option(
        "--snapshot",
        help="REF or TABLE=REF: Iceberg snapshot id, tag or branch; Delta version. Repeatable.",
    ),
]
SnapshotAtOption = Annotated[
    str | None,
    typer.Option("--snapshot-at", help="Iceberg/Delta: each table as it was at this time (ISO 8601)."),
]


def spec_from_options(
    *,
    lake: str | Path | None,
    lake_format: str,
    catalog: str | None,
    catalog_name: str | None,
    namespace: str | None,
    snapshot: list[str] | None,
    snapshot_at: str | None,
) -> LakeSpec:
    """The lake named by the shared options (``InvalidInput`` naming the option at fault)."""
    from consentry.cli_support import parse_time
    from consentry.lake.source import lake_spec

    at: datetime | None = parse_time(snapshot_at, field="snapshot_at") if snapshot_at else None
    return lake_spec(
        lake=lake,
        format=lake_format,
        catalog=catalog,
        catalog_name=catalog_name,
        namespace=namespace,
        snapshot=snapshot or [],
        snapshot_at=at,
    )


EXIT_VIOLATIONS = 1
EXIT_ERROR = 2


@app.callback()
def lake() -> None:
    """The data contract: Parquet folders a platform exports (see docs/data-contract.md)."""


def _fail(console: Console, error: ConsentryError) -> typer.Exit:
    console.print(f"[bold red]Error:[/bold red] {error.detail}", highlight=False)
    return typer.Exit(code=EXIT_ERROR)


def _report_table(report: LakeReport) -> Table:
    table = Table(title=f"Contract violations in {report.lake}", title_justify="left")
    for name, style in (("folder", "cyan"), ("column", "cyan"), ("problem", "bold"), ("count", None)):
        table.add_column(name, style=style, justify="right" if name == "count" else "left")
    table.add_column("examples", overflow="fold")
    table.add_column("detail", overflow="fold")
    for violation in report.violations:
        table.add_row(
            violation.folder,
            violation.column or "",
            violation.kind.replace("_", " "),
            f"{violation.count:,}",
            ", ".join(violation.examples),
            violation.message,
        )
    return table


@app.command("check")
def check(
    directory: Annotated[
        Path | None,
        typer.Argument(help="The lake folder (accounts/, posts/, ...), or the root of its Delta tables."),
    ] = None,
    lake_format: LakeFormatOption = "parquet",
    catalog: CatalogOption = None,
    catalog_name: CatalogNameOption = None,
    namespace: NamespaceOption = None,
    snapshot: SnapshotOption = None,
    snapshot_at: SnapshotAtOption = None,
) -> None:
    """Report every violation of the data contract; exit 1 if there is any, 2 if the lake is missing."""
    from consentry.lake.check import check_lake
    from consentry.lake.source import open_lake

    console = CliConsole()
    try:
        lake = open_lake(
            spec_from_options(
                lake=directory,
                lake_format=lake_format,
                catalog=catalog,
                catalog_name=catalog_name,
                namespace=namespace,
                snapshot=snapshot,
                snapshot_at=snapshot_at,
            )
        )
        report = check_lake(lake)
    except ConsentryError as error:
        raise _fail(console, error) from None
    rows = ", ".join(f"{folder} {count:,}" for folder, count in report.rows.items())
    if report.ok:
        console.print(
            f"[green]✓[/green] {report.lake} satisfies the data contract ({rows} rows).", highlight=False
        )
        if lake.format != "parquet":
            read = ", ".join(
                f"{name} {', '.join(f'{k} {v}' for k, v in table.version.items() if k != 'committed_at')}"
                for name, table in lake.tables.items()
            )
            console.print(f"snapshots read: {read}", highlight=False)
        return
    console.print(_report_table(report))
    console.print(
        f"[red]✗[/red] {len(report.violations):,} violation(s) of the data contract in {report.lake}.",
        highlight=False,
    )
    raise typer.Exit(code=EXIT_VIOLATIONS)


def generate(
    directory: Annotated[Path, typer.Argument(help="New (or empty) folder to write the lake to.")],
    accounts: Annotated[int, typer.Option("--accounts", help="Number of accounts.")] = 10_000,
    posts: Annotated[int, typer.Option("--posts", help="Number of posts.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same lake.")] = 0,
) -> None:
    """Generate a realistic synthetic lake in the data contract (deterministic for a seed)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from consentry.lake.generate import generate_lake

    console = CliConsole()
    tasks: dict[str, TaskID] = {}
    bar = Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )

    def progress(folder: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
        if folder not in tasks:
            tasks[folder] = bar.add_task(folder, total=max(total, 1))
        bar.update(tasks[folder], completed=done if total else 1, total=max(total, 1))

    try:
        stats = generate_lake(directory, accounts=accounts, posts=posts, seed=seed, progress=progress)
    except ConsentryError as error:
        raise _fail(console, error) from None
    finally:
        if tasks:
            bar.stop()

    table = Table(title=f"Lake written to {stats.path}", title_justify="left")
    table.add_column("folder", style="cyan")
    table.add_column("rows", justify="right")
    for folder, count in stats.rows.items():
        table.add_row(folder + "/", f"{count:,}")
    console.print(table)
    shape = stats.shape
    console.print(
        f"{stats.files} files, {stats.bytes / 1e6:,.1f} MB in {stats.seconds:.1f} s. "
        f"EEA/UK/CH {shape.get('regulated', 0):.1%}, protected {shape.get('protected', 0):.1%}, "
        f"minors {shape.get('minors', 0):.1%}, inactive {shape.get('inactive', 0):.1%}, "
        f"deleted posts {shape.get('deleted_posts', 0):.1%}, "
        f"top 10% of accounts write {shape.get('top_decile_posts', 0):.0%} of posts.",
        highlight=False,
    )
