"""The reference pages name every route and every command, and nothing that is gone.

docs/api.md ends with a route index (one row per operation of the OpenAPI description, with the page
that describes it); docs/cli.md lists every ``consentry`` command. A new route or command without a line
there fails here, and so does a line for one that no longer exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from consentry.api import create_app
from consentry.cli import app as cli_app
from consentry.config import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"
ROUTE_ROW = re.compile(r"^\| `([A-Z]+) (/[^`]*)` \| .* \| \[[^\]]+\]\(([^)#]+)(#[^)]*)?\) \|$", re.MULTILINE)
COMMAND_ROW = re.compile(r"^\| `consentry ([a-z][a-z0-9 -]*)` \| .+ \|$", re.MULTILINE)


def route_index() -> list[tuple[str, str, str]]:
    """(method, path, page) of every row of the route index in docs/api.md."""
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    _, _, index = text.partition("\n## Route index\n")
    assert index, "docs/api.md has no '## Route index' section"
    return [(m.group(1), m.group(2), m.group(3)) for m in ROUTE_ROW.finditer(index)]


def test_every_route_is_in_the_route_index(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path / "home"), migrate=True)
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    served = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    rows = route_index()
    listed = [(method, path) for method, path, _ in rows]
    assert len(listed) == len(set(listed)), "a route is listed twice in docs/api.md"
    missing = sorted(served - set(listed))
    gone = sorted(set(listed) - served)
    assert not missing, f"routes missing from the route index of docs/api.md: {missing}"
    assert not gone, f"routes in docs/api.md that the service no longer has: {gone}"
    for method, path, page in rows:
        assert (DOCS / page).is_file(), f"{method} {path} points to a missing page {page}"


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Every visible command of the CLI as ``"group sub"`` (a group that runs on its own counts too)."""
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        yield " ".join(path)
        return
    if path and getattr(command, "invoke_without_command", False):
        yield " ".join(path)
    for name, sub in sorted(subcommands.items()):
        if not getattr(sub, "hidden", False):
            yield from commands(sub, (*path, name))


def test_every_command_is_in_the_cli_reference() -> None:
    available = set(commands(typer.main.get_command(cli_app)))
    assert {"serve", "dataset build", "partner key revoke", "retention hold add"} <= available
    listed = [m.group(1).strip() for m in COMMAND_ROW.finditer((DOCS / "cli.md").read_text(encoding="utf-8"))]
    assert len(listed) == len(set(listed)), "a command is listed twice in docs/cli.md"
    missing = sorted(available - set(listed))
    gone = sorted(set(listed) - available)
    assert not missing, f"commands missing from docs/cli.md: {missing}"
    assert not gone, f"commands in docs/cli.md that the CLI no longer has: {gone}"


def test_every_row_of_the_indexes_is_read() -> None:
    """A row the patterns cannot read would hide a missing route or command, so every row must parse."""
    rows = route_index()
    assert ("GET", "/v1/me/notifications", "api.md") in rows
    assert ("POST", "/v1/admin/organisations/{organisation}/keys", "metering.md") in rows
    index = (DOCS / "api.md").read_text(encoding="utf-8").partition("\n## Route index\n")[2]
    assert len(rows) == sum(1 for line in index.splitlines() if line.startswith("| `"))
    cli = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert len(COMMAND_ROW.findall(cli)) == sum(1 for line in cli.splitlines() if line.startswith("| `"))
