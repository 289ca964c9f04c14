"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, and an application on top."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from consentry.config import Settings
from consentry.db import Database
from consentry.migrate import upgrade
from consentry.models import Base
from tests.services import POSTGRES_URL, missing_service

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
        session.execute(sa.text("UPDATE ledger_head SET seq = 0, hash = :h WHERE id = 1"), {"h": "0" * 64})


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Database:
    """A migrated, emptied database: every test using it runs on SQLite and on PostgreSQL."""
    database: Database = request.getfixturevalue(f"{request.param}_database")
    reset(database)
    return database


@pytest.fixture
def settings(tmp_path: Path, database: Database) -> Settings:
    """Settings pointing at a temporary data folder and the test database."""
    return Settings(home=tmp_path / "home", database_url=database.url, operator_name="Test operator")
