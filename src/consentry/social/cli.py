"""``consentry account``: create and inspect accounts."""

from __future__ import annotations

from typing import Annotated

import typer

from consentry.cli_support import cli_errors, console, open_database

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
