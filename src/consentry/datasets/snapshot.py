"""What a build reads from the database: the ledger head and, bounded by it, the consent events and
subject mappings, with the policy versions, all in one snapshot.

A release's manifest names the ledger position its build read: the latest signed checkpoint of the
transparency log (the build signs one first), and the head of that size. Every event the build considers has
``seq <= head`` as well as ``recorded_at <= as_of``, and the head, the events, the subject mappings
and the policies are read in one transaction at snapshot isolation (a read transaction of SQLite in
WAL mode is one; on PostgreSQL it runs at ``REPEATABLE READ``). So a write that commits while the
build reads (a bulk import with historic times, a live change, an account deleted with its mapping)
is either wholly before the head the manifest names or has no effect on the release.

The same snapshot reads every account the database no longer holds as active. A lake is an export and
may be older than the database: an account deleted since then is still active there, while its subject
mapping, and with it every choice it made, is already gone. The build overlays these statuses on the
lake's (``datasets.eligibility.with_database_status``), so such an account is excluded instead of
falling back to a default.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent import ledger
from consentry.consent.evaluate import EVENT_SCHEMA
from consentry.consent.ledger import GENESIS
from consentry.consent.models import ConsentEvent, LedgerHead
from consentry.consent.policy import Policy
from consentry.consent.service import load_policies
from consentry.db import Database
from consentry.errors import IntegrityFailure
from consentry.transparency import partitions
from consentry.transparency import service as tlog
from consentry.transparency.cite import citation

_MAX_SEQ = (1 << 63) - 1

CLOSED_ACCOUNTS = pa.schema(
    [
        ("account_id", pa.int64()),
        ("status", pa.string()),
        ("status_changed_at", pa.timestamp("us", tz="UTC")),
        ("mapped", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class ConsentSnapshot:
    """The consent inputs of a build, read in one snapshot."""

    head_seq: int
    head_hash: str
    checkpoint: dict[str, Any] | None
    """The citation of the checkpoint whose size is ``head_seq`` (``cite.citation``), if bounded by one."""
    policies: tuple[Policy, ...]
    events: pa.Table
    """``ledger_events`` bounded by the head and ``as_of``."""
    events_considered: int
    closed_accounts: pa.Table
    """Accounts the database holds as deactivated or deleted, in ``CLOSED_ACCOUNTS``."""
    partition_heads: tuple[tuple[int, str], ...] = ()
    """Every partition's head (seq, hash) of a ledger of several partitions; empty with one."""

    @property
    def head(self) -> dict[str, Any]:
        """The head as the manifest records it (with every partition's head, when there are several)."""
        head: dict[str, Any] = {"seq": self.head_seq, "hash": self.head_hash}
        if self.partition_heads:
            head["partitions"] = [{"seq": seq, "hash": digest} for seq, digest in self.partition_heads]
        return head


def read_snapshot(
    database: Database, *, settings: Sequence[str], as_of: datetime, log_key: str | None = None
) -> ConsentSnapshot:
    """The ledger head, the policy versions and the events of ``settings`` recorded at or before
    ``as_of`` up to that head, read in one transaction at snapshot isolation.

    With ``log_key`` (the log's verifier key) the position read is the latest signed checkpoint
    instead of the head: events up to its size, and its citation, so that what the build read is
    exactly what the checkpoint commits to. With several partitions, whose seqs interleave, that is
    each partition's events up to the size the checkpoint's partition state names for it."""
    with database.read() as session:
        if session.get_bind().dialect.name == "postgresql":  # SQLite: the read transaction is a snapshot
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        heads = [
            (int(seq), str(digest))
            for seq, digest in session.execute(
                select(LedgerHead.seq, LedgerHead.hash).order_by(LedgerHead.id)
            )
        ]
        if not heads:
            raise IntegrityFailure("the ledger head row is missing; run 'consentry db upgrade'")
        cited = None
        if log_key is not None:
            row = tlog.latest_checkpoint(session)
            if row is None:
                raise IntegrityFailure("the transparency log has no checkpoint to cite; sign one first")
            cited = citation(row, log_key=log_key)
            heads = _heads_at(session, row.size, len(heads))
        head = max(heads, key=lambda h: h[0])
        policies = tuple(load_policies(session))
        events = ledger_events(session, settings=settings, until=as_of, through_seq=head[0])
        if len(heads) > 1:  # seqs interleave: each partition up to its own head
            events = _up_to_heads(events, [seq for seq, _ in heads])
        closed = closed_accounts(session)
    return ConsentSnapshot(
        partition_heads=tuple(heads) if len(heads) > 1 else (),
        head_seq=head[0],
        head_hash=head[1],
        checkpoint=cited,
        policies=policies,
        events=events,
        events_considered=events.num_rows,
        closed_accounts=closed,
    )


def _heads_at(session: Session, size: int, count: int) -> list[tuple[int, str]]:
    """Every partition's head (seq, hash) as the checkpoint of ``size`` leaves commits to it: with one
    partition its last event, with several the last event of each partition's tree in the checkpoint's
    state entry."""
    if count == 1:
        seqs = [size]
    elif size == 0:
        seqs = [0] * count
    else:
        trees = partitions.state_at(session, size - 1).trees
        if len(trees) != count:
            raise IntegrityFailure(f"checkpoint {size} names {len(trees)} partitions, the ledger has {count}")
        seqs = [ledger.seq_of(n - 1, p, count) if n else 0 for p, (n, _) in enumerate(trees)]
    wanted = select(ConsentEvent.seq, ConsentEvent.hash).where(ConsentEvent.seq.in_([s for s in seqs if s]))
    found = {int(seq): str(digest) for seq, digest in session.execute(wanted)}
    heads = []
    for seq in seqs:
        if seq and seq not in found:
            raise IntegrityFailure(f"the ledger has no event {seq}, which checkpoint {size} covers")
        heads.append((seq, found[seq] if seq else GENESIS))
    return heads


def _up_to_heads(events: pa.Table, heads: Sequence[int]) -> pa.Table:
    """The events whose seq is at or before their own partition's head (``heads[p]``)."""
    seqs = events["seq"].to_numpy()
    bounds = np.asarray(heads, dtype=np.int64)
    return events.filter(pa.array(seqs <= bounds[(seqs - 1) % len(heads)]))


def closed_accounts(session: Session) -> pa.Table:
    """Every account the database holds as not active, with whether its subject mapping still exists,
    in ``CLOSED_ACCOUNTS``."""
    rows = _fetch(
        session,
        "SELECT a.id, a.status, a.status_changed_at, s.account_id IS NOT NULL FROM accounts a "
        "LEFT JOIN consent_subjects s ON s.account_id = a.id WHERE a.status <> 'active'",
        [],
    )
    ids, statuses, changed, mapped = (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [], [])
    return pa.table(
        {
            "account_id": pa.array(ids, pa.int64()),
            "status": pa.array(statuses, pa.string()),
            "status_changed_at": _timestamps(changed),
            "mapped": pa.array([bool(m) for m in mapped], pa.bool_()),
        },
        schema=CLOSED_ACCOUNTS,
    )


def _timestamps(values: Sequence[Any]) -> pa.Array:
    """Database timestamps (SQLite text or naive datetimes, both UTC) as an Arrow UTC column."""
    array = pa.array(values)
    if pa.types.is_string(array.type) or pa.types.is_null(array.type):
        array = array.cast(pa.string()).cast(pa.timestamp("us"))
    return array.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))


def _fetch(session: Session, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows of a query run straight on the driver (no per-row ORM processing); ``?`` placeholders."""
    raw: Any = session.connection().connection.dbapi_connection
    if session.get_bind().dialect.name == "postgresql":
        sql = sql.replace("?", "%s")
    cursor = raw.cursor()
    try:
        cursor.execute(sql, tuple(params))
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    finally:
        cursor.close()
    return rows


_EVENT_CSV = pacsv.ConvertOptions(
    column_types={
        "account_id": pa.int64(),
        "setting": pa.string(),
        "value": pa.string(),
        "recorded_at": pa.timestamp("us"),
        "seq": pa.int64(),
    }
)


def _csv_table(data: bytes, names: list[str], convert: pacsv.ConvertOptions) -> pa.Table:
    if not data:
        return pa.table({n: pa.array([], convert.column_types[n]) for n in names})
    return pacsv.read_csv(
        io.BytesIO(data), read_options=pacsv.ReadOptions(column_names=names), convert_options=convert
    )


def ledger_events(
    session: Session, *, settings: Sequence[str], until: datetime, through_seq: int | None = None
) -> pa.Table:
    """Explicit events for ``settings`` recorded at or before ``until`` (and, given ``through_seq``,
    with ``seq <= through_seq``) of still-mapped accounts, in ``EVENT_SCHEMA``: the rows
    ``consent.service.events_table`` gives for those settings.

    Millions of events must not become Python objects one by one: SQLite concatenates the rows into one
    CSV text (``group_concat``) and PostgreSQL streams them with ``COPY ... TO STDOUT``; Arrow parses
    the CSV. Every value is an identifier, a number or a timestamp, so no quoting is needed.
    """
    if not settings:
        return EVENT_SCHEMA.empty_table()
    bound = until.astimezone(UTC).replace(tzinfo=None)
    last = _MAX_SEQ if through_seq is None else int(through_seq)
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        table = _sqlite_events(session, settings, bound, last)
    elif dialect == "postgresql":
        table = _postgres_events(session, settings, bound, last)
    else:  # any other database: row by row
        table = _generic_events(session, settings, bound, last)
    table = table.set_column(
        table.schema.get_field_index("recorded_at"),
        "recorded_at",
        pc.cast(table["recorded_at"], pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")),
    )
    return table.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)


_EVENT_NAMES = ["account_id", "setting", "value", "recorded_at", "seq"]


def _sqlite_events(session: Session, settings: Sequence[str], bound: datetime, last: int) -> pa.Table:
    """``ledger_events`` on SQLite: the mapping, then the events, as two CSV texts joined in Arrow
    (two plain scans joined in Arrow beat SQLite's index join)."""
    raw: Any = session.connection().connection.dbapi_connection
    marks = ", ".join("?" for _ in settings)
    cursor = raw.cursor()
    try:
        cursor.execute(
            "SELECT group_concat(subject_key || ',' || account_id, char(10)) FROM consent_subjects"
        )
        subjects_csv = (cursor.fetchone()[0] or "").encode()
        cursor.execute(
            "SELECT group_concat(subject_key || ',' || setting || ',' || value || ',' || recorded_at "
            f"|| ',' || seq, char(10)) FROM consent_events "
            f"WHERE setting IN ({marks}) AND recorded_at <= ? AND seq <= ?",
            (*settings, bound.strftime("%Y-%m-%d %H:%M:%S.%f"), last),
        )
        events_csv = (cursor.fetchone()[0] or "").encode()
    finally:
        cursor.close()
    subjects = _csv_table(
        subjects_csv,
        ["subject_key", "account_id"],
        pacsv.ConvertOptions(column_types={"subject_key": pa.string(), "account_id": pa.int64()}),
    )
    events = _csv_table(
        events_csv,
        ["subject_key", *_EVENT_NAMES[1:]],
        pacsv.ConvertOptions(column_types={"subject_key": pa.string(), **_EVENT_CSV.column_types}),
    )
    # subject keys are unique: a hash look-up is the inner join, without starting Acero's engine
    position = pc.index_in(events["subject_key"], value_set=subjects["subject_key"])
    mapped = events.filter(pc.is_valid(position))
    return mapped.append_column("account_id", pc.take(subjects["account_id"], pc.drop_null(position)))


def _postgres_events(session: Session, settings: Sequence[str], bound: datetime, last: int) -> pa.Table:
    """``ledger_events`` on PostgreSQL: one join streamed as CSV with ``COPY ... TO STDOUT``."""
    raw: Any = session.connection().connection.dbapi_connection
    literal = ", ".join("'" + s.replace("'", "''") + "'" for s in settings)
    query = (
        "COPY (SELECT s.account_id, e.setting, e.value, e.recorded_at, e.seq FROM consent_events e "
        f"JOIN consent_subjects s ON s.subject_key = e.subject_key WHERE e.setting IN ({literal}) "
        f"AND e.recorded_at <= '{bound.isoformat(sep=' ')}' AND e.seq <= {last}) "
        "TO STDOUT WITH (FORMAT csv)"
    )
    buffer = io.BytesIO()
    with raw.cursor() as cursor, cursor.copy(query) as copy:
        for block in copy:
            buffer.write(block)
    return _csv_table(buffer.getvalue(), _EVENT_NAMES, _EVENT_CSV)


def _generic_events(session: Session, settings: Sequence[str], bound: datetime, last: int) -> pa.Table:
    """``ledger_events`` on any other database, row by row."""
    marks = ", ".join("?" for _ in settings)
    rows = _fetch(
        session,
        "SELECT s.account_id, e.setting, e.value, e.recorded_at, e.seq FROM consent_events e "
        "JOIN consent_subjects s ON s.subject_key = e.subject_key "
        f"WHERE e.setting IN ({marks}) AND e.recorded_at <= ? AND e.seq <= ?",
        [*settings, bound, last],
    )
    columns = list(zip(*rows, strict=True)) if rows else [()] * 5
    return pa.table(
        {
            name: _timestamps(values)
            if name == "recorded_at"
            else pa.array(values, _EVENT_CSV.column_types[name])
            for name, values in zip(_EVENT_NAMES, columns, strict=True)
        }
    )
