"""Command line: ``consentry lake check DIR`` and ``consentry demo generate DIR``.

Heavy libraries (pyarrow, duckdb, numpy) are imported inside the commands so that ``consentry --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from consentry.errors import ConsentryError

if TYPE_CHECKING:
    from consentry.lake.check import LakeReport

app = typer.Typer(help="Check a Parquet lake against the data contract.", no_args_is_help=True)

EXIT_VIOLATIONS = 1
EXIT_ERROR = 2


@app.callback()
def lake() -> None:
    """The data contract: Parquet folders a platform exports (see docs/data-contract.md)."""


def _fail(console: Console, error: ConsentryError) -> typer.Exit:
    console.print(f"[bold red]Error:[/bold red] {error.detail}", highlight=False)
    return typer.Exit(code=EXIT_ERROR)


def _report_table(report: LakeReport) -> Table:
    table = Table(title=f"Contract violations in {report.path}", title_justify="left")
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
    directory: Annotated[Path, typer.Argument(help="The lake: a folder holding accounts/, posts/, ...")],
) -> None:
    """Report every violation of the data contract; exit 1 if there is any, 2 if DIR is missing."""
    from consentry.lake.check import check_lake

    console = Console()
    try:
        report = check_lake(directory)
    except ConsentryError as error:
        raise _fail(console, error) from None
    rows = ", ".join(f"{folder} {count:,}" for folder, count in report.rows.items())
    if report.ok:
        console.print(
            f"[green]✓[/green] {directory} satisfies the data contract ({rows} rows).", highlight=False
        )
        return
    console.print(_report_table(report))
    console.print(
        f"[red]✗[/red] {len(report.violations):,} violation(s) of the data contract in {directory}.",
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

    console = Console()
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
