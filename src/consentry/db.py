"""Engine, sessions and the declarative base.

SQLite (WAL) is the embedded default; PostgreSQL is used when the URL says so. SQLite allows one writer
at a time, so write sessions there start with ``BEGIN IMMEDIATE``: they take the write lock before they
read, which keeps read-modify-write sequences (such as appending to the ledger) race-free across threads
and processes. Read sessions start deferred and never block writers in WAL mode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as naive UTC, always returned timezone-aware (UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Consentry stores UTC-aware timestamps only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, microsecond precision."""
    return datetime.now(UTC)


def is_sqlite(url: str) -> bool:
    """Whether a database URL points at SQLite."""
    return url.startswith("sqlite")


POOL_SIZE = 40
"""Connections each engine keeps open: as many as the threads that serve requests at once (AnyIO's
default of 40), so a busy server reuses its connections instead of opening and closing one per request."""
POOL_OVERFLOW = 20
"""Connections an engine opens beyond ``POOL_SIZE`` for background threads; closed when returned.
On PostgreSQL, whose connections are server processes shared by every client, half of each (at most 30
per process, as many as before the pool was resized)."""


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    in_memory = url in ("sqlite://", "sqlite:///") or ":memory:" in url  # one connection per thread
    pool: dict[str, Any] = {} if in_memory else {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60}, **pool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute(
            "PRAGMA cache_size=-131072"
        )  # 128 MiB of page cache: bulk index inserts stay in memory
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


PING_AFTER_IDLE = 1.0
"""Seconds a pooled PostgreSQL connection may rest before its next use starts with a ping."""


def _ping_when_idle(engine: Engine, idle: float) -> None:
    """Ping a pooled connection before use when it rested more than ``idle`` seconds (a server restart or
    an idle timeout may have closed it meanwhile; a failed ping opens a new one). ``pool_pre_ping`` pings
    before every use: a round trip per checkout, which a busy server pays on every request for connections
    it used a millisecond ago. When the server goes away while a connection is in use, the statement
    fails as unreachable (503 with ``Retry-After``) and the engine replaces every pooled connection."""

    @event.listens_for(engine, "checkin")
    def _rested(_dbapi_connection: Any, record: Any) -> None:
        record.info["rested_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        rested = record.info.get("rested_at")
        if rested is None or time.monotonic() - rested <= idle:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool discards the connection and checks out another
            raise sa_exc.DisconnectionError("the pooled connection was closed while it rested") from error


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached now (refused or lost connection, pool
    timeout, SQLite's file locked or unreadable), as opposed to a fault of the statement or the data."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error,
        (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, sa_exc.DisconnectionError),
    )


class Database:
    """A database: an engine for reads and one for writes (the same one except on SQLite)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if is_sqlite(url):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(url, immediate=False)
            self.write_engine = _sqlite_engine(url, immediate=True)
        else:
            self.engine = create_engine(url, pool_size=POOL_SIZE // 2, max_overflow=POOL_OVERFLOW // 2)
            _ping_when_idle(self.engine, PING_AFTER_IDLE)
            self.write_engine = self.engine
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; rolled back at the end."""
        with self._read() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session for one unit of work: committed once at the end, rolled back on any error."""
        with self._write() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()
