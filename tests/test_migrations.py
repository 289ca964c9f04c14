"""Models and migrations agree, on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from consentry.db import Database
from consentry.migrate import check, upgrade
from tests.services import POSTGRES_URL, missing_service


def test_models_and_migrations_agree(database: Database) -> None:
    check(database)  # raises IntegrityFailure on any drift


def test_upgrade_is_idempotent_and_seeds_the_starting_policy(database: Database) -> None:
    upgrade(database)
    with database.read() as session:
        version, applies_to, defaults = session.execute(
            sa.text("SELECT version, applies_to, defaults FROM policy_versions WHERE version = 1")
        ).one()
        head = session.execute(sa.text("SELECT seq, hash FROM ledger_head")).all()
    assert (version, applies_to) == (1, "all")
    assert head == [(0, "0" * 64)]
    parsed = defaults if isinstance(defaults, dict) else __import__("json").loads(defaults)
    assert parsed["default"] == {"*": "allow"}
    assert {parsed[g]["*"] for g in ("EEA", "UK", "CH")} == {"deny"}


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database of its own (no revision applied yet), on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
        yield database
        database.dispose()
        return
    name = f"consentry_fresh_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as error:
        admin.dispose()
        missing_service("postgres", POSTGRES_URL, error)
    database = Database(admin.url.set(database=name).render_as_string(hide_password=False))
    try:
        yield database
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_organisation_name_keys_are_filled_in_and_clashes_kept_apart(fresh_database: Database) -> None:
    upgrade(fresh_database, "0011")
    with fresh_database.write() as session:
        for name in ("Ünited AI", "ünited ai", "Example Labs"):  # the first two got in side by side before
            session.execute(
                sa.text(
                    "INSERT INTO organisations (name, mode, created_at, updated_at) "
                    "VALUES (:name, 'meter', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"name": name},
            )
    upgrade(fresh_database)
    with fresh_database.read() as session:
        rows = session.execute(sa.text("SELECT id, name, name_key FROM organisations ORDER BY id")).all()
    [(first, _, k1), (second, _, k2), (_, _, k3)] = rows
    assert (k1, k2, k3) == ("ünited ai", f"ünited ai:{second}", "example labs")
    assert first < second
    check(fresh_database)
