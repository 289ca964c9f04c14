"""Bulk appends straight through the database driver (SQLite ``executemany``, PostgreSQL ``COPY``),
hashed column-wise: a lake's history of millions of events in one transaction."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Index, Table, text, update
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex

from consentry.consent import reader
from consentry.consent.ledger.chain import (
    LEDGER_CLIENTS,
    SOURCES,
    VALUES,
    later_of,
    lock_heads,
    partition_count,
    partition_of,
)
from consentry.consent.models import ConsentEvent, LedgerHead
from consentry.db import utcnow
from consentry.errors import InvalidInput
from consentry.transparency import store as tree

SUBJECT_INDEX = "ix_consent_events_subject_setting"
REBUILD_INDEX_AT = 50_000


def _subject_index() -> Index:
    """The subject index as the model defines it (a bulk load drops it and creates it again)."""
    table = ConsentEvent.__table__
    assert isinstance(table, Table)
    return next(index for index in table.indexes if index.name == SUBJECT_INDEX)


COLUMNS = (
    "seq",
    "subject_key",
    "setting",
    "value",
    "source",
    "policy_version",
    "recorded_at",
    "client",
    "prev_hash",
    "hash",
)
SAFE_TEXT = r"^[A-Za-z0-9_.:-]*$"
"""Texts that need no escaping in JSON; bulk appends accept only such subjects, settings, sources, clients."""


def _check_table(events: pa.Table) -> None:
    for column, allowed in (("value", VALUES), ("source", SOURCES), ("client", LEDGER_CLIENTS)):
        if not pc.all(pc.is_in(events[column], value_set=pa.array(allowed))).as_py():
            raise InvalidInput(f"every {column} must be one of {', '.join(allowed)}", field=column)
    for column in ("subject", "setting"):
        if (
            events[column].null_count
            or not pc.all(pc.match_substring_regex(events[column], SAFE_TEXT)).as_py()
        ):
            raise InvalidInput(f"{column} values must be plain identifiers", field=column)
    if events["recorded_at"].null_count:
        raise InvalidInput("every event needs recorded_at", field="recorded_at")
    latest = pc.max(events["recorded_at"]).as_py() if events.num_rows else None
    if latest is not None and (latest if latest.tzinfo else latest.replace(tzinfo=UTC)) > utcnow():
        raise InvalidInput(
            f"an event is recorded in the future ({latest.isoformat()}); bulk appends describe the past",
            field="recorded_at",
        )


def _documents(events: pa.Table, first_seq: int, step: int = 1) -> tuple[list[bytes], pa.Array]:
    """Canonical JSON of each event (built column-wise), and its time as the database stores it."""
    micros = pc.cast(events["recorded_at"], pa.int64()).to_numpy(zero_copy_only=False)
    iso = pa.array(np.datetime_as_string(micros.astype("datetime64[us]"), unit="us"))
    version = pc.fill_null(pc.cast(events["policy_version"], pa.string()), "null")
    last = first_seq + events.num_rows * step
    seq = pc.cast(pa.array(np.arange(first_seq, last, step, dtype=np.int64)), pa.string())
    text = pc.binary_join_element_wise(
        '{"client":"',
        events["client"],
        '","policy_version":',
        version,
        ',"recorded_at":"',
        iso,
        'Z","seq":',
        seq,
        ',"setting":"',
        events["setting"],
        '","source":"',
        events["source"],
        '","subject":"',
        events["subject"],
        '","value":"',
        events["value"],
        '"}',
        "",
    )
    documents: list[bytes] = pc.cast(text, pa.binary()).to_pylist()
    return documents, pc.replace_substring(iso, "T", " ")


def _chunk_rows(
    part: pa.Table, first: int, prev: str, step: int = 1
) -> tuple[list[str], list[tuple[Any, ...]], bytes]:
    """The hashes of a chunk continuing the chain from ``prev`` with seqs ``first``, ``first + step``,
    ..., its rows for the driver, and its leaf hashes for the transparency log (concatenated)."""
    documents, stamps = _documents(part, first, step)
    sha256 = hashlib.sha256
    previous = bytes.fromhex(prev)
    links: list[str] = []
    leaves: list[bytes] = []
    for document in documents:
        previous = sha256(previous + document).digest()
        links.append(previous.hex())
        leaves.append(sha256(b"\x00" + document).digest())
    rows = list(
        zip(
            range(first, first + part.num_rows * step, step),
            part["subject"].to_pylist(),
            part["setting"].to_pylist(),
            part["value"].to_pylist(),
            part["source"].to_pylist(),
            part["policy_version"].to_pylist(),
            stamps.to_pylist(),
            part["client"].to_pylist(),
            [prev, *links[:-1]],
            links,
            strict=True,
        )
    )
    return links, rows, b"".join(leaves)


def _write_rows(raw: reader.Connection, dialect: str, rows: list[tuple[Any, ...]]) -> None:
    cursor = raw.cursor()
    try:
        if dialect == "postgresql":
            with cursor.copy(f"COPY consent_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in COLUMNS)
            cursor.executemany(f"INSERT INTO consent_events ({', '.join(COLUMNS)}) VALUES ({marks})", rows)
    finally:
        cursor.close()


def _partitioned(events: pa.Table, count: int) -> list[tuple[int, pa.Table]]:
    """The events of each partition, in the order given."""
    if count == 1:
        return [(0, events)]
    owner = np.fromiter(
        (partition_of(k, count) for k in events["subject"].to_pylist()), dtype=np.int64, count=events.num_rows
    )
    parts = []
    for partition in range(count):
        chosen = np.flatnonzero(owner == partition)
        if len(chosen):
            parts.append((partition, events.take(pa.array(chosen))))
    return parts


def append_table(session: Session, events: pa.Table, *, chunk: int = 200_000) -> tuple[int, str]:
    """Bulk-append events straight through the database driver (SQLite ``executemany``, PostgreSQL
    ``COPY``); returns the head of the (last written) partition. The caller commits. The events become
    leaves of their partition's tree in the same transaction (its tiles written once, at the end).

    ``events`` has the columns ``subject``, ``setting``, ``value``, ``source``, ``client``,
    ``policy_version`` (int, nullable) and ``recorded_at`` (timestamp), in the order to append.
    """
    _check_table(events)
    count = partition_count(session)
    parts = _partitioned(events, count)
    held = lock_heads(session, [p for p, _ in parts] or [0], count=count)
    raw = reader.connection(session)
    dialect = session.get_bind().dialect.name
    rebuild = dialect == "sqlite" and events.num_rows >= REBUILD_INDEX_AT
    if rebuild:  # a large load is faster into the bare table, indexed once afterwards (same transaction)
        session.execute(text(f"DROP INDEX {SUBJECT_INDEX}"))
        # keep the whole load in memory until commit rather than spilling it to the WAL page by page
        # (1 GiB of page cache, on this connection only: bulk imports run in their own process)
        session.execute(text("PRAGMA cache_size=-1048576"))
    # one chunk in flight: the driver writes chunk k while chunk k + 1 is hashed; the connection is
    # never used by both threads at once, and the thread is drained before the transaction goes on
    result = (held[min(held)].seq, held[min(held)].hash)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-bulk") as writer:
        pending: Future[None] | None = None
        try:
            for partition, table in parts:
                head = held[partition]
                seq, prev, first = head.seq, head.hash, head.next_seq
                leaves: list[bytes] = []
                for start in range(0, table.num_rows, chunk):
                    part = table.slice(start, chunk)
                    links, rows, leaf_hashes = _chunk_rows(part, first, prev, count)
                    leaves.append(leaf_hashes)
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(_write_rows, raw, dialect, rows)
                    seq, prev = rows[-1][0], links[-1]
                    first = seq + count
                if pending is not None:  # the session is used below: the driver thread must be idle
                    pending.result()
                    pending = None
                tree.append_leaves(
                    session, head.size, b"".join(leaves), partition=None if count == 1 else partition
                )
                latest = pc.max(table["recorded_at"]).as_py() if table.num_rows else None
                if latest is not None and latest.tzinfo is None:
                    latest = latest.replace(tzinfo=UTC)
                session.execute(
                    update(LedgerHead)
                    .where(LedgerHead.id == partition + 1)
                    .values(seq=seq, hash=prev, recorded_at=later_of(head.recorded_at, latest))
                )
                result = (seq, prev)
        finally:
            if pending is not None:
                pending.result()
    if rebuild:
        session.execute(CreateIndex(_subject_index()))
    return result
