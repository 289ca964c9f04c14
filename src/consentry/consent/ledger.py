"""The consent ledger: an append-only, SHA-256 hash-chained log of consent events.

``hash = SHA-256(prev_hash || canonical JSON of the event)``, where ``prev_hash`` is the 32 raw bytes of
the previous event's hash (32 zero bytes before the first event) and the canonical JSON has sorted keys,
no spaces, UTF-8, and ``recorded_at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

Writers serialise on the ``ledger_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite write
sessions already hold the database write lock), so concurrent appends never fork the chain.

Partitions: a ledger is created with ``P`` partitions (one by default, which is the ledger described
above). Subject key ``k`` belongs to partition ``partition_of(k, P)`` (the first 8 bytes of
``SHA-256(k)``, big-endian, modulo ``P``); each partition has its own head row, hash chain (starting from
``GENESIS``) and Merkle tree, so writers of different partitions never wait for each other. The ``n``-th
event of partition ``p`` has seq ``(n - 1) * P + p + 1``: seq stays a unique event number, the event's
partition is ``(seq - 1) % P`` and its leaf index in that partition's tree ``(seq - 1) // P``. Every event
of one subject is in one partition, so the order of events below holds per subject.

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
from sqlalchemy import Index, Table, bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
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
    chosen_by: str | None = None
    """The subject key of the account that made the choice, when it is not the event's own subject's
    alone (a change applied to every linked account); absent from the hashed form when ``None``."""


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
    chosen_by: str | None = None,
) -> dict[str, Any]:
    """The hashed form of an event, exactly as it appears in receipts.

    ``chosen_by`` appears only when set (events of a change made for linked accounts), so every event
    without it keeps the form, and the hash, it always had.
    """
    document: dict[str, Any] = {
        "seq": seq,
        "subject": subject,
        "setting": setting,
        "value": value,
        "source": source,
        "policy_version": policy_version,
        "recorded_at": recorded_at if isinstance(recorded_at, str) else format_time(recorded_at),
        "client": client,
    }
    if chosen_by is not None:
        document["chosen_by"] = chosen_by
    return document


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
        chosen_by=event.chosen_by,
    )


def new_subject_key() -> str:
    """A fresh opaque subject key (128 random bits, hex)."""
    return secrets.token_hex(16)


def subject_key_for(session: Session, account_id: int, *, create: bool = True) -> str | None:
    """The subject key naming an account in the ledger, created on first use when ``create``."""
    key = session.scalar(select(Subject.subject_key).where(Subject.account_id == account_id))
    if key is not None or not create:
        return key
    # two first changes of one account may race (writers of a partitioned ledger read subject keys
    # before taking any head): the first insert wins, the other reads the key it wrote
    dialect = session.get_bind().dialect.name
    fresh = {"account_id": account_id, "subject_key": new_subject_key()}
    if dialect == "postgresql":
        session.execute(postgresql.insert(Subject).values(**fresh).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(Subject).values(**fresh).on_conflict_do_nothing())
    else:
        session.execute(insert(Subject).values(**fresh))
    key = session.scalar(select(Subject.subject_key).where(Subject.account_id == account_id))
    if key is None:
        raise IntegrityFailure(f"no subject key could be recorded for account {account_id}")
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


def partition_of(subject_key: str, partitions: int) -> int:
    """The partition of a subject key: the first 8 bytes of its SHA-256, big-endian, modulo ``P``."""
    if partitions == 1:
        return 0
    return int.from_bytes(hashlib.sha256(subject_key.encode("utf-8")).digest()[:8], "big") % partitions


def partition_of_seq(seq: int, partitions: int) -> int:
    """The partition holding event ``seq``."""
    return (seq - 1) % partitions


def leaf_index(seq: int, partitions: int) -> int:
    """The index of event ``seq`` in its partition's tree (``seq - 1`` with one partition)."""
    return (seq - 1) // partitions


def seq_of(index: int, partition: int, partitions: int) -> int:
    """The seq of leaf ``index`` of partition ``partition``."""
    return index * partitions + partition + 1


def partition_count(session: Session) -> int:
    """The number of partitions of the ledger (fixed when it was created)."""
    count = session.scalar(select(func.count()).select_from(LedgerHead))
    if not count:
        raise IntegrityFailure("the ledger head row is missing; run 'consentry db upgrade'")
    return int(count)


def set_partitions(session: Session, partitions: int) -> None:
    """Give a new, empty ledger ``partitions`` partitions (fixed from then on). The caller commits."""
    if not 1 <= partitions <= 1024:
        raise InvalidInput("partitions must be between 1 and 1024", field="partitions")
    current = partition_count(session)
    if current == partitions:
        return
    if session.scalar(select(ConsentEvent.seq).limit(1)) is not None:
        raise InvalidInput(
            f"the ledger already holds events in {current} partition(s); the count is fixed at creation",
            field="partitions",
        )
    session.execute(delete(LedgerHead).where(LedgerHead.id > 1))
    session.execute(
        insert(LedgerHead),
        [{"id": p + 1, "seq": 0, "hash": GENESIS, "recorded_at": None} for p in range(1, partitions)],
    )


@dataclass(frozen=True)
class Head:
    """A partition's head: its last event's seq and hash, and the latest time in its chain."""

    seq: int
    hash: str
    recorded_at: datetime | None
    partition: int = 0
    partitions: int = 1

    @property
    def size(self) -> int:
        """The number of events in the partition (its tree's size)."""
        return 0 if self.seq == 0 else leaf_index(self.seq, self.partitions) + 1

    @property
    def next_seq(self) -> int:
        """The seq of the partition's next event."""
        return self.seq + self.partitions if self.seq else self.partition + 1

    def live_time(self, now: datetime | None = None) -> datetime:
        """The time of a live write made while holding this head: now, or the chain's latest time if
        the clock reads earlier (another node's clock ahead, or a clock stepped back)."""
        now = now or utcnow()
        return self.recorded_at if self.recorded_at is not None and self.recorded_at > now else now


_HEAD = select(LedgerHead.seq, LedgerHead.hash, LedgerHead.recorded_at).where(
    LedgerHead.id == bindparam("head_id")
)  # built once: building a statement costs more than running it
_HEAD_FOR_UPDATE = _HEAD.with_for_update()


def _head(session: Session, *, lock: bool, partition: int = 0, partitions: int = 1) -> Head:
    row = session.execute(_HEAD_FOR_UPDATE if lock else _HEAD, {"head_id": partition + 1}).one_or_none()
    if row is None:
        raise IntegrityFailure("the ledger head row is missing; run 'consentry db upgrade'")
    return Head(int(row[0]), str(row[1]), row[2], partition, partitions)


def lock_head(session: Session) -> Head:
    """Lock the head of a single-partition ledger and return it; held until the transaction ends."""
    return _head(session, lock=True)


def lock_heads(session: Session, partitions: Iterable[int], *, count: int | None = None) -> dict[int, Head]:
    """Lock the heads of the given partitions, in partition order (so writers never deadlock), and
    return them; held until the transaction ends."""
    count = count or partition_count(session)
    return {p: _head(session, lock=True, partition=p, partitions=count) for p in sorted(set(partitions))}


def heads(session: Session) -> list[Head]:
    """Every partition's head, in partition order (not locked)."""
    rows = session.execute(
        select(LedgerHead.id, LedgerHead.seq, LedgerHead.hash, LedgerHead.recorded_at).order_by(LedgerHead.id)
    ).all()
    if not rows:
        raise IntegrityFailure("the ledger head row is missing; run 'consentry db upgrade'")
    return [Head(int(seq), str(digest), at, int(key) - 1, len(rows)) for key, seq, digest, at in rows]


def live_time(locked: Iterable[Head], now: datetime | None = None) -> datetime:
    """The time of a live write holding these heads: now, or the latest time in their chains if later."""
    now = now or utcnow()
    for head in locked:
        now = head.live_time(now)
    return now


def current_time(session: Session) -> datetime:
    """The time that stands for now when reading the current state: never before the latest time in
    the ledger, so a reader always sees the last live write even when the writer's clock was ahead."""
    latest = session.scalar(select(func.max(LedgerHead.recorded_at)))
    now = utcnow()
    return latest if latest is not None and latest > now else now


def _later(first: datetime | None, second: datetime | None) -> datetime | None:
    if first is None or second is None:
        return first or second
    return max(first, second)


def _link(
    events: Iterable[NewEvent], first: int, prev: str, step: int = 1
) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Validate events and give each its seq (``first``, then every ``step``), prev_hash and hash;
    yields each row with its canonical JSON (the bytes hashed into the chain, and the event's leaf
    entry in the transparency log)."""
    sha256 = hashlib.sha256
    dumps = functools.partial(json.dumps, ensure_ascii=False)
    seq = first - step
    for event in events:
        _validate(event)
        seq += step
        stamp = format_time(event.recorded_at)
        version = "null" if event.policy_version is None else int(event.policy_version)
        chosen = "" if event.chosen_by is None else f'"chosen_by":{dumps(event.chosen_by)},'
        document = (  # canonical JSON written out: avoids building and sorting a dict per event
            f'{{{chosen}"client":{dumps(event.client)},"policy_version":{version},"recorded_at":"{stamp}",'
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
                "chosen_by": event.chosen_by,
                "prev_hash": prev,
                "hash": digest,
            },
            document,
        )
        prev = digest


def link_events(events: Iterable[NewEvent], seq: int, prev: str) -> Iterator[dict[str, Any]]:
    """Validate events and give each its seq, prev_hash and hash, continuing from ``(seq, prev)``."""
    for row, _ in _link(events, seq + 1, prev):
        yield row


def append(
    session: Session,
    events: Sequence[NewEvent],
    *,
    head: Head | None = None,
    heads: dict[int, Head] | None = None,
) -> list[ConsentEvent]:
    """Append events and return them, in the order given, with seq and hashes. The caller commits.

    ``heads`` are the partition heads this transaction already locked (live writes lock them first, to
    take their time under them; ``head``: the one head of a single-partition ledger); the heads of
    other partitions the events need are locked here, after everything is validated. Each event also
    becomes the next leaf of its partition's tree, in the same transaction.
    """
    for event in events:
        _validate(event)
    held = dict(heads or {})
    if head is not None:
        held[head.partition] = head
    count = next(iter(held.values())).partitions if held else partition_count(session)
    groups: dict[int, list[int]] = {}
    for index, event in enumerate(events):
        groups.setdefault(partition_of(event.subject_key, count), []).append(index)
    missing = set(groups) - set(held)
    if missing:
        held.update(lock_heads(session, missing, count=count))
    out: list[ConsentEvent | None] = [None] * len(events)
    rows: list[dict[str, Any]] = []
    sha256 = hashlib.sha256
    for partition in sorted(groups):
        at = held[partition]
        chosen = [events[i] for i in groups[partition]]
        linked = list(_link(chosen, at.next_seq, at.hash, count))
        rows.extend(row for row, _ in linked)
        for index, (row, _) in zip(groups[partition], linked, strict=True):
            out[index] = ConsentEvent(**row)
        tree.append_leaves(
            session,
            at.size,
            b"".join(sha256(b"\x00" + doc).digest() for _, doc in linked),
            partition=None if count == 1 else partition,
        )
        last = linked[-1][0]
        session.execute(
            update(LedgerHead)
            .where(LedgerHead.id == partition + 1)
            .values(
                seq=last["seq"],
                hash=last["hash"],
                recorded_at=_later(at.recorded_at, max(event.recorded_at for event in chosen)),
            )
        )
    if rows:
        session.execute(insert(ConsentEvent), rows)
    return [event for event in out if event is not None]


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
                    .values(seq=seq, hash=prev, recorded_at=_later(head.recorded_at, latest))
                )
                result = (seq, prev)
        finally:
            if pending is not None:
                pending.result()
    if rebuild:
        session.execute(CreateIndex(_subject_index()))
    return result


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
    """Recompute every partition's chain; names the first seq that was edited, removed, inserted or
    reordered.

    ``first_bad_seq`` is always a seq the problem is about: an event that exists (edited, inserted,
    out of place) or a seq a head promises and the chain lacks; a problem with a head row alone
    has ``first_bad_seq`` ``None``. ``on_entry`` is told each verified event's seq and entry (its
    canonical JSON), in seq order (the transparency log's audit uses it). The head reported is the
    one holding the greatest seq (the only one, with a single partition).
    """
    try:
        held = heads(session)
    except IntegrityFailure:
        return VerifyReport(False, 0, 0, GENESIS, None, "the ledger head row is missing")
    parts = len(held)
    top = max(held, key=lambda h: h.seq)
    head_seq, head_hash = top.seq, top.hash
    expected = [p + 1 for p in range(parts)]
    prevs = [GENESIS] * parts
    count = 0
    sha256 = hashlib.sha256
    for event in _stream(session, batch):
        count += 1
        p = partition_of_seq(event.seq, parts)
        expected_seq, prev, own = expected[p], prevs[p], held[p].seq
        if event.seq != expected_seq:
            bad = min(event.seq, expected_seq)
            return VerifyReport(False, count, head_seq, head_hash, bad, f"seq {expected_seq} is missing")
        if event.seq > own:
            return VerifyReport(
                False,
                count,
                head_seq,
                head_hash,
                event.seq,
                f"event {event.seq} is after the head (seq {own}): it was added outside the ledger",
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
        prevs[p] = event.hash
        expected[p] += parts
    for head in held:
        last = max(expected[head.partition] - parts, 0)
        where = f" of partition {head.partition}" if parts > 1 else ""
        if last < head.seq:
            after = last + parts if last else head.partition + 1
            missing = f"seq {head.seq} is" if after == head.seq else f"seqs {after} to {head.seq}{where} are"
            return VerifyReport(
                False,
                count,
                head_seq,
                head_hash,
                after,
                f"{missing} missing: the chain ends at seq {last} but the head{where} names seq {head.seq}",
            )
        if prevs[head.partition] != head.hash:
            return VerifyReport(
                False,
                count,
                head_seq,
                head_hash,
                None,
                f"the head{where} names hash {head.hash} for seq {head.seq}, but event {head.seq} has hash "
                f"{prevs[head.partition]}"
                if head.seq
                else f"the head of the empty ledger{where} names hash {head.hash}, not the genesis hash",
            )
    return VerifyReport(True, count, head_seq, head_hash)
