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

This module holds the loop and its control; one attempt and the sending threads are
``consentry.partners.delivery``, claims and records ``consentry.partners.leases``, periodic jobs
``consentry.partners.periodic``.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from consentry.config import Settings
from consentry.db import Database, utcnow
from consentry.jobs.runner import JobRunner
from consentry.partners.delivery import Claimed, Outcome, Senders, WorkerStats, backoff_seconds
from consentry.partners.leases import Leases
from consentry.partners.periodic import Periodic, PeriodicTask, periodic_tasks

log = logging.getLogger("consentry.worker")
__all__ = [
    "Claimed",
    "Outcome",
    "PeriodicTask",
    "Worker",
    "WorkerStats",
    "WorkerThread",
    "backoff_seconds",
    "periodic_tasks",
    "start_in_thread",
]

LEASE_GRACE_SECONDS = 30.0
PROGRESS_SECONDS = 10.0
GATHER_SECONDS = 0.2
"""Longest time a finished attempt waits to be written with others."""


@dataclass
class _Flight:
    """The delivery loop's state between rounds."""

    inflight: dict[int, Claimed] = field(default_factory=dict)
    """Claimed and not yet written, by outbox row id."""
    outcomes: list[Outcome] = field(default_factory=list)
    """Back from the senders, not yet written."""
    oldest: float | None = None
    """When the oldest unwritten outcome came back (``time.monotonic``)."""
    reported: float = field(default_factory=time.monotonic)
    reported_count: int = -1


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
        self._leases = Leases(
            name=name,
            lease=self.lease,
            max_attempts=self.max_attempts,
            base=self.base,
            cap=self.cap,
            rng=random.Random(),
        )
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
        senders = Senders(
            name=self.name, concurrency=self.concurrency, timeout=self.timeout, abandoned=self._forced
        )
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

    def _deliver_loop(self, senders: Senders, *, once: bool) -> None:
        jobs = Periodic(self, enabled=not once)
        jobs.start()
        flight = _Flight()
        while True:
            for finished in senders.finished():
                self._collect(flight, finished)
            self._abandon_if_forced(flight)
            stopping = self._stopping.is_set()
            claimed = self._exchange_round(flight, senders, once=once, stopping=stopping)
            if claimed is None:  # the database failed; the outcomes wait for the next round
                if stopping and not flight.inflight:
                    break  # nothing more can be done for them; their leases run out
                self._stopping.wait(self.poll_seconds)
                continue
            jobs.tick()
            self._report(flight)
            if not flight.inflight:
                if flight.outcomes:
                    continue
                if stopping or (once and not claimed):
                    break
                if not claimed:
                    self._stopping.wait(min(self.poll_seconds, jobs.seconds_to_next()))
                continue
            waited = senders.next_finished(GATHER_SECONDS / 4)
            if waited is not None:
                self._collect(flight, waited)
        jobs.finish()

    def _collect(self, flight: _Flight, outcome: Outcome) -> None:
        """Take an attempt's outcome to be written (a partner that did not answer cools down)."""
        if flight.inflight.pop(outcome.claimed.id, None) is None:
            return  # released at a forced stop; its late answer is not recorded
        flight.outcomes.append(outcome)
        if outcome.unreachable:
            self._cooling[outcome.claimed.recipient_id] = time.monotonic() + min(self.base, self.cap)
        if flight.oldest is None:
            flight.oldest = time.monotonic()

    def _abandon_if_forced(self, flight: _Flight) -> None:
        """At a forced stop, release the messages in flight (their late answers are ignored)."""
        if self._forced.is_set() and flight.inflight:
            log.warning("%s: abandoning %d requests in flight", self.name, len(flight.inflight))
            at = utcnow()
            flight.outcomes.extend(Outcome(item, "released", at) for item in flight.inflight.values())
            flight.inflight.clear()

    def _exchange_round(
        self, flight: _Flight, senders: Senders, *, once: bool, stopping: bool
    ) -> list[Claimed] | None:
        """Write the outcomes that are due to be written and claim what the free slots take, in one
        transaction, and hand the claimed messages to the senders; ``None`` after a database error."""
        free = 0 if stopping else self._capacity - len(flight.inflight)
        claim = free > 0 and (not flight.inflight or free >= self._claim_at)
        flush = bool(flight.outcomes) and (
            claim
            or not flight.inflight
            or flight.oldest is None
            or time.monotonic() - flight.oldest >= GATHER_SECONDS
        )
        if not (claim or flush):
            return []
        batch, flight.outcomes, flight.oldest = flight.outcomes, [], None
        try:
            claimed = self.exchange(
                batch, limit=free if claim else 0, exclude=self._cooling_ids() if claim else ()
            )
        except Exception:
            if once:
                raise
            log.exception("%s: database error; retrying in %g s", self.name, self.poll_seconds)
            flight.outcomes = batch + flight.outcomes
            flight.oldest = time.monotonic()
            return None
        for item in claimed:
            flight.inflight[item.id] = item
            senders.submit(item)
        return claimed

    def _report(self, flight: _Flight) -> None:
        """Log progress every ``progress_seconds`` when something was done since the last report."""
        now = time.monotonic()
        if now - flight.reported >= self.progress_seconds:
            done = self.stats.delivered + self.stats.failed
            if done != flight.reported_count:
                log.info("%s: %s, in flight %d", self.name, self.stats.summary(), len(flight.inflight))
                flight.reported_count = done
            flight.reported = now

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
                self._leases.record(session, outcomes, now, self.stats)
            if limit <= 0:
                return []
            return self._leases.claim(session, limit=limit, now=now, exclude=exclude, stats=self.stats)

    def claim(self, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` due messages (its own transaction)."""
        return self.exchange((), limit=limit)


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
