"""Reading the release registry: recipients and releases. Light on purpose, so commands that list things
start without the build machinery (Arrow, DuckDB, the lake).

Two readers. ``get_recipient``, ``get_release``, ``list_releases`` and ``recipient_names`` go through a
SQLAlchemy session (the API and the services hold one anyway). ``release_rows`` lists releases straight
through the database's driver (``sqlite3``, ``psycopg``) for ``consentry dataset list``, which then
starts without importing SQLAlchemy, whose import alone takes longer than the rest of the command.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from consentry.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from consentry.datasets.models import Recipient, Release

MAX_LIMIT = 1000


def _unknown_recipient(name: str) -> NotFound:
    return NotFound(f"unknown recipient {name!r}; add it with 'consentry recipient add'", field="recipient")


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")


def get_recipient(session: Session, name: str) -> Recipient:
    """The recipient called ``name``, or ``NotFound``."""
    from sqlalchemy import select

    from consentry.datasets.models import Recipient

    recipient = session.scalar(select(Recipient).where(Recipient.name == name))
    if recipient is None:
        raise _unknown_recipient(name)
    return recipient


def get_release(session: Session, release_id: str) -> Release:
    """One release, or ``NotFound``."""
    from consentry.datasets.models import Release

    release = session.get(Release, release_id)
    if release is None:
        raise NotFound(f"no release {release_id!r}", field="release_id")
    return release


def list_releases(session: Session, *, recipient: str | None = None, limit: int = 100) -> list[Release]:
    """Releases, newest first (of one recipient when named)."""
    from sqlalchemy import select

    from consentry.datasets.models import Release

    _check_limit(limit)
    query = select(Release)
    if recipient is not None:
        query = query.where(Release.recipient_id == get_recipient(session, recipient).id)
    return list(session.scalars(query.order_by(Release.created_at.desc(), Release.id.desc()).limit(limit)))


def recipient_names(session: Session) -> dict[int, str]:
    """Recipient names by id."""
    from sqlalchemy import select

    from consentry.datasets.models import Recipient

    return {rid: name for rid, name in session.execute(select(Recipient.id, Recipient.name))}


# --- through the driver -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseRow:
    """One release as ``consentry dataset list`` shows it."""

    id: str
    recipient: str
    purpose: str
    categories: list[str]
    as_of: datetime
    rows: int
    excluded: int
    status: str


class _Connection(Protocol):
    """What ``release_rows`` needs of a DB-API connection (``sqlite3`` and ``psycopg`` both)."""

    def cursor(self) -> Any: ...

    def close(self) -> None: ...


_LIST = (
    "SELECT r.id, c.name, r.purpose, r.categories, r.as_of, r.rows, r.excluded, r.status "
    "FROM releases r LEFT JOIN recipients c ON c.id = r.recipient_id{where} "
    "ORDER BY r.created_at DESC, r.id DESC LIMIT {limit}"
)


def release_rows(url: str, *, recipient: str | None = None, limit: int = 100) -> list[ReleaseRow] | None:
    """``list_releases`` read through the driver of the database at ``url`` (SQLAlchemy URL). ``None``
    when it cannot be read so: another kind of database, no database yet, or a schema older than the
    newest migration (the caller then opens it through ``consentry.db``, which migrates it)."""
    _check_limit(limit)
    opened = _connect(url)
    if opened is None:
        return None
    connection, mark = opened
    try:
        if not _at_head(connection):
            return None
        return _read(connection, mark, recipient=recipient, limit=limit)
    finally:
        connection.close()


def release_rows_in(session: Session, *, recipient: str | None = None, limit: int = 100) -> list[ReleaseRow]:
    """``release_rows`` through the connection of an open session (any database SQLAlchemy reaches)."""
    _check_limit(limit)
    raw: Any = session.connection().connection.dbapi_connection
    mark = "%s" if session.get_bind().dialect.paramstyle in ("format", "pyformat") else "?"
    return _read(raw, mark, recipient=recipient, limit=limit)


def _read(connection: Any, mark: str, *, recipient: str | None, limit: int) -> list[ReleaseRow]:
    cursor = connection.cursor()
    try:
        where, params = "", []
        if recipient is not None:
            cursor.execute(f"SELECT id FROM recipients WHERE name = {mark}", [recipient])
            found = cursor.fetchall()
            if not found:
                raise _unknown_recipient(recipient)
            where, params = f" WHERE r.recipient_id = {mark}", [found[0][0]]
        cursor.execute(_LIST.format(where=where, limit=int(limit)), params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return [
        ReleaseRow(
            id=str(row[0]),
            recipient=str(row[1]) if row[1] is not None else "?",
            purpose=str(row[2]),
            categories=list(json.loads(row[3]) if isinstance(row[3], str | bytes) else row[3]),
            as_of=_utc(row[4]),
            rows=int(row[5]),
            excluded=int(row[6]),
            status=str(row[7]),
        )
        for row in rows
    ]


def _utc(value: datetime | str) -> datetime:
    """A stored timestamp (naive UTC; SQLite returns it as text) as an aware UTC datetime."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC)


def _connect(url: str) -> tuple[_Connection, str] | None:
    """A driver connection to the database at ``url`` and its parameter mark, or ``None``."""
    if url.startswith("sqlite:///") and "?" not in url:
        path = Path(url[len("sqlite:///") :])
        if not path.is_file():
            return None
        try:  # mode=rw: never creates a file (a new database is for the migrations to make)
            connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=60)
        except sqlite3.Error:
            return None
        return connection, "?"
    for scheme in ("postgresql+psycopg://", "postgresql://"):
        if url.startswith(scheme):
            try:
                import psycopg
            except ImportError:
                return None
            try:
                return psycopg.connect("postgresql://" + url[len(scheme) :], autocommit=True), "%s"
            except psycopg.Error:
                return None
    return None


def _at_head(connection: _Connection) -> bool:
    """Whether the database's schema is the newest packaged migration (false on any doubt)."""
    from consentry.migrate import head_revision

    head = head_revision()
    cursor = connection.cursor()
    try:
        cursor.execute("SELECT version_num FROM alembic_version")
        versions = [row[0] for row in cursor.fetchall()]
    except Exception:  # no version table (a new database), or any other doubt: migrate first
        return False
    finally:
        cursor.close()
    return head is not None and versions == [head]
