"""The consent ledger: an append-only, SHA-256 hash-chained log of consent events.

``hash = SHA-256(prev_hash || canonical JSON of the event)``, where ``prev_hash`` is the 32 raw bytes of
the previous event's hash (32 zero bytes before the first event) and the canonical JSON has sorted keys,
no spaces, UTF-8, and ``recorded_at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

Writers serialise on the single ``ledger_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
write sessions already hold the database write lock), so concurrent appends never fork the chain.

Order of events (DESIGN.md): "latest" is the greatest ``(recorded_at, seq)``. A live write takes its time
while it holds the head, and never earlier than the latest time already in the chain (kept on the head
row), so for live writes seq order and time order are the same and the state is the last event. A bulk
import carries historic times, which it may not place in the future; its events rank by their own times,
so an import describes the past and never overrides a choice recorded live after the times it carries.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Index, Table, insert, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex

from consentry.consent.models import ConsentEvent, LedgerHead, Subject
from consentry.db import utcnow
from consentry.errors import IntegrityFailure, InvalidInput
from consentry.transparency import store as tree

GENESIS = "0" * 64
SOURCES = ("user", "gpc", "admin", "import", "system")
LEDGER_CLIENTS = ("web", "ios", "android", "api", "admin", "import")
VALUES = ("allow", "deny")


@dataclass(frozen=True)
class NewEvent:
    """An event about to be appended (the ledger assigns its seq and hashes)."""

    subject_key: str
    setting: str
    value: str
    source: str
    policy_version: int | None
    recorded_at: datetime
    client: str


def format_time(at: datetime) -> str:
    """The canonical text of a timestamp: UTC, microseconds, ``Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_document(
    *,
    seq: int,
    subject: str,
    setting: str,
    value: str,
    source: str,
    policy_version: int | None,
    recorded_at: datetime | str,
    client: str,
) -> dict[str, Any]:
    """The hashed form of an event, exactly as it appears in receipts."""
    return {
        "seq": seq,
        "subject": subject,
        "setting": setting,
        "value": value,
        "source": source,
        "policy_version": policy_version,
        "recorded_at": recorded_at if isinstance(recorded_at, str) else format_time(recorded_at),
        "client": client,
    }


def canonical_json(document: Any) -> bytes:
    """Canonical JSON: sorted keys, no insignificant spaces, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def chain_hash(prev_hash: str, document: dict[str, Any]) -> str:
    """``SHA-256(prev_hash || canonical JSON)`` as lowercase hex."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_json(document)).hexdigest()


def document_of(event: ConsentEvent) -> dict[str, Any]:
    """The hashed form of a stored event."""
    return event_document(
        seq=event.seq,
        subject=event.subject_key,
        setting=event.setting,
        value=event.value,
        source=event.source,
        policy_version=event.policy_version,
        recorded_at=event.recorded_at,
        client=event.client,
    )


def new_subject_key() -> str:
    """A fresh opaque subject key (128 random bits, hex)."""
    return secrets.token_hex(16)


def subject_key_for(session: Session, account_id: int, *, create: bool = True) -> str | None:
    """The subject key naming an account in the ledger, created on first use when ``create``."""
    key = session.scalar(select(Subject.subject_key).where(Subject.account_id == account_id))
    if key is not None or not create:
        return key
    key = new_subject_key()
    session.execute(insert(Subject).values(account_id=account_id, subject_key=key))
    return key


def _validate(event: NewEvent) -> None:
    if event.value not in VALUES:
        raise InvalidInput(f"value must be allow or deny, not {event.value!r}", field="value")
    if event.source not in SOURCES:
        raise InvalidInput(f"source must be one of {', '.join(SOURCES)}", field="source")
    if event.client not in LEDGER_CLIENTS:
        raise InvalidInput(f"client must be one of {', '.join(LEDGER_CLIENTS)}", field="client")
    if event.recorded_at.tzinfo is None:
        raise InvalidInput("recorded_at must carry a time zone", field="recorded_at")


@dataclass(frozen=True)
class Head:
    """The ledger head: the last event's seq and hash, and the latest time in the chain."""

    seq: int
    hash: str
    recorded_at: datetime | None

    def live_time(self, now: datetime | None = None) -> datetime:
        """The time of a live write made while holding this head: now, or the chain's latest time if
        the clock reads earlier (another node's clock ahead, or a clock stepped back)."""
        now = now or utcnow()
        return self.recorded_at if self.recorded_at is not None and self.recorded_at > now else now


def _head(session: Session, *, lock: bool) -> Head:
    query = select(LedgerHead.seq, LedgerHead.hash, LedgerHead.recorded_at).where(LedgerHead.id == 1)
    row = session.execute(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise IntegrityFailure("the ledger head row is missing; run 'consentry db upgrade'")
    return Head(int(row[0]), str(row[1]), row[2])


def lock_head(session: Session) -> Head:
    """Lock the ledger head and return it; held until the transaction ends."""
    return _head(session, lock=True)


def current_time(session: Session) -> datetime:
    """The time that stands for now when reading the current state: never before the latest time in
    the chain, so a reader always sees the last live write even when the writer's clock was ahead."""
    return _head(session, lock=False).live_time()


def _later(first: datetime | None, second: datetime | None) -> datetime | None:
    if first is None or second is None:
        return first or second
    return max(first, second)


def _link(events: Iterable[NewEvent], seq: int, prev: str) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Validate events and give each its seq, prev_hash and hash; yields each row with its canonical
    JSON (the bytes hashed into the chain, and the event's leaf entry in the transparency log)."""
    sha256 = hashlib.sha256
    dumps = functools.partial(json.dumps, ensure_ascii=False)
    for event in events:
        _validate(event)
        seq += 1
        stamp = format_time(event.recorded_at)
        version = "null" if event.policy_version is None else int(event.policy_version)
        document = (  # canonical JSON written out: avoids building and sorting a dict per event
            f'{{"client":{dumps(event.client)},"policy_version":{version},"recorded_at":"{stamp}",'
            f'"seq":{seq},"setting":{dumps(event.setting)},"source":{dumps(event.source)},'
            f'"subject":{dumps(event.subject_key)},"value":"{event.value}"}}'
        ).encode()
        digest = sha256(bytes.fromhex(prev) + document).hexdigest()
        yield (
            {
                "seq": seq,
                "subject_key": event.subject_key,
                "setting": event.setting,
                "value": event.value,
                "source": event.source,
                "policy_version": event.policy_version,
                "recorded_at": event.recorded_at,
                "client": event.client,
                "prev_hash": prev,
                "hash": digest,
            },
            document,
        )
        prev = digest


def link_events(events: Iterable[NewEvent], seq: int, prev: str) -> Iterator[dict[str, Any]]:
    """Validate events and give each its seq, prev_hash and hash, continuing from ``(seq, prev)``."""
    for row, _ in _link(events, seq, prev):
        yield row


def append(session: Session, events: Sequence[NewEvent], *, head: Head | None = None) -> list[ConsentEvent]:
    """Append events in order and return them with seq and hashes. The caller commits.

    ``head`` is the head this transaction already locked (live writes lock it first, to take their
    time under it); without it the head is locked here, after everything is validated. Each event
    also becomes the next leaf of the transparency log's tree, in the same transaction.
    """
    for event in events:
        _validate(event)
    head = head or lock_head(session)
    linked = list(_link(events, head.seq, head.hash))
    rows = [row for row, _ in linked]
    if rows:
        session.execute(insert(ConsentEvent), rows)
        sha256 = hashlib.sha256
        tree.append_leaves(session, head.seq, b"".join(sha256(b"\x00" + doc).digest() for _, doc in linked))
        session.execute(
            update(LedgerHead)
            .where(LedgerHead.id == 1)
            .values(
                seq=rows[-1]["seq"],
                hash=rows[-1]["hash"],
                recorded_at=_later(head.recorded_at, max(event.recorded_at for event in events)),
            )
        )
    return [ConsentEvent(**row) for row in rows]


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


def _documents(events: pa.Table, first_seq: int) -> tuple[list[bytes], pa.Array]:
    """Canonical JSON of each event (built column-wise), and its time as the database stores it."""
    micros = pc.cast(events["recorded_at"], pa.int64()).to_numpy(zero_copy_only=False)
    iso = pa.array(np.datetime_as_string(micros.astype("datetime64[us]"), unit="us"))
    version = pc.fill_null(pc.cast(events["policy_version"], pa.string()), "null")
    seq = pc.cast(pa.array(np.arange(first_seq, first_seq + events.num_rows, dtype=np.int64)), pa.string())
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


def _chunk_rows(part: pa.Table, seq: int, prev: str) -> tuple[list[str], list[tuple[Any, ...]], bytes]:
    """The hashes of a chunk continuing the chain from ``(seq, prev)``, its rows for the driver, and
    its leaf hashes for the transparency log (concatenated)."""
    documents, stamps = _documents(part, seq + 1)
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
            range(seq + 1, seq + 1 + part.num_rows),
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


def _write_rows(raw: Any, dialect: str, rows: list[tuple[Any, ...]]) -> None:
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


def append_table(session: Session, events: pa.Table, *, chunk: int = 200_000) -> tuple[int, str]:
    """Bulk-append events straight through the database driver (SQLite ``executemany``, PostgreSQL
    ``COPY``); returns the new head. The caller commits. The events become leaves of the transparency
    log's tree in the same transaction (its tiles written once, at the end).

    ``events`` has the columns ``subject``, ``setting``, ``value``, ``source``, ``client``,
    ``policy_version`` (int, nullable) and ``recorded_at`` (timestamp), in the order to append.
    """
    _check_table(events)
    head = lock_head(session)
    seq, prev = head.seq, head.hash
    raw: Any = session.connection().connection.dbapi_connection
    dialect = session.get_bind().dialect.name
    rebuild = dialect == "sqlite" and events.num_rows >= REBUILD_INDEX_AT
    if rebuild:  # a large load is faster into the bare table, indexed once afterwards (same transaction)
        session.execute(text(f"DROP INDEX {SUBJECT_INDEX}"))
        # keep the whole load in memory until commit rather than spilling it to the WAL page by page
        # (1 GiB of page cache, on this connection only: bulk imports run in their own process)
        session.execute(text("PRAGMA cache_size=-1048576"))
    # one chunk in flight: the driver writes chunk k while chunk k + 1 is hashed; the connection is
    # never used by both threads at once, and the thread is drained before the transaction goes on
    leaves: list[bytes] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-bulk") as writer:
        pending: Future[None] | None = None
        try:
            for start in range(0, events.num_rows, chunk):
                part = events.slice(start, chunk)
                links, rows, leaf_hashes = _chunk_rows(part, seq, prev)
                leaves.append(leaf_hashes)
                if pending is not None:
                    pending.result()
                pending = writer.submit(_write_rows, raw, dialect, rows)
                seq, prev = seq + part.num_rows, links[-1]
        finally:
            if pending is not None:
                pending.result()
    if rebuild:
        session.execute(CreateIndex(_subject_index()))
    tree.append_leaves(session, head.seq, b"".join(leaves))
    latest = pc.max(events["recorded_at"]).as_py() if events.num_rows else None
    if latest is not None and latest.tzinfo is None:
        latest = latest.replace(tzinfo=UTC)
    session.execute(
        update(LedgerHead)
        .where(LedgerHead.id == 1)
        .values(seq=seq, hash=prev, recorded_at=_later(head.recorded_at, latest))
    )
    return seq, prev


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of verifying the chain."""

    ok: bool
    events: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None


def _stream(session: Session, batch: int) -> Iterator[ConsentEvent]:
    after = 0
    while True:
        rows = session.scalars(
            select(ConsentEvent).where(ConsentEvent.seq > after).order_by(ConsentEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def verify(
    session: Session, *, batch: int = 5_000, on_entry: Callable[[int, bytes], None] | None = None
) -> VerifyReport:
    """Recompute the whole chain; names the first seq that was edited, removed, inserted or reordered.

    ``first_bad_seq`` is always a seq the problem is about: an event that exists (edited, inserted,
    out of place) or a seq the head promises and the chain lacks; a problem with the head row alone
    has ``first_bad_seq`` ``None``. ``on_entry`` is told each verified event's seq and entry (its
    canonical JSON), in seq order (the transparency log's audit uses it).
    """
    head = session.get(LedgerHead, 1)
    if head is None:
        return VerifyReport(False, 0, 0, GENESIS, None, "the ledger head row is missing")
    head_seq, head_hash = head.seq, head.hash
    expected_seq, prev, count = 1, GENESIS, 0
    sha256 = hashlib.sha256
    for event in _stream(session, batch):
        count += 1
        if event.seq != expected_seq:
            bad = min(event.seq, expected_seq)
            return VerifyReport(False, count, head_seq, head_hash, bad, f"seq {expected_seq} is missing")
        if event.seq > head_seq:
            return VerifyReport(
                False,
                count,
                head_seq,
                head_hash,
                event.seq,
                f"event {event.seq} is after the head (seq {head_seq}): it was added outside the ledger",
            )
        if event.prev_hash != prev:
            return VerifyReport(
                False, count, head_seq, head_hash, event.seq, "prev_hash does not match the previous event"
            )
        entry = canonical_json(document_of(event))
        if sha256(bytes.fromhex(prev) + entry).hexdigest() != event.hash:
            return VerifyReport(
                False, count, head_seq, head_hash, event.seq, "hash does not match the event's content"
            )
        if on_entry is not None:
            on_entry(event.seq, entry)
        prev = event.hash
        expected_seq += 1
    last = expected_seq - 1
    if last < head_seq:
        missing = f"seq {head_seq} is" if last + 1 == head_seq else f"seqs {last + 1} to {head_seq} are"
        return VerifyReport(
            False,
            count,
            head_seq,
            head_hash,
            last + 1,
            f"{missing} missing: the chain ends at seq {last} but the head names seq {head_seq}",
        )
    if prev != head_hash:
        return VerifyReport(
            False,
            count,
            head_seq,
            head_hash,
            None,
            f"the head names hash {head_hash} for seq {head_seq}, but event {head_seq} has hash {prev}"
            if head_seq
            else f"the head of the empty ledger names hash {head_hash}, not the genesis hash",
        )
    return VerifyReport(True, count, head_seq, head_hash)
