"""The webhook worker against a real HTTP receiver that verifies every request with ``standardwebhooks``.

Backoffs are tens of milliseconds here so retries happen within seconds; nothing asserts on timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from consentry.cli import app
from consentry.config import Settings, get_settings
from consentry.datasets.models import Recipient
from consentry.datasets.service import add_recipient
from consentry.db import Database, utcnow
from consentry.errors import Conflict, NotFound
from consentry.partners import outbox
from consentry.partners.keys import new_webhook_secret
from consentry.partners.models import Delivery, OutboxMessage
from consentry.partners.worker import (
    Outcome,
    Worker,
    start_in_thread,
)
from tests.partners.receiver import Receiver

runner = CliRunner()


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Settings with backoffs of milliseconds and four attempts."""
    return settings.model_copy(
        update={
            "webhook_max_attempts": 4,
            "webhook_backoff_base_seconds": 0.02,
            "webhook_backoff_cap_seconds": 0.05,
            "webhook_timeout_seconds": 5.0,
            "worker_concurrency": 4,
        }
    )


def add_partner(database: Database, name: str, url: str | None, secret: str | None = None) -> str:
    """A third-party recipient with a webhook endpoint; returns its signing secret."""
    secret = secret or new_webhook_secret()
    with database.write() as session:
        recipient = add_recipient(
            session, name=name, kind="third_party", purposes=["train-ai"], categories=["posts"]
        )
        recipient.webhook_url = url
        recipient.webhook_secret = secret
    return secret


def queue(database: Database, partner: str, count: int = 1, event_type: str = "ping") -> list[str]:
    """Queue ``count`` messages for ``partner``; returns their ids."""
    with database.write() as session:
        recipient = session.scalars(select(Recipient).where(Recipient.name == partner)).one()
        ids = []
        for n in range(count):
            message = outbox.enqueue(session, recipient=recipient, event_type=event_type, data={"n": n})
            assert message is not None
            ids.append(message.message_id)
    return ids


def messages(database: Database) -> dict[str, OutboxMessage]:
    with database.read() as session:
        found = {m.message_id: m for m in session.scalars(select(OutboxMessage))}
        session.expunge_all()
    return found


def attempts(database: Database, message_id: str) -> list[Delivery]:
    with database.read() as session:
        found = list(
            session.scalars(
                select(Delivery)
                .join(OutboxMessage, OutboxMessage.id == Delivery.outbox_id)
                .where(OutboxMessage.message_id == message_id)
                .order_by(Delivery.id)
            )
        )
        session.expunge_all()
    return found


def drain_until(worker: Worker, done: Callable[[], bool], *, seconds: float = 60) -> None:
    """Run passes of the worker until ``done()`` (retries fall due between passes)."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the worker did not get there in time"
        worker.run_once()
        time.sleep(0.01)


def statuses(database: Database) -> Counter[str]:
    return Counter(m.status for m in messages(database).values())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver on a free port, not started (tests start it when its endpoint should be up)."""
    instance = Receiver({})
    yield instance
    instance.stop()


def test_a_signed_delivery_verified_by_the_standardwebhooks_package(
    database: Database, fast: Settings, receiver: Receiver
) -> None:
    secret = add_partner(database, "acme", receiver.url("acme"))
    receiver.add("acme", secret)
    receiver.start()
    [message_id] = queue(database, "acme", event_type="revocation.created")

    stats = Worker(database, fast).run_once()

    assert stats.delivered == 1 and stats.failed == 0
    [request] = receiver.requests
    assert request.verified and request.answered == 200 and request.message_id == message_id
    assert request.signature is not None and request.signature.startswith("v1,")
    payload = receiver.processed[message_id]
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["type"] == "revocation.created" and payload["data"] == {"n": 0}
    message = messages(database)[message_id]
    assert message.status == "delivered" and message.attempts == 1 and message.delivered_at is not None
    [delivery] = attempts(database, message_id)
    assert delivery.attempt == 1 and delivery.status_code == 200 and delivery.error is None
    assert delivery.duration_ms > 0


def test_a_wrong_secret_is_rejected_by_the_receiver_and_retried(
    database: Database, fast: Settings, receiver: Receiver
) -> None:
    """Sanity: the receiver's library refuses a signature made with another secret (here: 401)."""
    add_partner(database, "acme", receiver.url("acme"))
    receiver.add("acme", new_webhook_secret())
    receiver.start()
    [message_id] = queue(database, "acme")

    Worker(database, fast).run_once()

    [request] = receiver.requests
    assert not request.verified and request.answered == 401 and request.error
    assert receiver.processed == {}
    message = messages(database)[message_id]
    assert message.status == "pending" and message.attempts == 1
    assert message.last_error is not None and message.last_error.startswith("HTTP 401")


def test_receiver_down_then_up_delivers_everything_once(
    database: Database, fast: Settings, receiver: Receiver
) -> None:
    secrets = {name: add_partner(database, name, receiver.url(name)) for name in ("acme", "globex")}
    ids = queue(database, "acme", 12) + queue(database, "globex", 8)
    worker = Worker(database, fast.model_copy(update={"webhook_max_attempts": 1000}))

    # the port is closed: every attempt fails and is retried after a backoff, nothing is lost
    drain_until(worker, lambda: all(m.attempts >= 2 for m in messages(database).values()))
    assert statuses(database) == {"pending": 20}
    for message_id in ids:
        failed = attempts(database, message_id)
        assert [d.attempt for d in failed] == list(range(1, len(failed) + 1))
        assert all(d.status_code is None and d.error for d in failed)
        assert "Connect" in (failed[0].error or "")

    for name, secret in secrets.items():
        receiver.add(name, secret)
    receiver.start()
    drain_until(worker, lambda: statuses(database) == {"delivered": 20})

    assert set(receiver.processed) == set(ids)
    assert receiver.stats.duplicates == 0 and receiver.stats.rejected == 0
    assert set(receiver.app.attempts_by_id.values()) == {1}
    for message_id in ids:
        log = attempts(database, message_id)
        assert [d.attempt for d in log] == list(range(1, len(log) + 1))
        assert [d.status_code for d in log][-1] == 200
        assert all(d.status_code is None for d in log[:-1])
        assert messages(database)[message_id].attempts == len(log)


def test_dead_letter_after_max_attempts_then_retry_with_the_same_id(
    database: Database, fast: Settings, receiver: Receiver
) -> None:
    secret = add_partner(database, "acme", receiver.url("acme"))
    receiver.add("acme", secret)
    receiver.app.fail_status = 503
    receiver.start()
    [message_id] = queue(database, "acme")
    worker = Worker(database, fast)

    drain_until(worker, lambda: statuses(database) == {"dead": 1})

    message = messages(database)[message_id]
    assert message.attempts == 4 and message.last_error == "HTTP 503: unavailable, try later"
    log = attempts(database, message_id)
    assert [(d.attempt, d.status_code) for d in log] == [(1, 503), (2, 503), (3, 503), (4, 503)]
    # every attempt carried the same webhook-id, each one signed and verified
    assert [r.message_id for r in receiver.requests] == [message_id] * 4
    assert all(r.verified for r in receiver.requests)
    worker.run_once()
    assert len(receiver.requests) == 4  # a dead message is not sent again by itself

    delivered = queue_delivered(database)
    with database.write() as session, pytest.raises(Conflict, match="only dead ones"):
        outbox.retry(session, delivered)
    with database.write() as session:
        revived = outbox.retry(session, message_id)
        assert revived.status == "pending" and revived.attempts == 0
    receiver.app.fail_status = None
    drain_until(worker, lambda: messages(database)[message_id].status == "delivered")

    assert messages(database)[message_id].status == "delivered"
    assert [r.message_id for r in receiver.requests if r.message_id == message_id] == [message_id] * 5
    assert list(receiver.processed) == [message_id]
    log = attempts(database, message_id)
    assert [(d.attempt, d.status_code) for d in log][-1] == (1, 200)


def queue_delivered(database: Database) -> str:
    """A message that is already delivered (for the refusal to retry it)."""
    with database.write() as session:
        recipient = session.scalars(select(Recipient).where(Recipient.name == "acme")).one()
        message = outbox.enqueue(session, recipient=recipient, event_type="ping", data={})
        assert message is not None
        message.status, message.delivered_at = "delivered", utcnow()
        return message.message_id


def test_two_workers_never_deliver_the_same_message_twice(
    database: Database, fast: Settings, receiver: Receiver
) -> None:
    """Two workers with their own connections claim from one outbox: SKIP LOCKED on PostgreSQL, the
    write lock on SQLite. Each message reaches the receiver exactly once, never two copies at a time."""
    names = ["acme", "globex", "initech"]
    for name in names:
        receiver.add(name, add_partner(database, name, receiver.url(name)))
    receiver.app.delay = 0.002
    receiver.start()
    ids = [message_id for name in names for message_id in queue(database, name, 100)]
    own = [Database(database.url), Database(database.url)]
    workers = [Worker(db, fast, concurrency=8, name=f"worker-{n}") for n, db in enumerate(own)]
    try:
        threads = [threading.Thread(target=w.run_once) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for db in own:
            db.dispose()

    assert statuses(database) == {"delivered": 300}
    assert sum(w.stats.delivered for w in workers) == 300
    assert set(receiver.processed) == set(ids)
    assert receiver.app.attempts_by_id == Counter(dict.fromkeys(ids, 1))
    assert receiver.stats.max_parallel_same_id == 1 and receiver.stats.duplicates == 0
    with database.read() as session:
        assert len(list(session.scalars(select(Delivery)))) == 300
    assert {m.attempts for m in messages(database).values()} == {1}


def test_a_crashed_workers_messages_are_sent_after_its_lease_and_its_late_outcome_is_ignored(
    database: Database, fast: Settings, receiver: Receiver
) -> None:
    receiver.add("acme", add_partner(database, "acme", receiver.url("acme")))
    receiver.start()
    ids = queue(database, "acme", 3)
    crashed, healthy = Worker(database, fast), Worker(database, fast)
    claimed = crashed.claim(10)  # ... and never reports back
    assert sorted(c.message_id for c in claimed) == sorted(ids)

    healthy.run_once()
    assert receiver.requests == [] and statuses(database) == {"pending": 3}  # leased, not due

    with database.write() as session:  # the lease runs out
        session.execute(update(OutboxMessage).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    healthy.run_once()
    assert statuses(database) == {"delivered": 3}
    assert {m.attempts for m in messages(database).values()} == {2}

    late = [Outcome(c, "failed", utcnow(), 500, "HTTP 500", 1.0) for c in claimed]
    crashed.exchange(late, limit=0)
    assert statuses(database) == {"delivered": 3}  # fenced: attempt 1 cannot overwrite attempt 2
    assert [d.attempt for d in attempts(database, ids[0])] == [2, 1]
    assert set(receiver.processed) == set(ids)


def test_suspended_partners_get_their_webhooks_and_removed_endpoints_make_messages_dead(
    database: Database, fast: Settings, receiver: Receiver
) -> None:
    for name in ("suspended", "gone"):
        receiver.add(name, add_partner(database, name, receiver.url(name)))
    receiver.start()
    [to_suspended] = queue(database, "suspended")
    [to_gone] = queue(database, "gone")
    with database.write() as session:
        session.execute(update(Recipient).where(Recipient.name == "suspended").values(status="suspended"))
        session.execute(update(Recipient).where(Recipient.name == "gone").values(webhook_url=None))

    stats = Worker(database, fast).run_once()

    assert stats.delivered == 1 and stats.skipped == 1
    assert set(receiver.processed) == {to_suspended}
    gone = messages(database)[to_gone]
    assert gone.status == "dead" and gone.attempts == 0
    assert gone.last_error == "not sent: partner gone has no webhook endpoint"
    assert attempts(database, to_gone) == []

    with database.write() as session:
        session.execute(
            update(Recipient).where(Recipient.name == "gone").values(webhook_url=receiver.url("gone"))
        )
        assert outbox.retry_dead(session, partner="gone") == 1
    Worker(database, fast).run_once()
    assert set(receiver.processed) == {to_suspended, to_gone}


def test_stop_finishes_the_requests_in_flight(database: Database, fast: Settings, receiver: Receiver) -> None:
    receiver.add("acme", add_partner(database, "acme", receiver.url("acme")))
    receiver.app.delay = 0.3
    receiver.start()
    queue(database, "acme", 10)
    handle = start_in_thread(database, fast, concurrency=2, poll_seconds=0.05)
    deadline = time.monotonic() + 30
    while receiver.stats.requests == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)

    stats = handle.stop()

    assert not handle.alive and stats.delivered >= 1 and stats.released == 0
    for message in messages(database).values():
        # claimed ones were delivered and recorded; the rest were never claimed
        assert (message.status, message.attempts) in {("delivered", 1), ("pending", 0)}
    assert len(receiver.processed) == stats.delivered


def test_a_second_stop_abandons_requests_in_flight_and_releases_them(
    database: Database, fast: Settings, receiver: Receiver
) -> None:
    receiver.add("acme", add_partner(database, "acme", receiver.url("acme")))
    receiver.app.delay = 2.0
    receiver.start()
    queue(database, "acme", 2)
    handle = start_in_thread(database, fast, concurrency=2, poll_seconds=0.05)
    deadline = time.monotonic() + 30
    while receiver.stats.requests < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)

    stats = handle.stop(timeout=0.1)  # not done in time: abandoned

    assert not handle.alive and stats.released == 2 and stats.delivered == 0
    now = utcnow()
    for message in messages(database).values():
        assert message.status == "pending" and message.attempts == 0 and message.next_attempt_at <= now
    with database.read() as session:
        assert list(session.scalars(select(Delivery))) == []


def test_sigterm_lets_the_worker_command_finish_its_requests(
    database: Database, fast: Settings, receiver: Receiver
) -> None:
    """``consentry worker`` in a process of its own: SIGTERM while requests are in flight, exit 0, and
    every message it claimed was delivered and recorded."""
    receiver.add("acme", add_partner(database, "acme", receiver.url("acme")))
    receiver.app.delay = 0.5
    receiver.start()
    queue(database, "acme", 40)
    env = os.environ | {
        "CONSENTRY_HOME": str(fast.home),
        "CONSENTRY_DATABASE_URL": fast.database_url or "",
        "CONSENTRY_WORKER_CONCURRENCY": "2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "consentry.cli", "worker", "--poll", "0.05", "--verbose"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while receiver.stats.requests < 3:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "SIGTERM received; finishing the requests in flight" in output
    assert "worker stopped: delivered" in output
    found = messages(database).values()
    assert {(m.status, m.attempts) for m in found} <= {("delivered", 1), ("pending", 0)}
    delivered = {m.message_id for m in found if m.status == "delivered"}
    assert delivered and len(delivered) < 40 and set(receiver.processed) == delivered


def test_log_retry_and_send_test_commands(
    database: Database, fast: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSENTRY_HOME", str(fast.home))
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", fast.database_url or "")
    monkeypatch.setenv("CONSENTRY_WEBHOOK_MAX_ATTEMPTS", "1")
    get_settings.cache_clear()
    try:
        secret = add_partner(database, "acme", receiver.url("acme"))
        add_partner(database, "quiet", None)

        def run(*args: str) -> tuple[int, str]:
            result = runner.invoke(app, list(args))
            if "--json" in args:
                return result.exit_code, result.output
            return result.exit_code, " ".join(result.output.split())  # rich wraps at 80 columns

        code, out = run("webhook", "send-test", "acme")
        assert code == 0, out
        [message_id] = [w for w in out.split() if w.startswith("msg_")][:1]
        code, out = run("webhook", "send-test", "quiet")
        assert code == 1 and "no webhook endpoint" in out
        code, out = run("webhook", "send-test", "nobody")
        assert code == 1 and "unknown partner" in out

        code, out = run("worker", "--once")  # the receiver is down: one attempt, then dead
        assert code == 0 and "dead 1" in out, out
        code, out = run("webhook", "log", "--status", "dead", "--json")
        assert code == 0
        [logged] = json.loads(out)
        assert logged["message_id"] == message_id and logged["event_type"] == "ping"
        assert logged["attempts"] == 1 and "Connect" in logged["last_error"]
        code, out = run("webhook", "log", "--partner", "acme")
        assert code == 0 and message_id in out and "dead" in out
        code, out = run("webhook", "log", "--status", "lost")
        assert code == 2

        receiver.add("acme", secret)
        receiver.start()
        code, out = run("webhook", "retry", message_id)
        assert code == 0 and "pending again" in out
        code, out = run("webhook", "retry", message_id)
        assert code == 1 and "only dead ones" in out
        code, out = run("webhook", "retry")
        assert code == 2
        code, out = run("worker", "--once", "--concurrency", "2")
        assert code == 0 and "delivered 1" in out, out
        assert receiver.processed[message_id]["type"] == "ping"

        code, out = run("webhook", "show", message_id, "--json")
        assert code == 0
        shown = json.loads(out)
        assert shown["status"] == "delivered"
        assert [(d["attempt"], d["status_code"]) for d in shown["deliveries"]] == [(1, None), (1, 200)]
        code, out = run("webhook", "show", message_id)
        assert code == 0 and "delivery attempts" in out
        code, out = run("webhook", "retry", "--all-dead", "--partner", "acme")
        assert code == 0 and "0 dead messages" in out
    finally:
        get_settings.cache_clear()


def test_outbox_lookups(database: Database) -> None:
    add_partner(database, "acme", "http://127.0.0.1:9/hooks")
    [message_id] = queue(database, "acme")
    with database.read() as session:
        assert outbox.get_message(session, message_id).partner == "acme"
        with pytest.raises(NotFound):
            outbox.get_message(session, "msg_nope")
        with pytest.raises(NotFound):
            outbox.list_messages(session, partner="nobody")
        assert [m.message.message_id for m in outbox.list_messages(session, status="pending")] == [message_id]
        assert outbox.list_messages(session, status="delivered") == []
