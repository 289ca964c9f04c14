"""The chain: events, their canonical form and hash, subject keys, partitions, heads, live appends.

The rules (hashing, partitions, the order of events) are stated in the package's docstring.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

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


class EventRecord(Protocol):
    """What the hashed form of an event is made of: a stored event, or one just appended."""

    @property
    def seq(self) -> int: ...
    @property
    def subject_key(self) -> str: ...
    @property
    def setting(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def policy_version(self) -> int | None: ...
    @property
    def recorded_at(self) -> datetime: ...
    @property
    def client(self) -> str: ...
    @property
    def chosen_by(self) -> str | None: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Appended:
    """An event as an append wrote it: the stored row's values (a plain record, not an ORM object:
    making thousands of those per second costs more than writing them)."""

    seq: int
    subject_key: str
    setting: str
    value: str
    source: str
    policy_version: int | None
    recorded_at: datetime
    client: str
    chosen_by: str | None
    prev_hash: str
    hash: str


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


def document_of(event: EventRecord) -> dict[str, Any]:
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


def new_subject_key(*, partition: int | None = None, partitions: int = 1) -> str:
    """A fresh opaque subject key (128 random bits, hex); with ``partition``, one that falls in that
    partition of ``partitions`` (keys are drawn until one does: ``partitions`` draws on average)."""
    while True:
        key = secrets.token_hex(16)
        if partition is None or partition_of(key, partitions) == partition:
            return key


def subject_keys(session: Session, account_ids: Sequence[int]) -> dict[int, str]:
    """The subject keys of these accounts (those that have one)."""
    if not account_ids:
        return {}
    rows = session.execute(
        select(Subject.account_id, Subject.subject_key).where(Subject.account_id.in_(list(account_ids)))
    ).all()
    return {int(account_id): str(key) for account_id, key in rows}


def subject_key_for(
    session: Session,
    account_id: int,
    *,
    create: bool = True,
    partition: int | None = None,
    partitions: int = 1,
) -> str | None:
    """The subject key naming an account in the ledger, created on first use when ``create`` (in
    ``partition`` of ``partitions`` when given: the writer of one partition makes keys of its own)."""
    key = session.scalar(select(Subject.subject_key).where(Subject.account_id == account_id))
    if key is not None or not create:
        return key
    # two first changes of one account may race (writers of a partitioned ledger read subject keys
    # before taking any head): the first insert wins, the other reads the key it wrote
    dialect = session.get_bind().dialect.name
    fresh = {
        "account_id": account_id,
        "subject_key": new_subject_key(partition=partition, partitions=partitions),
    }
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


def subject_keys_for(
    session: Session, account_ids: Iterable[int], *, partition: int | None = None, partitions: int = 1
) -> dict[int, str]:
    """The subject keys of accounts, made for those that have none (in ``partition`` of
    ``partitions`` when given), in two statements however many accounts: one insert that keeps every
    key already recorded (its own race with another writer included), one read."""
    wanted = sorted(set(account_ids))
    if not wanted:
        return {}
    fresh = [
        {"account_id": a, "subject_key": new_subject_key(partition=partition, partitions=partitions)}
        for a in wanted
    ]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(Subject).on_conflict_do_nothing(), fresh)
    elif dialect == "sqlite":
        session.execute(sqlite.insert(Subject).on_conflict_do_nothing(), fresh)
    else:
        for account_id in wanted:
            subject_key_for(session, account_id, partition=partition, partitions=partitions)
    rows = session.execute(
        select(Subject.account_id, Subject.subject_key).where(Subject.account_id.in_(wanted))
    )
    keys = {int(account_id): str(key) for account_id, key in rows}
    if len(keys) != len(wanted):
        raise IntegrityFailure(f"no subject key could be recorded for {len(wanted) - len(keys)} account(s)")
    return keys


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


def later_of(first: datetime | None, second: datetime | None) -> datetime | None:
    """The later of two times, either of which may be missing."""
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


_FRONTIERS: dict[tuple[str, int], dict[int, bytes]] = {}
"""The partial tiles of a partition's tree after this process appended to it, by the head's hash and
the tree's size: a head hash commits to every event of its chain, hence to every leaf, so the tiles it
names are right whichever transaction wrote them, even one rolled back. The next append from that head
need not read them again."""
KEEP_FRONTIERS = 4096


def _remember_frontier(head_hash: str, writes: tree.TileWrites) -> None:
    if len(_FRONTIERS) >= KEEP_FRONTIERS:
        _FRONTIERS.clear()
    _FRONTIERS[head_hash, writes.size] = writes.frontier


_EVENT_COLUMNS = (
    "seq",
    "subject_key",
    "setting",
    "value",
    "source",
    "policy_version",
    "recorded_at",
    "client",
    "chosen_by",
    "prev_hash",
    "hash",
)
_INSERT_EVENTS = (
    f"INSERT INTO consent_events ({', '.join(_EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('%s' for _ in _EVENT_COLUMNS)})"
)
_MOVE_HEAD = "UPDATE ledger_head SET seq = %s, hash = %s, recorded_at = %s WHERE id = %s"
_GROW = {
    None: "UPDATE tlog_tiles SET data = %s WHERE level = %s AND idx = %s",
    "partition": "UPDATE tlog_partition_tiles SET data = %s WHERE partition = %s AND level = %s AND idx = %s",
}
_ADD = {
    None: "INSERT INTO tlog_tiles (level, idx, data) VALUES (%s, %s, %s)",
    "partition": "INSERT INTO tlog_partition_tiles (partition, level, idx, data) VALUES (%s, %s, %s, %s)",
}


def _naive(at: datetime | None) -> datetime | None:
    """A time as the database stores it (naive UTC, as ``UTCDateTime`` writes it)."""
    return None if at is None else at.astimezone(UTC).replace(tzinfo=None)


def _write_pipelined(
    session: Session,
    rows: list[dict[str, Any]],
    tiles: list[tuple[int | None, tree.TileWrites]],
    moved: list[tuple[int, dict[str, Any]]],
) -> None:
    """PostgreSQL: every write of an append (tiles, heads, events) sent at once through the driver's
    pipeline, in the session's transaction: one round trip instead of one per statement."""
    connection = session.connection()
    raw: Any = connection.connection.dbapi_connection
    try:
        _send(raw, rows, tiles, moved)
    except connection.dialect.loaded_dbapi.Error as error:  # raised as SQLAlchemy would raise it
        if raw.closed:
            connection.invalidate(error)
        raise sa_exc.DBAPIError.instance(
            "ledger append (pipeline)",
            None,
            error,
            connection.dialect.loaded_dbapi.Error,
            connection_invalidated=bool(raw.closed),
            dialect=connection.dialect,
        ) from error


def _send(
    raw: Any,
    rows: list[dict[str, Any]],
    tiles: list[tuple[int | None, tree.TileWrites]],
    moved: list[tuple[int, dict[str, Any]]],
) -> None:
    with raw.pipeline(), raw.cursor() as cursor:
        for where, writes in tiles:
            kind = None if where is None else "partition"
            place = () if where is None else (where,)
            if writes.grown:
                cursor.executemany(_GROW[kind], [(tile, *place, lv, ix) for lv, ix, tile in writes.grown])
            if writes.fresh:
                cursor.executemany(_ADD[kind], [(*place, lv, ix, tile) for lv, ix, tile in writes.fresh])
        cursor.executemany(
            _MOVE_HEAD, [(v["seq"], v["hash"], _naive(v["recorded_at"]), key) for key, v in moved]
        )
        if rows:
            cursor.executemany(
                _INSERT_EVENTS,
                [
                    tuple(_naive(row[c]) if c == "recorded_at" else row[c] for c in _EVENT_COLUMNS)
                    for row in rows
                ],
            )


def append(
    session: Session,
    events: Sequence[NewEvent],
    *,
    head: Head | None = None,
    heads: dict[int, Head] | None = None,
) -> list[Appended]:
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
    out: list[Appended | None] = [None] * len(events)
    rows: list[dict[str, Any]] = []
    tiles: list[tuple[int | None, tree.TileWrites]] = []
    moved: list[tuple[int, dict[str, Any]]] = []  # each partition's head: its id, its new values
    sha256 = hashlib.sha256
    for partition in sorted(groups):
        at = held[partition]
        chosen = [events[i] for i in groups[partition]]
        linked = list(_link(chosen, at.next_seq, at.hash, count))
        rows.extend(row for row, _ in linked)
        for index, (row, _) in zip(groups[partition], linked, strict=True):
            out[index] = Appended(**row)
        last = linked[-1][0]
        where = None if count == 1 else partition
        writes = tree.plan_append(
            session,
            at.size,
            b"".join(sha256(b"\x00" + doc).digest() for _, doc in linked),
            partition=where,
            frontier=_FRONTIERS.get((at.hash, at.size)),
        )
        _remember_frontier(last["hash"], writes)
        tiles.append((where, writes))
        later = later_of(at.recorded_at, max(event.recorded_at for event in chosen))
        moved.append((partition + 1, {"seq": last["seq"], "hash": last["hash"], "recorded_at": later}))
    if session.get_bind().dialect.name == "postgresql":
        _write_pipelined(session, rows, tiles, moved)
    else:
        for where, writes in tiles:
            tree.write_tiles(session, writes, partition=where)
        for key, values in moved:
            session.execute(update(LedgerHead).where(LedgerHead.id == key).values(**values))
        if rows:
            session.execute(insert(ConsentEvent), rows)
    return [event for event in out if event is not None]
