"""``consentry account export``: write an account's data export for an operator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from consentry.cli_support import cli_errors, console, fail, open_database


@cli_errors
def export(
    account_id: Annotated[int, typer.Argument(help="The account to export.")],
    out: Annotated[Path, typer.Option("--out", help="The ZIP file to write (must not exist).")],
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
    linked: Annotated[
        bool, typer.Option("--linked", help="Add every linked account's files, under linked/<id>/.")
    ] = False,
) -> None:
    """Write ACCOUNT_ID's data export (the same ZIP as GET /v1/me/export) to OUT, atomically."""
    from consentry.config import get_settings
    from consentry.consent.service import ConsentContext
    from consentry.exports.service import write_export

    if out.exists() and not force:
        raise fail(f"{out} exists; choose another file or pass --force", 2)
    summary = write_export(
        open_database(),
        account_id=account_id,
        ctx=ConsentContext.from_settings(get_settings()),
        out=out,
        scope="linked" if linked else "account",
    )
    console.print(
        f"wrote {summary.path} ({summary.bytes:,} bytes, {summary.records:,} records, "
        f"sha256 {summary.sha256})",
        highlight=False,
    )
