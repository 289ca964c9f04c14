"""Consent data read in bulk into Arrow: accounts and explicit events, as the vectorised evaluation
reads them (millions of rows converted column-wise, never row by row)."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent.evaluate import (
    ACCOUNT_SCHEMA,
    EVENT_SCHEMA,
)
from consentry.consent.models import ConsentEvent, Subject
from consentry.social.models import Account

log = logging.getLogger(__name__)


def rows_to_table(rows: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.Table:
    """Result rows (in schema order) as an Arrow table."""
    columns = [pa.array([row[i] for row in rows], type=f.type) for i, f in enumerate(schema)]
    return pa.table(columns, schema=schema)


def account_columns() -> tuple[Any, ...]:
    """The account columns of ``ACCOUNT_SCHEMA``, in its order."""
    return (
        Account.id,
        Account.created_at,
        Account.country,
        Account.birth_year,
        Account.status,
        Account.status_changed_at,
    )


def accounts_table(session: Session) -> pa.Table:
    """Every account, in ``ACCOUNT_SCHEMA``."""
    rows = session.execute(select(*account_columns())).all()
    return rows_to_table(rows, ACCOUNT_SCHEMA)


_ACCOUNT_CSV = pacsv.ConvertOptions(
    column_types={
        "account_id": pa.int64(),
        "created_at": pa.timestamp("us"),
        "country": pa.string(),
        "birth_year": pa.int16(),
        "status": pa.string(),
        "status_changed_at": pa.timestamp("us"),
    },
    null_values=[""],  # never "NA": that is Namibia
    strings_can_be_null=True,
    quoted_strings_can_be_null=False,
)


def load_accounts(session: Session, *, above: int = 0) -> pa.Table:
    """Every account with an id above ``above``, in ``ACCOUNT_SCHEMA``, ordered by id.

    Millions of rows must not become Python objects one by one: SQLite concatenates them into one CSV
    text and PostgreSQL streams ``COPY``; Arrow parses the CSV (the columns are numbers, timestamps,
    country codes and statuses: nothing to quote).
    """
    raw: Any = session.connection().connection.dbapi_connection
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        cursor = raw.cursor()
        try:
            cursor.execute(
                "SELECT group_concat(id || ',' || created_at || ',' || coalesce(country, '') || ',' || "
                "coalesce(birth_year, '') || ',' || status || ',' || coalesce(status_changed_at, ''), "
                "char(10)) FROM (SELECT * FROM accounts WHERE id > ? ORDER BY id)",
                (int(above),),
            )
            data = (cursor.fetchone()[0] or "").encode()
        finally:
            cursor.close()
    elif dialect == "postgresql":
        query = (
            "COPY (SELECT id, created_at, country, birth_year, status, status_changed_at FROM accounts "
            f"WHERE id > {int(above)} ORDER BY id) TO STDOUT WITH (FORMAT csv)"
        )
        buffer = io.BytesIO()
        with raw.cursor() as cursor, cursor.copy(query) as copy:
            for block in copy:
                buffer.write(block)
        data = buffer.getvalue()
    else:  # any other database: row by row
        rows = session.execute(select(*account_columns()).where(Account.id > above).order_by(Account.id))
        return rows_to_table(rows.all(), ACCOUNT_SCHEMA)
    if not data:
        return ACCOUNT_SCHEMA.empty_table()
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=list(ACCOUNT_SCHEMA.names)),
        convert_options=_ACCOUNT_CSV,
    )
    for name in ("created_at", "status_changed_at"):
        utc = pc.cast(table[name], pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
        table = table.set_column(table.schema.get_field_index(name), name, utc)
    return table.cast(ACCOUNT_SCHEMA)


def events_table(session: Session, *, until: datetime | None = None) -> pa.Table:
    """Every explicit event of a still-mapped account, in ``EVENT_SCHEMA``.

    Read through the database driver and converted column-wise: this feeds bulk evaluation over
    millions of events.
    """
    sql = (
        "SELECT s.account_id, e.setting, e.value, e.recorded_at, e.seq FROM consent_events e "
        "JOIN consent_subjects s ON s.subject_key = e.subject_key"
    )
    params: tuple[Any, ...] = ()
    dialect = session.get_bind().dialect.name
    if until is not None:
        naive = until.astimezone(UTC).replace(tzinfo=None)
        if dialect == "sqlite":
            sql += " WHERE e.recorded_at <= ?"
            params = (naive.strftime("%Y-%m-%d %H:%M:%S.%f"),)
        else:
            sql += " WHERE e.recorded_at <= %s"
            params = (naive,)
    raw: Any = session.connection().connection.dbapi_connection
    cursor = raw.cursor()
    try:
        cursor.execute(sql + " ORDER BY e.seq", params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        return EVENT_SCHEMA.empty_table()
    ids, settings, values, times, seqs = (list(column) for column in zip(*rows, strict=True))
    if isinstance(times[0], str):
        when = pc.assume_timezone(pa.array(times).cast(pa.timestamp("us")), "UTC")
    else:
        when = pa.array(
            [t if t.tzinfo else t.replace(tzinfo=UTC) for t in times], pa.timestamp("us", tz="UTC")
        )
    return pa.table(
        [pa.array(ids, pa.int64()), pa.array(settings), pa.array(values), when, pa.array(seqs, pa.int64())],
        schema=EVENT_SCHEMA,
    )


def read_accounts(
    session: Session,
    *,
    account_ids: Sequence[int],
    settings: Sequence[str],
    until: datetime | None = None,
) -> tuple[pa.Table, pa.Table]:
    """The rows (``ACCOUNT_SCHEMA``) and explicit events (``EVENT_SCHEMA``) for ``settings``, recorded
    at or before ``until`` (any time without), of the given accounts, read 5,000 ids at a time."""
    ids = sorted({int(a) for a in account_ids})
    accounts: list[Any] = []
    events: list[Any] = []
    for start in range(0, len(ids), 5_000):
        chunk = ids[start : start + 5_000]
        accounts += session.execute(select(*account_columns()).where(Account.id.in_(chunk))).all()
        query = (
            select(
                Subject.account_id,
                ConsentEvent.setting,
                ConsentEvent.value,
                ConsentEvent.recorded_at,
                ConsentEvent.seq,
            )
            .join(Subject, Subject.subject_key == ConsentEvent.subject_key)
            .where(Subject.account_id.in_(chunk), ConsentEvent.setting.in_(list(settings)))
        )
        if until is not None:
            query = query.where(ConsentEvent.recorded_at <= until)
        events += session.execute(query).all()
    return rows_to_table(accounts, ACCOUNT_SCHEMA), rows_to_table(events, EVENT_SCHEMA)
