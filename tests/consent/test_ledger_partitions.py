"""A partitioned ledger: subjects spread over P chains and trees, each verifiable on its own, and the
state of every subject still its last event (DESIGN.md, "Order of events")."""

from __future__ import annotations

import hashlib
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from consentry.consent import ledger, service
from consentry.consent.ledger import NewEvent
from consentry.consent.models import ConsentEvent
from consentry.consent.receipts import verify_receipt
from consentry.consent.service import ChangeRequest, ConsentContext
from consentry.consent.writer import ConsentWriter
from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.transparency import store
from tests.conftest import make_account

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTING = "assistant_training_posts"


def event(i: int, subject: str, value: str = "deny") -> NewEvent:
    return NewEvent(subject, SETTING, value, "user", 1, T0 + timedelta(seconds=i), "ios")


def partitioned(database: Database, count: int) -> None:
    with database.write() as session:
        ledger.set_partitions(session, count)


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, written out recursively (independent of the tile store)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


class Row(NamedTuple):
    seq: int
    subject_key: str
    value: str
    recorded_at: datetime
    prev_hash: str
    hash: str


def check_partitions(database: Database, count: int) -> list[Row]:
    """Every partition's chain and tree verify, and its events have the partition's seqs."""
    with database.read() as session:
        report = ledger.verify(session)
        assert report.ok, report
        heads = ledger.heads(session)
        assert [h.partition for h in heads] == list(range(count))
        events = list(session.scalars(select(ConsentEvent).order_by(ConsentEvent.seq)))
        for head in heads:
            mine = [e for e in events if ledger.partition_of(e.subject_key, count) == head.partition]
            assert [e.seq for e in mine] == [
                ledger.seq_of(i, head.partition, count) for i in range(len(mine))
            ]
            assert head.size == len(mine)
            entries = [ledger.canonical_json(ledger.document_of(e)) for e in mine]
            assert store.root(session, head.size, partition=head.partition) == mth(entries)
        return [Row(e.seq, e.subject_key, e.value, e.recorded_at, e.prev_hash, e.hash) for e in events]


def test_the_count_is_fixed_when_the_ledger_is_created(database: Database) -> None:
    with pytest.raises(InvalidInput) as error, database.write() as session:
        ledger.set_partitions(session, 0)
    assert error.value.field == "partitions"
    partitioned(database, 4)
    with database.read() as session:
        assert ledger.partition_count(session) == 4
    with database.write() as session:
        ledger.append(session, [event(0, "a")])
    with pytest.raises(InvalidInput, match="fixed at creation"), database.write() as session:
        ledger.set_partitions(session, 2)
    with database.read() as session:
        assert ledger.partition_count(session) == 4


def test_a_single_partition_keeps_the_plain_ledger(database: Database) -> None:
    with database.write() as session:
        rows = ledger.append(session, [event(i, f"s{i}") for i in range(5)])
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    with database.read() as session:
        assert session.scalar(sa.text("SELECT count(*) FROM tlog_partition_tiles")) == 0
        assert store.root(session, 5) == mth([ledger.canonical_json(ledger.document_of(r)) for r in rows])


def test_events_spread_over_partitions_with_their_own_chains(database: Database) -> None:
    partitioned(database, 4)
    subjects = [f"subject-{n}" for n in range(12)]
    assert len({ledger.partition_of(s, 4) for s in subjects}) == 4
    with database.write() as session:
        batch = [event(i, subjects[i % 12], "allow" if i % 3 else "deny") for i in range(30)]
        rows = ledger.append(session, batch)
    # returned in the order given, each with its partition's next seq
    assert [(r.subject_key, r.value) for r in rows] == [(e.subject_key, e.value) for e in batch]
    assert all(ledger.partition_of_seq(r.seq, 4) == ledger.partition_of(r.subject_key, 4) for r in rows)
    with database.write() as session:
        ledger.append(session, [event(40 + i, subjects[i]) for i in range(12)])
    events = check_partitions(database, 4)
    assert len(events) == 42
    firsts = [e for e in events if e.prev_hash == ledger.GENESIS]
    assert len(firsts) == 4  # one chain per partition


def test_tampering_in_one_partition_is_named(database: Database) -> None:
    partitioned(database, 3)
    with database.write() as session:
        rows = ledger.append(session, [event(i, f"s{i % 7}") for i in range(21)])
    victim = rows[10].seq
    with database.write() as session:
        session.execute(sa.update(ConsentEvent).where(ConsentEvent.seq == victim).values(value="allow"))
    with database.read() as session:
        report = ledger.verify(session)
    assert not report.ok and report.first_bad_seq == victim


def test_a_removed_last_event_is_named(database: Database) -> None:
    partitioned(database, 3)
    with database.write() as session:
        rows = ledger.append(session, [event(i, f"s{i % 7}") for i in range(21)])
    last = max(rows, key=lambda r: r.seq)
    with database.write() as session:
        session.execute(sa.delete(ConsentEvent).where(ConsentEvent.seq == last.seq))
    with database.read() as session:
        report = ledger.verify(session)
    assert not report.ok and report.first_bad_seq == last.seq


def test_bulk_appends_match_single_appends(database: Database) -> None:
    events = [event(i, f"b{i % 5}", "allow" if i % 2 else "deny") for i in range(60)]
    table = pa.table(
        {
            "subject": [e.subject_key for e in events],
            "setting": [e.setting for e in events],
            "value": [e.value for e in events],
            "source": [e.source for e in events],
            "client": [e.client for e in events],
            "policy_version": pa.array([e.policy_version for e in events], pa.int64()),
            "recorded_at": pa.array([e.recorded_at for e in events], pa.timestamp("us", tz="UTC")),
        }
    )
    partitioned(database, 4)
    with database.write() as session:
        ledger.append_table(session, table.slice(0, 25), chunk=7)
        ledger.append_table(session, table.slice(25), chunk=7)
    bulk = [(e.seq, e.hash) for e in check_partitions(database, 4)]
    with database.write() as session:
        session.execute(sa.delete(ConsentEvent))
        session.execute(sa.text("DELETE FROM tlog_partition_tiles"))
        session.execute(
            sa.text("UPDATE ledger_head SET seq = 0, hash = :h, recorded_at = NULL"), {"h": ledger.GENESIS}
        )
    with database.write() as session:
        ledger.append(session, events[:30])
    with database.write() as session:
        ledger.append(session, events[30:])
    single = [(e.seq, e.hash) for e in check_partitions(database, 4)]
    assert bulk == single


def test_concurrent_writers_never_fork_a_partition(database: Database) -> None:
    partitioned(database, 4)
    last: dict[str, str] = {}

    def writer(n: int) -> None:
        rng = random.Random(n)
        for i in range(10):
            value = rng.choice(["allow", "deny"])
            with database.write() as session:
                ledger.append(session, [event(i, f"w{n}", value)])
            last[f"w{n}"] = value

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = check_partitions(database, 4)
    assert len(events) == 80
    final = {}
    for e in sorted(events, key=lambda e: (e.recorded_at, e.seq)):
        final[e.subject_key] = e.value
    assert final == last


def test_live_changes_keep_the_state_equal_to_the_last_event(database: Database, ctx: ConsentContext) -> None:
    partitioned(database, 4)
    accounts = [make_account(database, handle=f"p{n}", country="US")[0] for n in range(10)]
    chosen: dict[int, str] = {}
    writer = ConsentWriter(database, ctx)
    rng = random.Random(7)

    def client(account_id: int) -> None:
        for _ in range(6):
            value = rng.choice(["allow", "deny"])
            receipts = writer.change(ChangeRequest(account_id, {SETTING: value}, "ios"))
            assert receipts[0]["receipt"]["event"]["value"] == value
            verify_receipt(receipts[0], ctx.signer.jwk)
            chosen[account_id] = value

    threads = [threading.Thread(target=client, args=(a,)) for a in accounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    events = check_partitions(database, 4)
    assert len(events) == 60
    with database.read() as session:
        for account_id in accounts:
            view = {s.key: s for s in service.settings_view(session, account_id=account_id, ctx=ctx)}
            assert view[SETTING].value == chosen[account_id]
            last = max(
                (
                    e
                    for e in events
                    if e.subject_key == ledger.subject_key_for(session, account_id, create=False)
                ),
                key=lambda e: e.seq,
            )
            assert view[SETTING].seq == last.seq


def test_first_changes_of_one_account_racing_share_one_subject_key(
    database: Database, ctx: ConsentContext
) -> None:
    partitioned(database, 4)
    account_id, _ = make_account(database, handle="racer", country="US")
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def change(n: int) -> None:
        barrier.wait()
        try:
            with database.write() as session:
                service.change_settings(
                    session, account_id=account_id, changes={SETTING: "deny"}, client="ios", ctx=ctx
                )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=change, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = check_partitions(database, 4)
    assert len(events) == 6 and len({e.subject_key for e in events}) == 1


@pytest.mark.parametrize("count", [1, 2, 4, 16])
def test_keys_drawn_for_a_partition_fall_in_it_and_stay_random(count: int) -> None:
    for partition in range(count):
        keys = [ledger.new_subject_key(partition=partition, partitions=count) for _ in range(20)]
        # the partition rule of docs/consent.md, written out: the first 8 bytes of SHA-256, mod P
        assert all(int(hashlib.sha256(k.encode()).hexdigest()[:16], 16) % count == partition for k in keys)
        assert len(set(keys)) == 20 and all(len(k) == 32 and int(k, 16) >= 0 for k in keys)
