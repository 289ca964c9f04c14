"""CLI start-up: a command imports only the heavy libraries it uses (each costs a noticeable share of a
second), checked in a fresh interpreter per command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from consentry.db import Database

HEAVY = (
    "duckdb",
    "pyarrow",
    "pandas",
    "numpy",
    "pyspark",
    "fastapi",
    "starlette",
    "uvicorn",
    "cryptography",
    "alembic",
    "sqlalchemy",
    "pydantic_settings",
    "pyroaring",
    "httpx",
    "redis",
    "jinja2",
)
"""Libraries whose import alone costs tens to hundreds of milliseconds. (Pydantic is not listed: Typer
itself uses it to read the options of the command it runs.)"""

PROBE = """
import json, sys
from consentry.cli import app
try:
    app(sys.argv[1:], prog_name="consentry")
except SystemExit as done:
    code = done.code
heavy = [name for name in json.loads(sys.stdin.read()) if name in sys.modules]
print("\\n" + json.dumps({"code": code, "heavy": heavy}))
"""


def imported(home: Path, *args: str, database_url: str | None = None) -> tuple[int, set[str]]:
    """Run ``consentry ARGS`` in a fresh interpreter (on the SQLite database in ``home`` unless
    ``database_url`` names another); its exit code and the heavy libraries it imported."""
    env = {**os.environ, "CONSENTRY_HOME": str(home)}
    env.pop("CONSENTRY_DATABASE_URL", None)
    if database_url is not None:
        env["CONSENTRY_DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=json.dumps(HEAVY),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return int(result["code"] or 0), set(result["heavy"])


@pytest.mark.parametrize(
    "args",
    [("--help",), ("dataset", "--help"), ("dataset", "build", "--help"), ("serve", "--help")],
)
def test_help_imports_no_heavy_library(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, heavy = imported(tmp_path, *args)
    assert code == 0 and heavy == set()


def test_listing_releases_reads_the_database_through_its_driver(tmp_path: Path) -> None:
    code, heavy = imported(tmp_path, "dataset", "list")  # a new database: migrated first, with SQLAlchemy
    assert code == 0 and {"sqlalchemy", "alembic"} <= heavy
    for args in (("dataset", "list"), ("dataset", "list", "--limit", "5")):
        code, heavy = imported(tmp_path, *args)
        assert code == 0
        assert heavy <= {"pydantic_settings"}, heavy
    code, heavy = imported(tmp_path, "dataset", "list", "--recipient", "nobody")
    assert code == 1 and heavy <= {"pydantic_settings"}, heavy


def test_listing_releases_on_postgresql_reads_through_psycopg(
    tmp_path: Path, postgres_database: Database
) -> None:
    code, heavy = imported(tmp_path, "dataset", "list", database_url=postgres_database.url)
    assert code == 0
    assert heavy <= {"pydantic_settings"}, heavy
