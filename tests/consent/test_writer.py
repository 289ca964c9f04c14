"""Group commit: concurrent requests share transactions, fail alone, and keep the chain whole."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest
from sqlalchemy import select

from consentry.consent import changes, ledger, service
from consentry.consent.models import ConsentEvent, PolicyVersion
from consentry.consent.receipts import verify_receipt
from consentry.consent.service import ChangeRequest, ConsentContext
from consentry.consent.writer import ConsentWriter, Receipts
from consentry.db import Database
from consentry.errors import InvalidInput, NotFound
from tests.conftest import make_account


def test_concurrent_requests_are_batched_and_chained(database: Database, ctx: ConsentContext) -> None:
    ids = [make_account(database, handle=f"u{i}")[0] for i in range(8)]
    writer = ConsentWriter(database, ctx)
    results: list[Receipts] = []
    lock = threading.Lock()

    def client(account_id: int) -> None:
        for i in range(25):
            receipts = writer.change(
                ChangeRequest(account_id, {"assistant_realtime": "deny" if i % 2 else "allow"}, "ios")
            )
            with lock:
                results.extend(receipts)

    threads = [threading.Thread(target=client, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert len(results) == 200
    assert writer.requests == 200 and writer.batches < 200  # several requests shared a transaction
    for signed in results:
        verify_receipt(signed, ctx.signer.jwk)
    with database.read() as session:
        report = ledger.verify(session)
    assert report.ok and report.events == 200
    assert sorted(r["receipt"]["chain"]["seq"] for r in results) == list(range(1, 201))


def test_a_bad_request_fails_alone(database: Database, ctx: ConsentContext) -> None:
    account_id, _ = make_account(database)
    writer = ConsentWriter(database, ctx)
    futures: list[Future[Receipts]] = [
        writer.submit(ChangeRequest(account_id, {"assistant_realtime": "deny"}, "web")),
        writer.submit(ChangeRequest(account_id, {"nope": "deny"}, "web")),
        writer.submit(ChangeRequest(987654, {"assistant_realtime": "deny"}, "web")),
        writer.submit(
            ChangeRequest(account_id, {"third_party_sharing": "deny", "assistant_realtime": "allow"}, "web")
        ),
    ]
    writer.close()
    assert len(futures[0].result()) == 1
    with pytest.raises(InvalidInput):
        futures[1].result()
    with pytest.raises(NotFound):
        futures[2].result()
    assert [r["receipt"]["event"]["setting"] for r in futures[3].result()] == [
        "third_party_sharing",
        "assistant_realtime",
    ]
    with database.read() as session:
        report = ledger.verify(session)
    assert report.ok and report.events == 3


def _wait_until_blocked(database: Database, started: threading.Event) -> None:
    """Return once the other writer is waiting for the ledger head (best effort on SQLite)."""
    started.wait(10)
    if database.dialect == "postgresql":
        deadline = time.monotonic() + 10
        with database.engine.connect() as connection:
            while time.monotonic() < deadline:
                waiting = connection.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                ).scalar()
                if waiting:
                    return
                time.sleep(0.02)
    time.sleep(0.3)  # SQLite offers no view of its lock queue: give the other writer time to block


def test_a_writer_that_waits_for_the_head_records_a_later_time(
    database: Database, ctx: ConsentContext
) -> None:
    """The issue 13 race: a writer that took its time before waiting for the head lost to an earlier seq."""
    account_id, _ = make_account(database)
    with database.write() as session:
        ledger.subject_key_for(session, account_id)  # both writers then touch only the head
    started = threading.Event()
    outcome: list[Receipts] = []

    def late_writer() -> None:
        with database.write() as session:
            started.set()
            outcome.extend(
                service.change_settings(
                    session,
                    account_id=account_id,
                    changes={"assistant_realtime": "deny"},
                    client="ios",
                    ctx=ctx,
                )
            )

    with database.write() as holder:
        ledger.lock_head(holder)  # another writer holds the head while the late one arrives
        thread = threading.Thread(target=late_writer)
        thread.start()
        _wait_until_blocked(database, started)
        service.change_settings(
            holder, account_id=account_id, changes={"assistant_realtime": "allow"}, client="web", ctx=ctx
        )
    thread.join()
    with database.read() as session:
        events = session.scalars(select(ConsentEvent).order_by(ConsentEvent.seq)).all()
        [state] = [
            s
            for s in service.settings_view(session, account_id=account_id, ctx=ctx)
            if s.key == "assistant_realtime"
        ]
        assert [e.value for e in events] == ["allow", "deny"]
        assert events[0].recorded_at <= events[1].recorded_at  # seq order and time order are the same
        assert (state.value, state.seq) == ("deny", events[1].seq)  # the state is the last event


# --- a ledger of several partitions: a writer thread per partition ----------------------------------


def _partitioned(database: Database, count: int) -> None:
    with database.write() as session:
        ledger.set_partitions(session, count)


class Stored(NamedTuple):
    seq: int
    subject_key: str
    value: str
    recorded_at: datetime


def _events_by_partition(database: Database, count: int) -> dict[int, list[Stored]]:
    with database.read() as session:
        rows = session.execute(
            select(
                ConsentEvent.seq, ConsentEvent.subject_key, ConsentEvent.value, ConsentEvent.recorded_at
            ).order_by(ConsentEvent.seq)
        ).all()
    parts: dict[int, list[Stored]] = {p: [] for p in range(count)}
    for row in rows:
        parts[ledger.partition_of_seq(row[0], count)].append(Stored(*row))
    return parts


def _subject(database: Database, account_id: int) -> str:
    with database.write() as session:
        key = ledger.subject_key_for(session, account_id)
    assert key is not None
    return key


def test_partition_writers_keep_each_partition_whole_and_in_order(
    database: Database, ctx: ConsentContext
) -> None:
    _partitioned(database, 4)
    ids = [make_account(database, handle=f"p{i}")[0] for i in range(16)]
    for account_id in ids[:12]:  # four accounts make their subject key in their first batch
        _subject(database, account_id)
    writer = ConsentWriter(database, ctx)
    chosen: dict[int, list[str]] = {a: [] for a in ids}
    errors: list[BaseException] = []

    def client(account_id: int) -> None:
        rng = random.Random(account_id)
        try:
            for _ in range(8):
                value = rng.choice(["allow", "deny"])
                receipts = writer.change(ChangeRequest(account_id, {"assistant_realtime": value}, "ios"))
                assert [r["receipt"]["event"]["value"] for r in receipts] == [value]
                verify_receipt(receipts[0], ctx.signer.jwk)
                chosen[account_id].append(value)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=client, args=(a,)) for a in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert errors == []
    assert writer.requests == 128
    assert len([p for p in writer.lane_batches if p is not None]) > 1  # several partitions committed
    with database.read() as session:
        assert ledger.verify(session).ok
        keys = {a: ledger.subject_key_for(session, a, create=False) for a in ids}
        states = {
            a: {s.key: s.value for s in service.settings_view(session, account_id=a, ctx=ctx)} for a in ids
        }
    parts = _events_by_partition(database, 4)
    for partition, events in parts.items():
        assert [e.seq for e in events] == [ledger.seq_of(i, partition, 4) for i in range(len(events))]
        times = [e.recorded_at for e in events]
        assert times == sorted(times)  # seq order and time order agree within the partition
        assert all(ledger.partition_of(e.subject_key, 4) == partition for e in events)
    for account_id in ids:  # each account's events in the order its client made them; the state the last
        mine = [e for events in parts.values() for e in events if e.subject_key == keys[account_id]]
        assert [e.value for e in sorted(mine, key=lambda e: e.seq)] == chosen[account_id]
        assert states[account_id]["assistant_realtime"] == chosen[account_id][-1]


def test_a_failed_batch_of_one_partition_keeps_none_of_it_and_spares_the_others(
    database: Database, ctx: ConsentContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    _partitioned(database, 2)
    ids = [make_account(database, handle=f"f{i}")[0] for i in range(24)]
    keys = {a: _subject(database, a) for a in ids}
    partition = {a: ledger.partition_of(keys[a], 2) for a in ids}
    assert {partition[a] for a in ids} == {0, 1}
    doomed = next(a for a in ids if partition[a] == 0)
    real = changes.sign_event

    def sign(row: ConsentEvent, **kwargs: Any) -> dict[str, Any]:
        if row.subject_key == keys[doomed]:
            raise RuntimeError("signing failed")
        return real(row, **kwargs)

    writer = ConsentWriter(database, ctx)
    for account_id in ids:  # the writer learns each account's partition from its first change
        writer.change(ChangeRequest(account_id, {"assistant_realtime": "deny"}, "web"))
    monkeypatch.setattr(changes, "sign_event", sign)
    futures = {
        (a, i): writer.submit(ChangeRequest(a, {"third_party_sharing": "deny" if i % 2 else "allow"}, "web"))
        for i in range(4)
        for a in ids
    }
    writer.close()
    kept: dict[int, int] = {a: 0 for a in ids}
    for (account_id, _), future in futures.items():
        if future.exception() is None:
            kept[account_id] += 1
        else:
            assert partition[account_id] == 0  # only batches of the doomed account's partition fail
    assert kept[doomed] == 0
    assert all(kept[a] == 4 for a in ids if partition[a] == 1)
    with database.read() as session:
        assert ledger.verify(session).ok
        for account_id in ids:  # a request's events exist exactly when it succeeded
            stored = session.scalars(
                select(ConsentEvent.seq).where(
                    ConsentEvent.subject_key == keys[account_id],
                    ConsentEvent.setting == "third_party_sharing",
                )
            ).all()
            assert len(stored) == kept[account_id]


def test_changes_that_span_partitions_go_through_the_writer_of_several_heads(
    database: Database, ctx: ConsentContext
) -> None:
    from consentry.links.service import import_links

    _partitioned(database, 4)
    ids = [make_account(database, handle=f"s{i}")[0] for i in range(6)]
    with database.write() as session:
        import_links(session, [(ids[0], ids[1]), (ids[0], ids[2]), (ids[0], ids[3])])
    writer = ConsentWriter(database, ctx)
    linked = writer.change(ChangeRequest(ids[0], {"assistant_realtime": "deny"}, "web", scope="linked"))
    first = writer.change(ChangeRequest(ids[4], {"assistant_realtime": "deny"}, "web"))  # no subject key yet
    again = writer.change(ChangeRequest(ids[4], {"assistant_realtime": "allow"}, "web"))
    writer.close()
    assert len(linked) == 4 and len({r["receipt"]["subject"] for r in linked}) == 4
    assert [r["receipt"]["event"]["value"] for r in (*first, *again)] == ["deny", "allow"]
    assert writer.lane_batches == {None: 1, ids[4] % 4: 2}  # the first key is made in the partition
    with database.read() as session:
        assert ledger.verify(session).ok
        assert (
            ledger.partition_of(str(ledger.subject_key_for(session, ids[4], create=False)), 4) == ids[4] % 4
        )


def test_the_writer_of_a_partition_hands_on_what_it_cannot_write_and_makes_keys_of_its_own(
    database: Database, ctx: ConsentContext
) -> None:
    _partitioned(database, 4)
    ids = [make_account(database, handle=f"m{i}")[0] for i in range(16)]
    keys = {a: _subject(database, a) for a in ids}
    partition = {a: ledger.partition_of(keys[a], 4) for a in ids}
    here, there = ids[0], next(a for a in ids if partition[a] != partition[ids[0]])
    fresh, _ = make_account(database, handle="fresh")
    with database.write() as session:
        results = changes.change_settings_many(
            session,
            [
                ChangeRequest(here, {"assistant_realtime": "deny"}, "web"),
                ChangeRequest(there, {"assistant_realtime": "deny"}, "web"),
                ChangeRequest(fresh, {"assistant_realtime": "deny"}, "web"),
                ChangeRequest(987654, {"assistant_realtime": "deny"}, "web"),
            ],
            ctx=ctx,
            partition=partition[here],
        )
    assert isinstance(results[0], list) and len(results[0]) == 1
    assert isinstance(results[1], changes.Misrouted)  # another partition's head: written elsewhere
    assert results[1].partition == partition[there]
    assert isinstance(results[2], list) and len(results[2]) == 1
    assert isinstance(results[3], NotFound)
    with database.read() as session:
        assert ledger.verify(session).events == 2
        key = ledger.subject_key_for(session, fresh, create=False)
        assert key is not None and ledger.partition_of(key, 4) == partition[here]
        assert session.scalar(select(ConsentEvent.seq).where(ConsentEvent.subject_key == keys[there])) is None


def test_a_writer_sees_a_policy_version_added_while_it_runs(database: Database, ctx: ConsentContext) -> None:
    """The writer keeps the policies between batches, and reads them again once a version is added."""
    account_id, _ = make_account(database)
    writer = ConsentWriter(database, ctx)
    first = writer.change(ChangeRequest(account_id, {"assistant_realtime": "deny"}, "web"))
    with database.write() as session:
        current = service.get_policy(session, 1)
        session.add(
            PolicyVersion(
                version=2,
                effective_at=datetime.now(UTC) - timedelta(seconds=1),  # in force already (set up directly)
                applies_to="all",
                defaults=dict(current.defaults),
                title="Second",
                summary="",
                created_at=datetime.now(UTC),
                created_by="test",
            )
        )
    second = writer.change(ChangeRequest(account_id, {"assistant_realtime": "allow"}, "web"))
    writer.close()
    assert first[0]["receipt"]["policy"] == {"version": 1, "title": current.title}
    assert second[0]["receipt"]["policy"] == {"version": 2, "title": "Second"}


def test_a_request_sent_to_the_wrong_partition_is_handed_to_its_own(
    database: Database, ctx: ConsentContext
) -> None:
    """The writer routes an account it does not know by id; the batch finds its key elsewhere."""
    _partitioned(database, 4)
    ids = [make_account(database, handle=f"h{i}")[0] for i in range(16)]
    keys = {a: _subject(database, a) for a in ids}
    elsewhere = next(a for a in ids if ledger.partition_of(keys[a], 4) != a % 4)
    home = ledger.partition_of(keys[elsewhere], 4)
    writer = ConsentWriter(database, ctx)
    receipts = writer.change(ChangeRequest(elsewhere, {"assistant_realtime": "deny"}, "web"))
    again = writer.change(ChangeRequest(elsewhere, {"assistant_realtime": "allow"}, "web"))
    writer.close()
    assert [r["receipt"]["subject"] for r in (*receipts, *again)] == [keys[elsewhere]] * 2
    assert ledger.partition_of_seq(again[0]["receipt"]["chain"]["seq"], 4) == home
    assert writer.lane_batches == {elsewhere % 4: 1, home: 2}  # handed on once, then sent home directly
    assert writer.requests == 2
