"""Helpers shared by every CLI command group: the database, the console, error handling."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from consentry.config import Settings, get_settings
from consentry.db import Database
from consentry.errors import ConsentryError

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def open_database(settings: Settings | None = None) -> Database:
    """The configured database, migrated to the newest schema."""
    from consentry.migrate import upgrade

    settings = settings or get_settings()
    database = Database(settings.resolved_database_url)
    upgrade(database)
    return database


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn Consentry errors into a message on stderr and exit code 1 (2 for bad input)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConsentryError as error:
            where = f" ({error.field})" if error.field else ""
            code = 2 if error.status in (413, 422) else 1
            raise fail(f"{error.detail}{where}", code) from error

    return wrapper
