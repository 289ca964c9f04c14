"""``consentry account link-import`` and ``consentry account links``: the operator's side of links."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer

from consentry.cli_support import cli_errors, console, fail, open_database
from consentry.errors import FieldError, InvalidInput

COLUMNS = ("account_id", "linked_account_id")


def read_pairs(path: Path) -> list[tuple[int, int]]:
    """The pairs of a CSV file with the header ``account_id,linked_account_id``; every bad line is
    named (field ``line N``)."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read {path}: {error}", field="file") from error
    reader = csv.DictReader(text.splitlines())
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise InvalidInput(f"the header must be {','.join(COLUMNS)}", field="line 1")
    pairs: list[tuple[int, int]] = []
    problems: list[FieldError] = []
    for number, row in enumerate(reader, start=2):
        try:
            first, second = (int(str(row[name]).strip()) for name in COLUMNS)
        except (TypeError, ValueError):
            problems.append(FieldError(f"line {number}", "needs two account ids"))
            continue
        if not all(0 < value < 2**63 for value in (first, second)):
            problems.append(FieldError(f"line {number}", "account ids are positive 64-bit integers"))
            continue
        pairs.append((first, second))
    if problems:
        raise InvalidInput.of(problems)
    return pairs


@cli_errors
def import_links(
    file: Annotated[Path, typer.Argument(help="CSV with the header account_id,linked_account_id.")],
) -> None:
    """Link pairs of accounts your identity system knows to belong to one person (confirmed at once;
    all or nothing: any bad pair, and nothing is stored)."""
    from consentry.links import service

    try:
        pairs = read_pairs(file)
        with open_database().write() as session:
            result = service.import_links(session, pairs, source="import")
    except InvalidInput as error:  # every problem, by line of the file; nothing was stored
        for problem in error.errors or (FieldError(error.field or "file", error.detail),):
            where, _, column = problem.field.partition(".")
            if where == "links":  # links.N.column: pair N is on line N + 2
                index, _, column = column.partition(".")
                where = f"line {int(index) + 2}"
            console.print(f"{where}{' ' + column if column else ''}: {problem.message}", highlight=False)
        raise fail(f"{len(error.errors) or 1} problem(s); nothing was imported", 2) from error
    console.print(f"linked {result.created} new pairs, confirmed {result.confirmed} pending ones")


@cli_errors
def show_links(account_id: int) -> None:
    """Show an account's links (confirmed and pending)."""
    from consentry.links import service
    from consentry.links.schemas import LinkOut
    from consentry.social.service import get_account

    with open_database().read() as session:
        get_account(session, account_id)
        views = service.links_of(session, account_id=account_id)
    console.print_json("[" + ",".join(LinkOut.model_validate(v).model_dump_json() for v in views) + "]")
