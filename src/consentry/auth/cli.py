"""``consentry token``: issue bearer tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from consentry.cli_support import cli_errors, console, open_database

app = typer.Typer(help="Issue bearer tokens for operators and account holders.", no_args_is_help=True)


@app.command("create")
@cli_errors
def create(
    admin: Annotated[bool, typer.Option("--admin", help="An operator token.")] = False,
    account: Annotated[int | None, typer.Option("--account", help="An account holder's token.")] = None,
    client: Annotated[
        str | None, typer.Option(help="Client kind recorded with changes: web, ios, android, api.")
    ] = None,
    label: Annotated[str, typer.Option(help="A note to recognise the token by.")] = "",
) -> None:
    """Create a token and print it (shown once; only its hash is stored)."""
    from consentry.auth.service import create_token

    if admin == (account is not None):
        raise typer.BadParameter("give exactly one of --admin or --account ID")
    database = open_database()
    with database.write() as session:
        token = create_token(
            session, kind="admin" if admin else "account", account_id=account, client=client, label=label
        )
    console.print(token, highlight=False, soft_wrap=True)
