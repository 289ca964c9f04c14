"""The PostgreSQL pool: a connection is pinged before use only after it rested, and one the server closed
meanwhile is replaced instead of failing a request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from consentry import db
from consentry.db import Database, unreachable


def backend(database: Database) -> int:
    with database.read() as session:
        return int(session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def terminate(admin: Database, pid: int) -> None:
    with admin.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ping of every engine made while the test runs."""
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    seen: list[Any] = []
    ping = PGDialect_psycopg.do_ping

    def counted(self: Any, dbapi_connection: Any) -> bool:
        seen.append(dbapi_connection)
        return bool(ping(self, dbapi_connection))

    monkeypatch.setattr(PGDialect_psycopg, "do_ping", counted)
    return seen


def own_pool(postgres_database: Database, monkeypatch: pytest.MonkeyPatch, rest: float) -> Iterator[Database]:
    monkeypatch.setattr(db, "PING_AFTER_IDLE", rest)
    database = Database(postgres_database.url)
    yield database
    database.dispose()


@pytest.fixture
def eager(postgres_database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A pool that pings every connection that rested at all."""
    yield from own_pool(postgres_database, monkeypatch, 0.0)


@pytest.fixture
def patient(postgres_database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A pool that never pings within a test."""
    yield from own_pool(postgres_database, monkeypatch, 3600.0)


def test_a_connection_used_a_moment_ago_is_not_pinged(patient: Database, pings: list[Any]) -> None:
    first = backend(patient)
    assert [backend(patient) for _ in range(5)] == [first] * 5
    assert pings == []


def test_a_rested_connection_the_server_closed_is_replaced(
    eager: Database, postgres_database: Database, pings: list[Any]
) -> None:
    first = backend(eager)
    assert backend(eager) == first and len(pings) == 1  # rested, pinged, still alive
    terminate(postgres_database, first)
    second = backend(eager)  # the ping fails, the pool opens another connection: no error
    assert second != first
    assert backend(eager) == second


def test_a_connection_closed_while_fresh_fails_as_unreachable_once(
    patient: Database, postgres_database: Database
) -> None:
    first = backend(patient)
    terminate(postgres_database, first)
    with pytest.raises(sa.exc.OperationalError) as raised:
        backend(patient)
    assert unreachable(raised.value)  # the API answers 503 with Retry-After
    assert backend(patient) != first  # the engine replaced its pooled connections
