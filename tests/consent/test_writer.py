"""Group commit: concurrent requests share transactions, fail alone, and keep the chain whole."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import pytest
from sqlalchemy import select

from consentry.consent import ledger, service
from consentry.consent.models import ConsentEvent
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
    writer._ensure_started()
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
