"""``consentry worker``: delivers the webhook outbox, and runs queued jobs and periodic jobs beside it.

Queued jobs (dataset builds, account exports) are claimed from the jobs table with leases by a
``consentry.jobs.runner.JobRunner`` running beside the deliveries (``jobs``); see that module.

How a message travels::

    pending, due ──claim──> leased (attempts + 1, next_attempt_at = now + lease) ──POST──> 2xx: delivered
                                                                                     └──> else: pending again,
                                                  due after a backoff, or dead after the last attempt

* **Claiming.** One short transaction takes up to the free delivery slots of due messages (oldest due
  first), adds one to their ``attempts`` and pushes their ``next_attempt_at`` to the end of a lease (four
  times the request timeout plus 30 s: a claimed message may wait for one request before its own). On
  PostgreSQL the rows are selected ``FOR UPDATE SKIP LOCKED``, so any number of workers share the queue
  without waiting on each other; on SQLite the write transaction (``BEGIN IMMEDIATE``) serialises claims.
  A claimed message is not due again until its lease ends, so a worker that dies mid-delivery loses
  nothing: the message is delivered again once the lease has run out.
* **Fencing.** An outcome is written only while the message is still ``pending`` with the ``attempts`` it was
  claimed with; a worker whose lease ran out and whose message was claimed again cannot overwrite the newer
  attempt. Delivery is at least once; the ``webhook-id`` (the message id) is the same on every attempt, so a
  receiver drops what it has already processed.
* **Delivering.** ``concurrency`` sending threads, each with its own ``httpx.Client`` whose keep-alive
  connections are reused from message to message (measured faster than one ``httpx.AsyncClient`` at the same
  concurrency, see docs/webhooks.md). Each request is signed anew (Standard Webhooks,
  ``consentry.partners.webhooks``); ``webhook_timeout_seconds`` limits connecting, each read and write, and
  reading the answer. Redirects are not followed (a 3xx is a failure).
* **Recording.** Every attempt is a ``Delivery`` row (status code, error, duration). Outcomes and the next
  claim share one transaction, so the database sees one write per batch, not one per message.
* **Retrying.** A failed attempt ``n`` is retried after a random wait in ``[0, min(cap, base * 2^(n-1))]``
  seconds (exponential backoff with full jitter); the attempt ``webhook_max_attempts`` that fails makes the
  message ``dead``. ``consentry webhook retry`` puts a dead message back.
* **Endpoints that do not answer.** After a connection error or a timeout, this worker claims nothing more
  for that partner for ``webhook_backoff_base_seconds`` (capped by the backoff cap), so one unreachable
  endpoint cannot hold every delivery slot while other partners wait.
* **Suspended partners and removed endpoints.** Suspension stops new releases, not the obligation to delete
  revoked records, so a suspended partner's webhooks are delivered as usual. A message whose partner has no
  webhook URL (or no signing secret) when it is claimed is made ``dead`` at once, without an attempt, with
  ``last_error`` saying why: Consentry never sends an unsigned webhook, and the partner still sees its
  revocations in ``GET /v1/partner/revocations``. After a URL is set again, ``consentry webhook retry
  --all-dead --partner NAME`` sends them.
* **Stopping.** ``stop()`` (SIGINT or SIGTERM from the command line) stops claiming, lets the requests in
  flight finish, records them, waits for a running periodic job, and returns. A second signal abandons the
  requests in flight: their messages are released (``attempts`` back by one, due at once).

Periodic jobs (``PeriodicTask``) run on a thread beside the deliveries, one run of a job at a time: the
retention schedule (``periodic_tasks``) is one.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import httpx
from sqlalchemy import Integer, String, Table, Text, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from consentry import __version__
from consentry.config import Settings
from consentry.datasets.models import Recipient
from consentry.db import Database, UTCDateTime, utcnow
from consentry.jobs.runner import JobRunner
from consentry.partners.models import Delivery, OutboxMessage
from consentry.partners.webhooks import encode_body, sign

log = logging.getLogger("consentry.worker")

USER_AGENT = f"Consentry-Webhooks/{__version__}"
EXCERPT_BYTES = 200
"""Characters of a failed response's body kept in the delivery log."""
READ_LIMIT = 64 * 1024
"""Response bytes read (so the connection can be reused); a longer body closes the connection."""
LEASE_GRACE_SECONDS = 30.0
PROGRESS_SECONDS = 10.0
GATHER_SECONDS = 0.2
"""Longest time a finished attempt waits to be written with others."""


@dataclass(frozen=True)
class PeriodicTask:
    """A job the worker runs every ``every``: ``run(database, settings)``.

    Without ``due`` it runs when the worker starts and then every ``every``. With ``due`` (when the next run
    is due, asked at start and after each run, for jobs that remember their last run in the database) it
    runs then, but at least ``every`` after its previous run in this worker.
    """

    name: str
    every: timedelta
    run: Callable[[Database, Settings], object]
    due: Callable[[Database, Settings], datetime] | None = None


@dataclass(frozen=True)
class Claimed:
    """A message claimed for one attempt, with what sending it needs."""

    id: int
    message_id: str
    recipient_id: int
    partner: str
    url: str
    secret: str
    event_type: str
    body: bytes
    attempt: int


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt (``released``: abandoned at a forced stop, not counted)."""

    claimed: Claimed
    kind: Literal["delivered", "failed", "released"]
    attempted_at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: float = 0.0
    unreachable: bool = False
    """A connection error or timeout (as opposed to an HTTP answer)."""


@dataclass
class WorkerStats:
    """What a worker did so far."""

    delivered: int = 0
    failed: int = 0
    """Failed attempts (each is retried later, or made the message dead)."""
    dead: int = 0
    """Messages that used up their attempts."""
    skipped: int = 0
    """Messages made dead without an attempt: their partner has no webhook endpoint any more."""
    released: int = 0
    jobs: int = 0
    """Jobs run (``run_once`` with a job runner)."""
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> str:
        rate = self.delivered / self.seconds if self.seconds > 0 else 0.0
        parts = [f"delivered {self.delivered:,} ({rate:,.1f}/s)", f"failed attempts {self.failed:,}"]
        parts.append(f"dead {self.dead:,}")
        if self.skipped:
            parts.append(f"without endpoint {self.skipped:,}")
        if self.released:
            parts.append(f"released {self.released:,}")
        if self.jobs:
            parts.append(f"jobs run {self.jobs:,}")
        return ", ".join(parts)


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Wait before the attempt after failed attempt ``attempt`` (1-based): full jitter over
    ``[0, min(cap, base * 2^(attempt-1))]``."""
    ceiling = min(cap, base * 2.0 ** min(max(attempt - 1, 0), 62))
    return (rng or random).uniform(0.0, ceiling)


class Worker:
    """Delivers due outbox messages; ``run()`` until stopped, or ``run_once()`` to drain what is due."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        concurrency: int | None = None,
        poll_seconds: float = 1.0,
        periodic: Sequence[PeriodicTask] = (),
        name: str = "worker",
        progress_seconds: float = PROGRESS_SECONDS,
        jobs: JobRunner | None = None,
    ) -> None:
        if poll_seconds <= 0:
            raise ValueError("poll_seconds must be positive")
        self.database = database
        self.settings = settings
        self.concurrency = concurrency or settings.worker_concurrency
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.poll_seconds = poll_seconds
        self.periodic = list(periodic)
        self.jobs = jobs
        self.name = name
        self.timeout = settings.webhook_timeout_seconds
        self.max_attempts = settings.webhook_max_attempts
        self.base = settings.webhook_backoff_base_seconds
        self.cap = settings.webhook_backoff_cap_seconds
        self.lease = timedelta(seconds=4 * self.timeout + LEASE_GRACE_SECONDS)
        self.progress_seconds = progress_seconds
        self.stats = WorkerStats()
        self._capacity = 2 * self.concurrency
        """Messages claimed and not yet recorded: the sending threads' queue holds up to one more round, so
        they never wait for the database."""
        self._claim_at = self.concurrency
        self._rng = random.Random()
        self._cooling: dict[int, float] = {}
        self._stopping = threading.Event()
        self._forced = threading.Event()
        self._signals = 0

    # --- control ---------------------------------------------------------------------------------------

    def run(self, *, handle_signals: bool = False) -> WorkerStats:
        """Deliver and run periodic jobs until ``stop()`` (or SIGINT/SIGTERM with ``handle_signals``)."""
        return self._main(once=False, handle_signals=handle_signals)

    def run_once(self) -> WorkerStats:
        """Deliver what is due, including retries that fall due meanwhile, then run the queued jobs (with
        ``jobs``) one after another, and return (no periodic jobs).

        Partners whose endpoint stopped answering during the pass are left for the next one."""
        stats = self._main(once=True, handle_signals=False)
        if self.jobs is not None:
            stats.jobs += self.jobs.run_once()
        return stats

    def stop(self, *, force: bool = False) -> None:
        """Stop claiming and return once the requests in flight are done (``force``: abandon them).

        Safe to call from any thread or a signal handler."""
        if force:
            self._forced.set()
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # --- the loop --------------------------------------------------------------------------------------

    def _main(self, *, once: bool, handle_signals: bool) -> WorkerStats:
        self.stats = WorkerStats()
        previous = self._install_signals() if handle_signals else {}
        senders = _Senders(self)
        log.info(
            "%s started: concurrency %d, timeout %g s, %d attempts, backoff %g-%g s%s",
            self.name,
            self.concurrency,
            self.timeout,
            self.max_attempts,
            self.base,
            self.cap,
            f", periodic: {', '.join(t.name for t in self.periodic)}" if self.periodic and not once else "",
        )
        if self.jobs is not None and not once:
            self.jobs.start()
        try:
            self._deliver_loop(senders, once=once)
        finally:
            if self.jobs is not None and not once:
                self.jobs.stop(forced=self._forced)
            senders.close(wait=not self._forced.is_set())
            for sig, handler in previous.items():
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        log.info("%s stopped: %s", self.name, self.stats.summary())
        return self.stats

    def _deliver_loop(self, senders: _Senders, *, once: bool) -> None:
        inflight: dict[int, Claimed] = {}  # claimed and not yet written, by outbox row id
        outcomes: list[Outcome] = []
        oldest: float | None = None  # when the oldest unwritten outcome came back
        jobs = Periodic(self, enabled=not once)
        jobs.start()
        reported, reported_count = time.monotonic(), -1

        def collect(outcome: Outcome) -> None:
            nonlocal oldest
            if inflight.pop(outcome.claimed.id, None) is None:
                return  # released at a forced stop; its late answer is not recorded
            outcomes.append(outcome)
            if outcome.unreachable:
                self._cooling[outcome.claimed.recipient_id] = time.monotonic() + min(self.base, self.cap)
            if oldest is None:
                oldest = time.monotonic()

        while True:
            for finished in senders.finished():
                collect(finished)
            if self._forced.is_set() and inflight:
                log.warning("%s: abandoning %d requests in flight", self.name, len(inflight))
                at = utcnow()
                outcomes.extend(Outcome(item, "released", at) for item in inflight.values())
                inflight.clear()
            stopping = self._stopping.is_set()
            free = 0 if stopping else self._capacity - len(inflight)
            claim = free > 0 and (not inflight or free >= self._claim_at)
            flush = bool(outcomes) and (
                claim or not inflight or oldest is None or time.monotonic() - oldest >= GATHER_SECONDS
            )
            claimed: list[Claimed] = []
            if claim or flush:
                batch, outcomes, oldest = outcomes, [], None
                try:
                    claimed = self.exchange(
                        batch, limit=free if claim else 0, exclude=self._cooling_ids() if claim else ()
                    )
                except Exception:
                    if once:
                        raise
                    log.exception("%s: database error; retrying in %g s", self.name, self.poll_seconds)
                    outcomes = batch + outcomes
                    oldest = time.monotonic()
                    if stopping and not inflight:
                        break  # nothing more can be done for them; their leases run out
                    self._stopping.wait(self.poll_seconds)
                    continue
                for item in claimed:
                    inflight[item.id] = item
                    senders.submit(item)
            jobs.tick()
            now = time.monotonic()
            if now - reported >= self.progress_seconds:
                if self.stats.delivered + self.stats.failed != reported_count:
                    log.info("%s: %s, in flight %d", self.name, self.stats.summary(), len(inflight))
                    reported_count = self.stats.delivered + self.stats.failed
                reported = now
            if not inflight:
                if outcomes:
                    continue
                if stopping or (once and not claimed):
                    break
                if not claimed:
                    self._stopping.wait(min(self.poll_seconds, jobs.seconds_to_next()))
                continue
            waited = senders.next_finished(GATHER_SECONDS / 4)
            if waited is not None:
                collect(waited)
        jobs.finish()

    def _install_signals(self) -> dict[int, Any]:
        """SIGINT and SIGTERM stop the worker (from the main thread only); returns the handlers replaced."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _on_signal(self, sig: int, _frame: object) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "%s: %s received; finishing the requests in flight (again to abandon them)",
                self.name,
                signal.Signals(sig).name,
            )
            self.stop()
        else:
            log.info("%s: %s received again", self.name, signal.Signals(sig).name)
            self.stop(force=True)

    # --- one attempt -----------------------------------------------------------------------------------

    def new_client(self) -> httpx.Client:
        """An HTTP client for one sending thread (keep-alive connections, reused across messages)."""
        return httpx.Client(
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
        )

    def send(self, client: httpx.Client, item: Claimed) -> Outcome:
        """One attempt: sign anew, POST, read (a little of) the answer. Never raises."""
        attempted_at = utcnow()
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        unreachable = False
        try:
            headers = sign(item.secret, message_id=item.message_id, body=item.body)
            headers["content-type"] = "application/json"
            with client.stream("POST", item.url, content=item.body, headers=headers) as response:
                status = response.status_code
                excerpt = _read(response, deadline=started + self.timeout)
            if not 200 <= status < 300:
                text = " ".join(excerpt.decode("utf-8", "replace").split())[:EXCERPT_BYTES]
                error = f"HTTP {status}" + (f": {text}" if text else "")
        except (httpx.TimeoutException, TimeoutError):
            error, unreachable, status = f"timed out (limit {self.timeout:g} s)", True, None
        except httpx.TransportError as exc:
            error, unreachable, status = f"{type(exc).__name__}: {exc}".rstrip(": "), True, None
        except Exception as exc:  # an invalid URL, a bad secret: a failed attempt, never a dead worker
            error, status = f"{type(exc).__name__}: {exc}".rstrip(": "), None
        duration = (time.perf_counter() - started) * 1000
        if error is None:
            return Outcome(item, "delivered", attempted_at, status, None, duration)
        return Outcome(item, "failed", attempted_at, status, error, duration, unreachable)

    def _cooling_ids(self) -> list[int]:
        now = time.monotonic()
        for recipient_id in [r for r, until in self._cooling.items() if until <= now]:
            del self._cooling[recipient_id]
        return sorted(self._cooling)

    # --- the database ----------------------------------------------------------------------------------

    def exchange(
        self, outcomes: Sequence[Outcome], *, limit: int, exclude: Sequence[int] = ()
    ) -> list[Claimed]:
        """Write ``outcomes`` and claim up to ``limit`` due messages, none of the partners ``exclude``, in
        one transaction."""
        with self.database.write() as session:
            now = utcnow()
            if outcomes:
                self._record(session, outcomes, now)
            return self._claim(session, limit, now, exclude) if limit > 0 else []

    def claim(self, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` due messages (its own transaction)."""
        return self.exchange((), limit=limit)

    def _claim(self, session: Session, limit: int, now: datetime, exclude: Sequence[int]) -> list[Claimed]:
        due = (
            select(OutboxMessage.id)
            .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if exclude:
            due = due.where(OutboxMessage.recipient_id.not_in(list(exclude)))
        # one statement takes the lease:
        #   WITH due AS MATERIALIZED (SELECT id ... LIMIT n FOR UPDATE SKIP LOCKED)
        #   UPDATE webhook_outbox SET ... WHERE id IN (SELECT id FROM due) RETURNING ...
        # (materialised so PostgreSQL runs the locking SELECT once and the LIMIT holds)
        chosen = due.cte("due").prefix_with("MATERIALIZED", dialect="postgresql")
        leased = session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id.in_(select(chosen.c.id)))
            .values(attempts=_OUTBOX.c.attempts + 1, next_attempt_at=now + self.lease)
            .returning(
                _OUTBOX.c.id,
                _OUTBOX.c.message_id,
                _OUTBOX.c.recipient_id,
                _OUTBOX.c.event_type,
                _OUTBOX.c.payload,
                _OUTBOX.c.attempts,
            )
        ).all()
        if not leased:
            return []
        partners = {
            row.id: row
            for row in session.execute(
                select(Recipient.id, Recipient.name, Recipient.webhook_url, Recipient.webhook_secret).where(
                    Recipient.id.in_({row.recipient_id for row in leased})
                )
            )
        }
        claimed, orphans = [], []
        for row in sorted(leased, key=lambda r: r.id):
            partner = partners[row.recipient_id]
            if not partner.webhook_url or not partner.webhook_secret:
                orphans.append((row, partner))
                continue
            claimed.append(
                Claimed(
                    id=row.id,
                    message_id=row.message_id,
                    recipient_id=row.recipient_id,
                    partner=partner.name,
                    url=partner.webhook_url,
                    secret=partner.webhook_secret,
                    event_type=row.event_type,
                    body=encode_body(row.payload),
                    attempt=row.attempts,
                )
            )
        for row, partner in orphans:
            reason = "no webhook endpoint" if not partner.webhook_url else "no webhook signing secret"
            session.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id == row.id)
                .values(
                    status="dead",
                    attempts=row.attempts - 1,
                    last_error=f"not sent: partner {partner.name} has {reason}",
                )
            )
            log.warning(
                "%s: %s dead without an attempt: %s has %s", self.name, row.message_id, partner.name, reason
            )
        self.stats.skipped += len(orphans)
        return claimed

    def _record(self, session: Session, outcomes: Sequence[Outcome], now: datetime) -> None:
        attempts = [
            {
                "outbox_id": o.claimed.id,
                "attempt": o.claimed.attempt,
                "attempted_at": o.attempted_at,
                "status_code": o.status_code,
                "error": o.error,
                "duration_ms": round(o.duration_ms, 3),
            }
            for o in outcomes
            if o.kind != "released"
        ]
        changes = [self._change(o, now) for o in outcomes]
        if session.get_bind().dialect.name == "postgresql":
            # one statement each, whatever the batch size: arrays through unnest (a fixed, cached statement)
            if attempts:
                session.execute(_PG_INSERT_DELIVERIES, _arrays(attempts))
            updated = session.execute(_PG_FENCED_UPDATE, _arrays(changes)).rowcount  # type: ignore[attr-defined]
        else:  # SQLite: executemany of one prepared statement, in process
            if attempts:
                session.connection().execute(insert(_DELIVERIES), attempts)
            updated = session.connection().execute(_FENCED_UPDATE, changes).rowcount
        if updated is not None and 0 <= updated < len(changes):
            log.info(
                "%s: %d outcomes ignored: their messages were claimed again after the lease ran out",
                self.name,
                len(changes) - updated,
            )

    def _change(self, outcome: Outcome, now: datetime) -> dict[str, object]:
        item = outcome.claimed
        change: dict[str, object] = {
            "b_id": item.id,
            "b_attempts": item.attempt,
            "b_new_attempts": item.attempt,
            "b_status": "pending",
            "b_next": now,
            "b_delivered": None,
            "b_error": outcome.error,
        }
        where = f"{item.message_id} ({item.event_type}) to {item.partner}"
        if outcome.kind == "delivered":
            change.update(b_status="delivered", b_delivered=now, b_error=None)
            self.stats.delivered += 1
            log.debug(
                "%s: %s delivered: HTTP %s in %.0f ms",
                self.name,
                where,
                outcome.status_code,
                outcome.duration_ms,
            )
        elif outcome.kind == "released":
            change.update(b_new_attempts=item.attempt - 1, b_error=None)
            self.stats.released += 1
        elif item.attempt >= self.max_attempts:
            change.update(b_status="dead")
            self.stats.failed += 1
            self.stats.dead += 1
            log.warning("%s: %s dead after %d attempts: %s", self.name, where, item.attempt, outcome.error)
        else:
            wait = backoff_seconds(item.attempt, base=self.base, cap=self.cap, rng=self._rng)
            change.update(b_next=now + timedelta(seconds=wait))
            self.stats.failed += 1
            log.info(
                "%s: %s attempt %d/%d failed: %s; next in %.1f s",
                self.name,
                where,
                item.attempt,
                self.max_attempts,
                outcome.error,
                wait,
            )
        return change


_OUTBOX = cast(Table, OutboxMessage.__table__)
_DELIVERIES = cast(Table, Delivery.__table__)
_FENCED_UPDATE = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == bindparam("b_id"),
        _OUTBOX.c.attempts == bindparam("b_attempts", type_=Integer()),
        _OUTBOX.c.status == "pending",
    )
    .values(
        status=bindparam("b_status", type_=String()),
        attempts=bindparam("b_new_attempts", type_=Integer()),
        next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
        delivered_at=bindparam("b_delivered", type_=UTCDateTime()),
        last_error=bindparam("b_error", type_=Text()),
    )
)
"""One outcome: only while the message is pending with the attempts it was claimed with."""

_PG_INSERT_DELIVERIES = text(
    "INSERT INTO webhook_deliveries (outbox_id, attempt, attempted_at, status_code, error, duration_ms) "
    "SELECT * FROM unnest(CAST(:outbox_id AS bigint[]), CAST(:attempt AS integer[]), "
    "CAST(:attempted_at AS timestamp[]), CAST(:status_code AS integer[]), CAST(:error AS text[]), "
    "CAST(:duration_ms AS double precision[]))"
)
_PG_FENCED_UPDATE = text(
    "UPDATE webhook_outbox AS o SET status = c.status, attempts = c.new_attempts, "
    "next_attempt_at = c.next_at, delivered_at = c.delivered_at, last_error = c.error "
    "FROM unnest(CAST(:b_id AS bigint[]), CAST(:b_attempts AS integer[]), "
    "CAST(:b_new_attempts AS integer[]), "
    "CAST(:b_status AS text[]), CAST(:b_next AS timestamp[]), CAST(:b_delivered AS timestamp[]), "
    "CAST(:b_error AS text[])) AS c(id, attempts, new_attempts, status, next_at, delivered_at, error) "
    "WHERE o.id = c.id AND o.attempts = c.attempts AND o.status = 'pending'"
)
"""``_FENCED_UPDATE`` and the delivery rows for a whole batch in one statement each (PostgreSQL)."""


def _arrays(rows: Sequence[Mapping[str, object]]) -> dict[str, list[object]]:
    """Rows as one array per column; timestamps as naive UTC, as ``UTCDateTime`` stores them."""
    return {
        name: [
            value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else value
            for value in (row[name] for row in rows)
        ]
        for name in rows[0]
    }


def _read(response: httpx.Response, *, deadline: float) -> bytes:
    """Up to ``READ_LIMIT`` bytes of a response body (all of it when short, so the connection is reused);
    ``TimeoutError`` past ``deadline`` (``time.perf_counter``), so a trickling answer cannot hold a slot."""
    chunks, size = [], 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= READ_LIMIT:
            break
        if time.perf_counter() > deadline:
            raise TimeoutError
    return b"".join(chunks)


class _Senders:
    """``concurrency`` daemon threads that send claimed messages, each with its own HTTP client."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._work: queue.SimpleQueue[Claimed | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{worker.name}-send-{n}", daemon=True)
            for n in range(worker.concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        with self.worker.new_client() as client:
            while (item := self._work.get()) is not None:
                if self.worker._forced.is_set():
                    continue  # abandoned: released by the loop, not sent
                self._done.put(self.worker.send(client, item))

    def submit(self, item: Claimed) -> None:
        self._work.put(item)

    def finished(self) -> list[Outcome]:
        """Every outcome that is back, without waiting."""
        outcomes = []
        with contextlib.suppress(queue.Empty):
            while True:
                outcomes.append(self._done.get_nowait())
        return outcomes

    def next_finished(self, timeout: float) -> Outcome | None:
        """The next outcome, waiting up to ``timeout`` seconds."""
        try:
            return self._done.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self, *, wait: bool) -> None:
        """End the threads once they are idle (``wait``: until then; a forced stop does not wait)."""
        for _ in self._threads:
            self._work.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


class Periodic:
    """The worker's periodic jobs: each run happens on a thread of its own, one run of a job at a time."""

    def __init__(self, worker: Worker, *, enabled: bool) -> None:
        self.worker = worker
        self.tasks = worker.periodic if enabled else []
        self.next: dict[str, float] = {}
        self.running: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        for task in self.tasks:
            self.next[task.name] = self._next_run(task, previous=None)

    def _next_run(self, task: PeriodicTask, *, previous: float | None) -> float:
        """When ``task`` runs next (``time.monotonic``)."""
        floor = time.monotonic() if previous is None else previous + task.every.total_seconds()
        if task.due is None:
            return floor
        try:
            due = task.due(self.worker.database, self.worker.settings)
        except Exception:
            log.exception("%s: periodic %s: could not tell when it is due", self.worker.name, task.name)
            return floor
        return max(floor, time.monotonic() + (due - utcnow()).total_seconds())

    def seconds_to_next(self) -> float:
        with self._lock:
            waiting = [at for name, at in self.next.items() if name not in self.running]
        return max(0.0, min(waiting) - time.monotonic()) if waiting else float("inf")

    def tick(self) -> None:
        """Start every job that is due and not running (nothing once the worker is stopping)."""
        if self.worker.stopping or not self.tasks:
            return
        now = time.monotonic()
        with self._lock:
            for task in self.tasks:
                if task.name not in self.running and self.next[task.name] <= now:
                    thread = threading.Thread(
                        target=self._run, args=(task,), name=f"{self.worker.name}-{task.name}", daemon=True
                    )
                    self.running[task.name] = thread
                    thread.start()

    def _run(self, task: PeriodicTask) -> None:
        started = time.monotonic()
        name = self.worker.name
        log.info("%s: periodic %s started", name, task.name)
        try:
            result = task.run(self.worker.database, self.worker.settings)
        except Exception:
            log.exception("%s: periodic %s failed", name, task.name)
        else:
            shown = f": {result}" if result is not None and len(str(result)) <= 200 else ""
            log.info("%s: periodic %s done in %.1f s%s", name, task.name, time.monotonic() - started, shown)
        following = self._next_run(task, previous=started)
        with self._lock:
            self.next[task.name] = following
            del self.running[task.name]

    def finish(self) -> None:
        with self._lock:
            running = list(self.running.values())
        if running:
            log.info("%s: waiting for periodic %s", self.worker.name, ", ".join(self.running))
        for thread in running:
            thread.join()


def periodic_tasks(settings: Settings) -> list[PeriodicTask]:
    """The periodic jobs ``consentry worker`` runs beside the deliveries: the retention schedule (every
    ``retention_interval_hours`` after the last finished run, recorded in the database, so a restarted
    worker does not run it again early)."""
    from consentry.retention.service import next_due, run_scheduled

    def due(database: Database, settings: Settings) -> datetime:
        with database.read() as session:
            return next_due(session, settings)

    return [
        PeriodicTask(
            "retention",
            every=timedelta(hours=settings.retention_interval_hours),
            run=run_scheduled,
            due=due,
        )
    ]


class WorkerThread:
    """A worker running on a thread of its own (``start_in_thread``); ``stop()`` ends it."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"consentry-{worker.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as error:  # pragma: no cover (reported by stop())
            self.error = error
            log.exception("%s crashed", self.worker.name)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stats(self) -> WorkerStats:
        return self.worker.stats

    def stop(self, timeout: float | None = None) -> WorkerStats:
        """Stop the worker (requests in flight finish) and wait for its thread, up to ``timeout`` seconds
        (then abandon what is still in flight)."""
        self.worker.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.worker.stop(force=True)
            self._thread.join(max(self.worker.timeout, 1.0))
        return self.worker.stats

    def __enter__(self) -> WorkerThread:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_in_thread(
    database: Database,
    settings: Settings,
    *,
    periodic: Sequence[PeriodicTask] = (),
    concurrency: int | None = None,
    poll_seconds: float = 1.0,
    jobs: JobRunner | None = None,
) -> WorkerThread:
    """Start a worker beside something else (``consentry demo`` starts one beside the server)."""
    worker = Worker(
        database,
        settings,
        concurrency=concurrency,
        poll_seconds=poll_seconds,
        periodic=periodic,
        jobs=jobs,
    )
    return WorkerThread(worker)
