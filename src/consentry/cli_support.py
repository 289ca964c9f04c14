"""Helpers shared by every CLI command group: the database, the console, error handling."""

from __future__ import annotations

import functools
import shutil
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console, ConsoleDimensions

from consentry.errors import ConsentryError, InvalidInput

if TYPE_CHECKING:  # imported when a command runs: `consentry --help` needs neither pydantic nor SQLAlchemy
    from consentry.config import Settings
    from consentry.db import Database

UNBOUNDED = 1 << 16
"""Width of a console that writes to a file or a pipe: wide enough that no line wraps, no cell is cut."""


class CliConsole(Console):
    """Rich's console, fitted to the terminal only when it writes to one.

    Rich wraps text and narrows tables to 80 columns when its output is not a terminal; output that goes
    to a file or a pipe is read by programs and copied by people, so there it is written whole.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fixed_width = kwargs.get("width") is not None

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size; an unbounded width when the output is not a terminal (``COLUMNS``, which
        Rich also reads, describes a terminal)."""
        dimensions = super().size
        if not self._fixed_width and not self.is_terminal:
            return ConsoleDimensions(UNBOUNDED, dimensions.height)
        return dimensions

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size
        self._fixed_width = True


console = CliConsole()
err_console = CliConsole(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def get_settings() -> Settings:
    """The configuration (``consentry.config.get_settings``), imported when a command first needs it."""
    from consentry.config import get_settings as configured

    return configured()


def open_database(settings: Settings | None = None) -> Database:
    """The configured database, migrated to the newest schema."""
    from consentry.db import Database
    from consentry.migrate import upgrade

    settings = settings or get_settings()
    database = Database(settings.resolved_database_url)
    upgrade(database)
    return database


def parse_time(text: str, *, field: str) -> datetime:
    """An ISO 8601 time or date (UTC when it has no offset); ``InvalidInput`` naming ``field`` otherwise."""
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise InvalidInput(f"{text!r} is not an ISO 8601 time", field=field) from error
    return at if at.tzinfo else at.replace(tzinfo=UTC)


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


def runnable_command() -> str:
    """How to run ``consentry`` from the shell it was started in: the bare name when that very script is
    on ``PATH`` (an activated environment), else its path, relative to the working directory when inside
    it (``.venv/bin/consentry``)."""
    invoked = Path(sys.argv[0]) if sys.argv and Path(sys.argv[0]).name == "consentry" else None
    script = (invoked or Path(sys.executable).parent / "consentry").absolute()
    on_path = shutil.which("consentry")
    if on_path is not None and Path(on_path).absolute() == script:
        return "consentry"
    try:
        return str(script.relative_to(Path.cwd().absolute()))
    except ValueError:
        return str(script)


def shell_path(path: Path) -> str:
    """``path`` as a command line names it: relative to the working directory when inside it."""
    try:
        return str(path.absolute().relative_to(Path.cwd().absolute()))
    except ValueError:
        return str(path.absolute())


def claim_listen_address(host: str, port: int, *, other_port_hint: str) -> str:
    """Check that a server can bind ``host:port`` (before anything is seeded or printed), then make it
    the operator URL of this process and of the server processes it starts, unless
    ``CONSENTRY_OPERATOR_URL`` is configured. Returns the base URL clients on this machine use."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            raise fail(
                f"cannot listen on {host}:{port}: {error.strerror or error}. Another program (perhaps "
                f"another Consentry) uses the port; choose another: {other_port_hint.format(port=port + 1)}"
            ) from error
    from consentry.config import listen_on, listen_url

    url = listen_url(host, port)
    listen_on(url)
    return url
