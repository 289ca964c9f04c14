"""Bulk reads of consent data into Arrow: the one reader every domain uses for accounts and events.

Every read of events is bounded by a ledger position (``Position``: the last seq of each partition, as
``position`` reads it from the heads), and may start after another: what a reader saw can be named (a
manifest cites it), and a cache can read exactly what came since. With several partitions, whose seqs
interleave, the bound is per partition (event ``seq`` is in partition ``(seq - 1) % P``), so a position is
exact there too, not only as a snapshot's side effect.

Millions of rows must not become Python objects one by one: SQLite concatenates the rows into one CSV
text (``group_concat``) and PostgreSQL streams them with ``COPY ... TO STDOUT``; Arrow parses the CSV.
Every value is an identifier, a number, a country code, a status or a timestamp, so nothing needs quoting.
Any other database is read row by row. The driver's connection is typed here (``Cursor``), once, for
every bulk path that goes around the ORM, writes included (``consent.ledger``, ``consent.importer``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent.evaluate import ACCOUNT_SCHEMA, EVENT_SCHEMA
from consentry.consent.models import LedgerHead
from consentry.errors import IntegrityFailure

# --- the driver, typed --------------------------------------------------------------------------------------


class Copy(Protocol):
    """A ``COPY`` in progress (psycopg): rows out by iteration, rows in by ``write``/``write_row``."""

    def __iter__(self) -> Iterator[bytes | memoryview]: ...

    def write(self, data: bytes | str) -> None: ...

    def write_row(self, row: Sequence[Any]) -> None: ...


class Cursor(Protocol):
    """The DB-API cursor of either driver (``sqlite3``, psycopg); ``copy`` is psycopg's only."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def close(self) -> None: ...

    def copy(self, statement: str) -> AbstractContextManager[Copy]: ...


class Connection(Protocol):
    """The DB-API connection under a session."""

    def cursor(self) -> Cursor: ...


def connection(session: Session) -> Connection:
    """The driver connection of ``session``'s transaction."""
    raw = session.connection().connection.dbapi_connection
    if raw is None:
        raise IntegrityFailure("the session's database connection is closed")
    return cast(Connection, raw)


@contextmanager
def cursor(session: Session) -> Iterator[Cursor]:
    """A cursor on the driver connection of ``session``'s transaction (closed afterwards)."""
    found = connection(session).cursor()
    try:
        yield found
    finally:
        found.close()


def dialect_of(session: Session) -> str:
    """``sqlite``, ``postgresql`` or another dialect's name."""
    return session.get_bind().dialect.name


def copy_out(session: Session, query: str) -> bytes:
    """The CSV that PostgreSQL's ``COPY (query) TO STDOUT`` streams."""
    buffer = io.BytesIO()
    with cursor(session) as found, found.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy:
        for block in copy:
            buffer.write(block)
    return buffer.getvalue()


def concatenated(session: Session, expression: str, source: str, params: Sequence[Any] = ()) -> bytes:
    """SQLite: the rows of ``SELECT expression FROM source`` as one CSV text (``expression`` joins a row's
    columns with commas)."""
    with cursor(session) as found:
        found.execute(f"SELECT group_concat({expression}, char(10)) FROM {source}", tuple(params))
        row = found.fetchone()
    return str(row[0] or "").encode() if row else b""


def fetch(session: Session, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query run straight on the driver (no per-row ORM processing); ``?`` placeholders."""
    with cursor(session) as found:
        if not params:  # no placeholders to fill: the text goes as it is (a % included)
            found.execute(sql)
        elif dialect_of(session) == "postgresql":
            found.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))
        else:
            found.execute(sql, tuple(params))
        return [tuple(row) for row in found.fetchall()]


def csv_table(data: bytes, schema: pa.Schema) -> pa.Table:
    """CSV rows (no header, the columns of ``schema`` in order) as a table; empty fields are nulls."""
    if not data:
        return schema.empty_table()
    types = {f.name: (pa.timestamp("us") if pa.types.is_timestamp(f.type) else f.type) for f in schema}
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=list(schema.names)),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],  # never "NA": that is Namibia
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    return _utc(table).cast(schema)


def timestamps(values: Sequence[Any]) -> pa.Array:
    """Database timestamps (SQLite text or naive datetimes, both UTC) as an Arrow UTC column."""
    array = pa.array(values)
    if pa.types.is_string(array.type) or pa.types.is_null(array.type):
        array = array.cast(pa.string()).cast(pa.timestamp("us"))
    return array.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))


def rows_table(rows: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.Table:
    """Result rows (in schema order) as a table; timestamps as the database returned them."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    return pa.table(
        [
            timestamps(values) if pa.types.is_timestamp(f.type) else pa.array(values, f.type)
            for f, values in zip(schema, columns, strict=True)
        ],
        schema=schema,
    )


def _utc(table: pa.Table) -> pa.Table:
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            utc = pc.cast(table[field.name], pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
            table = table.set_column(index, field.name, utc)
    return table


def _sql_time(at: datetime) -> str:
    """A UTC time as the text both databases compare timestamps with."""
    return at.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


# --- positions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """A position in the ledger: the last seq of each partition (in partition order)."""

    heads: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.heads or any(h < 0 for h in self.heads):
            raise IntegrityFailure(f"a ledger position names each partition's last seq, not {self.heads}")

    @property
    def partitions(self) -> int:
        """How many partitions the ledger has."""
        return len(self.heads)

    @classmethod
    def start(cls, partitions: int = 1) -> Position:
        """Before the first event."""
        return cls((0,) * partitions)

    def bound(self, column: str = "seq") -> str:
        """SQL that holds for the events at or before this position (``column`` names their seq)."""
        if self.partitions == 1:
            return f"{column} <= {int(self.heads[0])}"
        cases = " ".join(f"WHEN {p} THEN {int(h)}" for p, h in enumerate(self.heads))
        return f"{column} <= CASE ({column} - 1) % {self.partitions} {cases} END"


def position(session: Session) -> Position:
    """The ledger's position now: each partition's head, read in the caller's transaction."""
    heads = tuple(int(s) for s in session.scalars(select(LedgerHead.seq).order_by(LedgerHead.id)))
    if not heads:
        raise IntegrityFailure("the ledger head row is missing; run 'consentry db upgrade'")
    return Position(heads)


def _between(upto: Position, after: Position | None, column: str) -> str:
    if after is not None and after.partitions != upto.partitions:
        raise IntegrityFailure(f"positions of {after.partitions} and {upto.partitions} partitions")
    bound = upto.bound(column)
    return bound if after is None else f"{bound} AND NOT ({after.bound(column)})"


# --- reads --------------------------------------------------------------------------------------------------


KEYED_EVENTS = pa.schema([("subject_key", pa.string()), *(f for f in EVENT_SCHEMA if f.name != "account_id")])
"""Events as SQLite's scan reads them: by subject key, joined to accounts in Arrow."""
SUBJECTS = pa.schema([("subject_key", pa.string()), ("account_id", pa.int64())])


def events(
    session: Session,
    *,
    upto: Position,
    after: Position | None = None,
    settings: Sequence[str] | None = None,
    until: datetime | None = None,
    ordered: bool = False,
) -> pa.Table:
    """The explicit events of still-mapped accounts at or before ``upto`` (and after ``after``), for
    ``settings`` (every setting without), recorded at or before ``until`` (any time without), in
    ``EVENT_SCHEMA``; in seq order if ``ordered``."""
    if settings is not None and not settings:
        return EVENT_SCHEMA.empty_table()
    where = [_between(upto, after, "e.seq")]
    if settings is not None:
        where.append("e.setting IN (" + ", ".join("'" + s.replace("'", "''") + "'" for s in settings) + ")")
    if until is not None:
        where.append(f"e.recorded_at <= '{_sql_time(until)}'")
    condition = " AND ".join(where)
    dialect = dialect_of(session)
    if dialect == "sqlite":  # the mapping, then the events: two scans joined in Arrow beat SQLite's join
        subjects = csv_table(
            concatenated(session, "subject_key || ',' || account_id", "consent_subjects"),
            SUBJECTS,
        )
        keyed = csv_table(
            concatenated(
                session,
                "e.subject_key || ',' || e.setting || ',' || e.value || ',' || e.recorded_at || ',' || e.seq",
                f"consent_events e WHERE {condition}",
            ),
            KEYED_EVENTS,
        )
        # subject keys are unique: a hash look-up is the inner join, without starting Acero's engine
        found = pc.index_in(keyed["subject_key"], value_set=subjects["subject_key"])
        mapped = keyed.filter(pc.is_valid(found))
        table = mapped.append_column("account_id", pc.take(subjects["account_id"], pc.drop_null(found)))
        table = table.select(EVENT_SCHEMA.names)
    else:
        query = (
            "SELECT s.account_id, e.setting, e.value, e.recorded_at, e.seq FROM consent_events e "
            f"JOIN consent_subjects s ON s.subject_key = e.subject_key WHERE {condition}"
        )
        if dialect == "postgresql":
            table = csv_table(copy_out(session, query), EVENT_SCHEMA)
        else:  # any other database: row by row
            table = rows_table(fetch(session, query), EVENT_SCHEMA)
    table = table.cast(EVENT_SCHEMA)
    return table.take(pc.sort_indices(table["seq"])) if ordered else table


_ACCOUNT_COLUMNS = "id, created_at, country, birth_year, status, status_changed_at"


def accounts(session: Session, *, above: int = 0, ids: Sequence[int] | None = None) -> pa.Table:
    """Every account with an id above ``above`` (only those of ``ids``, if given), in ``ACCOUNT_SCHEMA``,
    ordered by id."""
    where = f"id > {int(above)}"
    if ids is not None:
        if not ids:
            return ACCOUNT_SCHEMA.empty_table()
        where += " AND id IN (" + ", ".join(str(int(i)) for i in ids) + ")"
    dialect = dialect_of(session)
    if dialect == "sqlite":
        data = concatenated(
            session,
            "id || ',' || created_at || ',' || coalesce(country, '') || ',' || coalesce(birth_year, '') "
            "|| ',' || status || ',' || coalesce(status_changed_at, '')",
            f"(SELECT * FROM accounts WHERE {where} ORDER BY id)",
        )
        return csv_table(data, ACCOUNT_SCHEMA)
    query = f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE {where} ORDER BY id"
    if dialect == "postgresql":
        return csv_table(copy_out(session, query), ACCOUNT_SCHEMA)
    return rows_table(fetch(session, query), ACCOUNT_SCHEMA)


def accounts_of(
    session: Session,
    *,
    account_ids: Sequence[int],
    settings: Sequence[str],
    upto: Position,
    until: datetime | None = None,
    chunk: int = 5_000,
) -> tuple[pa.Table, pa.Table]:
    """The rows (``ACCOUNT_SCHEMA``) and explicit events (``EVENT_SCHEMA``) of the given accounts for
    ``settings``, at or before ``upto`` and recorded at or before ``until``, read ``chunk`` ids at a time."""
    ids = sorted({int(a) for a in account_ids})
    found_accounts: list[pa.Table] = [ACCOUNT_SCHEMA.empty_table()]
    found_events: list[pa.Table] = [EVENT_SCHEMA.empty_table()]
    names = ", ".join("'" + s.replace("'", "''") + "'" for s in settings)
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        found_accounts.append(accounts(session, ids=part))
        if not settings:
            continue
        listed = ", ".join(str(i) for i in part)
        condition = f"s.account_id IN ({listed}) AND e.setting IN ({names}) AND {upto.bound('e.seq')}"
        if until is not None:
            condition += f" AND e.recorded_at <= '{_sql_time(until)}'"
        rows = fetch(
            session,
            "SELECT s.account_id, e.setting, e.value, e.recorded_at, e.seq FROM consent_events e "
            f"JOIN consent_subjects s ON s.subject_key = e.subject_key WHERE {condition}",
        )
        found_events.append(rows_table(rows, EVENT_SCHEMA))
    return pa.concat_tables(found_accounts), pa.concat_tables(found_events)


CLOSED_ACCOUNTS = pa.schema(
    [
        ("account_id", pa.int64()),
        ("status", pa.string()),
        ("status_changed_at", pa.timestamp("us", tz="UTC")),
        ("mapped", pa.bool_()),
    ]
)


def closed_accounts(session: Session) -> pa.Table:
    """Every account the database holds as not active, with whether its subject mapping still exists,
    in ``CLOSED_ACCOUNTS``."""
    rows = fetch(
        session,
        "SELECT a.id, a.status, a.status_changed_at, s.account_id IS NOT NULL FROM accounts a "
        "LEFT JOIN consent_subjects s ON s.account_id = a.id "
        "WHERE a.status <> 'active'",
    )
    return rows_table([(i, st, ch, bool(m)) for i, st, ch, m in rows], CLOSED_ACCOUNTS)
