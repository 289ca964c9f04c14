"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, and an application on top."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentry.api import create_app
from consentry.auth.service import create_token
from consentry.config import Settings
from consentry.consent.service import ConsentContext
from consentry.db import Database
from consentry.migrate import upgrade
from consentry.models import Base
from consentry.social.service import create_account
from tests.services import POSTGRES_URL, missing_service, skip_summary

# tables whose rows come from the migrations; reset to their seeded state instead of emptied
SEEDED = {"ledger_head", "policy_versions", "alembic_version"}


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path = tmp_path_factory.mktemp("sqlite") / "consentry.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[Database]:
    """A fresh, migrated PostgreSQL database of its own, so parallel runs never share rows."""
    name = f"consentry_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as error:
        admin.dispose()
        missing_service("postgres", POSTGRES_URL, error)
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    database = Database(url)
    try:
        upgrade(database)
        yield database
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def reset(database: Database) -> None:
    """Empty every table and restore the rows the migrations seed."""
    with database.write() as session:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in SEEDED:
                session.execute(table.delete())
        session.execute(sa.text("DELETE FROM policy_versions WHERE version > 1"))
        session.execute(sa.text("DELETE FROM ledger_head WHERE id > 1"))  # back to one partition
        session.execute(
            sa.text("UPDATE ledger_head SET seq = 0, hash = :h, recorded_at = NULL WHERE id = 1"),
            {"h": "0" * 64},
        )


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Database:
    """A migrated, emptied database: every test using it runs on SQLite and on PostgreSQL."""
    database: Database = request.getfixturevalue(f"{request.param}_database")
    reset(database)
    return database


@pytest.fixture
def settings(tmp_path: Path, database: Database) -> Settings:
    """Settings pointing at a temporary data folder and the test database."""
    return Settings(home=tmp_path / "home", database_url=database.url, operator_name="Test operator")


@pytest.fixture
def ctx(settings: Settings) -> ConsentContext:
    """The consent context (catalog, jurisdictions, a fresh signing key) of the test settings."""
    return ConsentContext.from_settings(settings)


@pytest.fixture
def run_jobs(settings: Settings, database: Database) -> Callable[[], int]:
    """Run the queued jobs (builds, exports) as ``consentry worker --once`` does; returns how many ran."""
    from consentry.job_handlers import job_runner

    return lambda: job_runner(database, settings).run_once()


@pytest.fixture
def app(settings: Settings, database: Database) -> FastAPI:
    """The application on the test database."""
    return create_app(settings, database=database, migrate=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """An HTTP client for the application."""
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def admin_token(database: Database) -> str:
    """A fresh admin token."""
    with database.write() as session:
        return create_token(session, kind="admin", label="test")


def make_account(
    database: Database,
    *,
    handle: str = "ada",
    country: str | None = "US",
    birth_year: int | None = 1990,
    created_at: datetime | None = None,
    client: str | None = None,
) -> tuple[int, str]:
    """Create an account and a token for it; returns ``(account_id, token)``."""
    with database.write() as session:
        account = create_account(
            session, handle=handle, country=country, birth_year=birth_year, created_at=created_at
        )
        return account.id, create_token(session, kind="account", account_id=account.id, client=client)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """End the run with what did not run and the one command that makes it run, so a green run that
    skipped the browser or PostgreSQL tests says so where it is seen."""
    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons.append(reason.removeprefix("Skipped: "))
    if not reasons:
        return
    terminalreporter.section("what did not run", sep="=", yellow=True, bold=True)
    for line in skip_summary(reasons):
        terminalreporter.write_line(line, yellow=True)
