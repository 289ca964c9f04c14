"""The release registry read through the database driver (``consentry dataset list``) gives what the
SQLAlchemy reader gives, on SQLite and PostgreSQL, and never touches a database it cannot read so."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consentry.datasets import queries
from consentry.datasets.models import Release
from consentry.datasets.recipients import add_recipient
from consentry.db import Database
from consentry.errors import InvalidInput, NotFound

T0 = datetime(2026, 5, 1, 12, 30, 15, 250_000, tzinfo=UTC)


@pytest.fixture
def registry(database: Database) -> Database:
    """Two recipients and five releases, two of them created at the same moment (ordered by id)."""
    with database.write() as session:
        first = add_recipient(
            session, name="assistant", kind="first_party", purposes=["train-ai"], categories=["posts"]
        )
        other = add_recipient(
            session,
            name="partner",
            kind="third_party",
            purposes=["train-ai"],
            categories=["posts", "assistant_interactions"],
        )
        for number, (owner, minutes) in enumerate(
            [(first, 0), (other, 5), (first, 10), (other, 10), (first, 20)]
        ):
            session.add(
                Release(
                    id=f"rel-{number}",
                    recipient_id=owner.id,
                    purpose="train-ai",
                    categories=["posts", "assistant_interactions"][: 1 + number % 2],
                    as_of=T0 - timedelta(days=number),
                    engine="duckdb",
                    status="withdrawn" if number == 3 else "published",
                    path=f"/releases/{number}",
                    manifest_sha256="0" * 64,
                    rows=1_000 * number,
                    excluded=7 * number,
                    created_at=T0 + timedelta(minutes=minutes),
                )
            )
    return database


def expected(
    database: Database, *, recipient: str | None = None, limit: int = 100
) -> list[queries.ReleaseRow]:
    """The rows as the SQLAlchemy reader gives them."""
    with database.read() as session:
        names = queries.recipient_names(session)
        return [
            queries.ReleaseRow(
                id=r.id,
                recipient=names[r.recipient_id],
                purpose=r.purpose,
                categories=list(r.categories),
                as_of=r.as_of,
                rows=r.rows,
                excluded=r.excluded,
                status=r.status,
            )
            for r in queries.list_releases(session, recipient=recipient, limit=limit)
        ]


@pytest.mark.parametrize(("recipient", "limit"), [(None, 100), (None, 2), ("assistant", 100), ("partner", 1)])
def test_the_driver_reader_agrees_with_the_orm(registry: Database, recipient: str | None, limit: int) -> None:
    found = queries.release_rows(registry.url, recipient=recipient, limit=limit)
    assert found == expected(registry, recipient=recipient, limit=limit)
    assert found and found[0].as_of.tzinfo is not None
    with registry.read() as session:
        assert queries.release_rows_in(session, recipient=recipient, limit=limit) == found


def test_newest_first_then_by_id(registry: Database) -> None:
    found = queries.release_rows(registry.url)
    assert found is not None
    assert [r.id for r in found] == ["rel-4", "rel-3", "rel-2", "rel-1", "rel-0"]
    assert found[1].status == "withdrawn" and found[0].as_of == T0 - timedelta(days=4)


def test_bad_requests_fail_as_the_orm_reader_does(registry: Database) -> None:
    with pytest.raises(NotFound, match="unknown recipient 'nobody'") as raised:
        queries.release_rows(registry.url, recipient="nobody")
    assert raised.value.field == "recipient"
    for limit in (0, 1001):
        with pytest.raises(InvalidInput) as invalid:
            queries.release_rows(registry.url, limit=limit)
        assert invalid.value.field == "limit"


def test_databases_it_cannot_read_are_left_to_the_migrations(tmp_path: Path) -> None:
    missing = tmp_path / "new" / "consentry.db"
    assert queries.release_rows(f"sqlite:///{missing}") is None
    assert not missing.exists() and not missing.parent.exists()  # nothing created

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert queries.release_rows(f"sqlite:///{empty}") is None  # no schema yet

    older = tmp_path / "older.db"
    with sqlite3.connect(older) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES ('0001')")
    assert queries.release_rows(f"sqlite:///{older}") is None  # an older schema: migrate first

    assert queries.release_rows("sqlite://") is None
    assert queries.release_rows("mysql+pymysql://user@localhost/consentry") is None
