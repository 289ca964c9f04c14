"""``consentry account`` (create and inspect accounts) and ``consentry platform`` (export, seed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from consentry.cli_support import cli_errors, console, open_database

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(help="Create, show, deactivate and delete accounts.", no_args_is_help=True)


def _print(account: object) -> None:
    from consentry.social.schemas import AccountOut

    console.print_json(AccountOut.model_validate(account).model_dump_json())


@app.command("create")
@cli_errors
def create(
    handle: str,
    country: Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2 country code.")] = None,
    birth_year: Annotated[int | None, typer.Option(help="Year of birth (unknown counts as a minor).")] = None,
    protected: Annotated[bool, typer.Option(help="Posts visible to followers only.")] = False,
) -> None:
    """Create an account."""
    from consentry.social import service

    with open_database().write() as session:
        account = service.create_account(
            session, handle=handle, country=country, birth_year=birth_year, protected=protected
        )
        _print(account)


@app.command("show")
@cli_errors
def show(account_id: int) -> None:
    """Show an account."""
    from consentry.social import service

    with open_database().read() as session:
        _print(service.get_account(session, account_id))


@app.command("deactivate")
@cli_errors
def deactivate(account_id: int) -> None:
    """Deactivate an account."""
    from consentry.social import service

    with open_database().write() as session:
        _print(service.deactivate_account(session, account_id=account_id))


@app.command("delete")
@cli_errors
def delete(account_id: int) -> None:
    """Delete an account; its ledger events become anonymous."""
    from consentry.social import service

    with open_database().write() as session:
        _print(service.delete_account(session, account_id=account_id))


platform_app = typer.Typer(
    help="The reference platform: export it in the data contract, or seed it from a lake.",
    no_args_is_help=True,
)


def _rows_table(title: str, rows: dict[str, int]) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("folder", style="cyan")
    table.add_column("rows", justify="right")
    for folder, count in rows.items():
        table.add_row(folder + "/", f"{count:,}")
    return table


@platform_app.command("export")
@cli_errors
def export(
    directory: Annotated[Path, typer.Argument(help="New (or empty) folder to write the lake to.")],
    default_country: Annotated[
        str | None,
        typer.Option(help="ISO 3166-1 code written for accounts without a country (the contract needs one)."),
    ] = None,
) -> None:
    """Write the platform's database in the data contract (Parquet); nothing appears unless complete."""
    from consentry.social.seed import export_lake

    report = export_lake(open_database(), directory, default_country=default_country)
    console.print(_rows_table(f"Exported to {report.path}", report.rows))
    console.print(f"done in {report.seconds:.1f} s; check it with 'consentry lake check {report.path}'")


@platform_app.command("seed")
@cli_errors
def seed(
    directory: Annotated[Path, typer.Argument(help="A lake in the data contract (consentry demo generate).")],
) -> None:
    """Load a lake into the platform's database (accounts, posts, chats, follows, blocks, consent)."""
    from consentry.social.seed import seed_from_lake

    report = seed_from_lake(open_database(), directory)
    console.print(_rows_table(f"Seeded from {directory}", report.rows))
    shifted = f"; ids shifted by {report.account_offset:,} (accounts)" if report.account_offset else ""
    console.print(f"done in {report.seconds:.1f} s{shifted}")
