"""Runs claimed jobs: the job half of ``consentry worker``.

::

    queued ──claim──> running (attempts + 1, lease) ──heartbeats renew the lease──> succeeded | failed
                         │
                         └─ lease runs out (the worker died): claimed again by any worker, or after
                            ``max_attempts`` failed with an error that says so (``jobs.service.expire``)

* **Claiming.** ``slots`` jobs at a time per runner (``CONSENTRY_JOB_CONCURRENCY``), each on a thread of
  its own; a free slot claims the oldest claimable job every ``poll_seconds``.
* **Heartbeats.** While a job runs, a thread renews its lease every quarter of it
  (``CONSENTRY_JOB_LEASE_SECONDS``). A job that cannot renew (it was claimed again after a stall) is told
  so: its next progress report raises ``LeaseLost`` and it stops, writing nothing more.
* **Outcomes.** A handler records its domain's outcome and the job's in one fenced transaction
  (``Lease.write`` and ``Lease.finish``). Its domain decides what a failure is (a lake that fails the
  data-contract check fails the build at once); only a worker that dies is retried.
* **Stopping.** ``stop()`` stops claiming and waits for the running jobs; once ``forced`` is set (a second
  SIGINT/SIGTERM to ``consentry worker``) it gives them back at once (queued again, the attempt not
  counted) for another worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from consentry.config import Settings
from consentry.db import Database, utcnow
from consentry.jobs import service
from consentry.jobs.service import Claim, LeaseLost

log = logging.getLogger("consentry.worker")


class Lease:
    """How a job writes its progress and outcome. This base class is unfenced (a job run directly, not
    claimed from the table); ``HeldLease`` fences every write by the claim."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.finished = False

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction of the job (fenced: ``LeaseLost`` once the job is no longer this
        attempt's)."""
        with self.database.write() as session:
            self.renew(session)
            yield session

    def renew(self, session: Session) -> None:
        """Fence ``session``'s transaction by this attempt's lease (renewing it)."""

    def check(self) -> None:
        """``LeaseLost`` when a heartbeat found the lease gone; jobs call it between steps."""

    def finish(self, session: Session, *, status: str, error: str | None = None) -> None:
        """Record the job's outcome in ``session`` (the transaction that records the domain's)."""
        self.finished = True


class HeldLease(Lease):
    """The lease of a claimed job."""

    def __init__(self, database: Database, claim: Claim, *, duration: timedelta) -> None:
        super().__init__(database)
        self.claim = claim
        self.duration = duration
        self.lost = threading.Event()

    def renew(self, session: Session) -> None:
        try:
            service.renew(
                session, job_id=self.claim.id, attempt=self.claim.attempt, lease=self.duration, now=utcnow()
            )
        except LeaseLost:
            self.lost.set()
            raise

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"job {self.claim.id}: attempt {self.claim.attempt} lost its lease")

    def finish(self, session: Session, *, status: str, error: str | None = None) -> None:
        service.finish(
            session,
            job_id=self.claim.id,
            attempt=self.claim.attempt,
            status=status,
            error=error,
            now=utcnow(),
        )
        self.finished = True

    def heartbeat(self) -> bool:
        """Renew the lease in a transaction of its own; False once it is lost."""
        try:
            with self.database.write() as session:
                self.renew(session)
        except LeaseLost:
            return False
        except Exception:  # the database is away: try again at the next beat; the lease may run out
            log.warning("job %d: heartbeat failed", self.claim.id, exc_info=True)
        return True


@dataclass(frozen=True)
class Handler:
    """What the runner does with a job of one kind.

    ``run(ref, lease)`` does the work and records the outcome through ``lease`` (never raises for a
    failure of the job itself); ``abandon(session, ref, error)`` marks the domain's row failed when the
    runner gives the job up (its lease ran out on the last attempt)."""

    run: Callable[[str, Lease], None]
    abandon: Callable[[Session, str, str], None]


def worker_name(name: str = "worker") -> str:
    """This process's name in the jobs table: host, process id and ``name``."""
    return f"{socket.gethostname()}:{os.getpid()}:{name}"


class JobRunner:
    """Claims jobs of the kinds in ``handlers`` and runs them (``start()``/``stop()``, or ``run_once()``)."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        handlers: Mapping[str, Handler],
        *,
        name: str = "worker",
        slots: int | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        self.database = database
        self.handlers = dict(handlers)
        self.name = worker_name(name)
        self.slots = slots or settings.job_concurrency
        self.lease = timedelta(seconds=settings.job_lease_seconds)
        self.beat_seconds = settings.job_lease_seconds / 4
        self.poll_seconds = poll_seconds
        self.ran = 0
        self._stopping = threading.Event()
        self._running: dict[int, tuple[HeldLease, threading.Thread]] = {}
        self._lock = threading.Lock()
        self._loop: threading.Thread | None = None

    # --- claiming ------------------------------------------------------------------------------------

    def claim(self) -> HeldLease | None:
        """Fail the jobs whose lease ran out on their last attempt, then claim one (one transaction)."""
        now = utcnow()
        with self.database.write() as session:
            for expired in service.expire(session, kinds=list(self.handlers), now=now):
                log.warning(
                    "%s: job %d (%s %s) failed: %s",
                    self.name,
                    expired.id,
                    expired.kind,
                    expired.ref,
                    expired.error,
                )
                self.handlers[expired.kind].abandon(session, expired.ref, expired.error)
            claimed = service.claim(
                session, kinds=list(self.handlers), worker=self.name, lease=self.lease, now=now
            )
        if claimed is None:
            return None
        again = f", attempt {claimed.attempt}/{claimed.max_attempts}" if claimed.attempt > 1 else ""
        log.info("%s: job %d (%s %s) claimed%s", self.name, claimed.id, claimed.kind, claimed.ref, again)
        return HeldLease(self.database, claimed, duration=self.lease)

    def execute(self, lease: HeldLease) -> None:
        """Run one claimed job with heartbeats beside it."""
        claim = lease.claim
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.beat_seconds):
                if not lease.heartbeat():
                    log.warning("%s: job %d lost its lease; stopping it", self.name, claim.id)
                    return

        beating = threading.Thread(target=beat, name=f"job-{claim.id}-heartbeat", daemon=True)
        beating.start()
        started = time.monotonic()
        try:
            self.handlers[claim.kind].run(claim.ref, lease)
            if not lease.finished:
                raise RuntimeError("the job ended without recording an outcome")
            log.info(
                "%s: job %d (%s %s) done in %.1f s",
                self.name,
                claim.id,
                claim.kind,
                claim.ref,
                time.monotonic() - started,
            )
        except LeaseLost:
            log.warning("%s: job %d stopped: another attempt holds it now", self.name, claim.id)
        except Exception as error:  # a bug in a handler: the job fails visibly, the worker lives on
            log.exception("%s: job %d (%s %s) crashed", self.name, claim.id, claim.kind, claim.ref)
            message = f"{error.__class__.__name__}: {error}"
            try:
                with lease.write() as session:
                    self.handlers[claim.kind].abandon(session, claim.ref, message)
                    lease.finish(session, status="failed", error=message)
            except (LeaseLost, Exception):
                log.exception("%s: job %d: could not record its failure", self.name, claim.id)
        finally:
            done.set()
            beating.join()
            self.ran += 1

    def run_once(self) -> int:
        """Run claimable jobs one after another until none is left; returns how many ran."""
        ran = 0
        while (lease := self.claim()) is not None:
            self.execute(lease)
            ran += 1
        return ran

    # --- in the background ---------------------------------------------------------------------------

    def start(self) -> None:
        """Claim and run jobs on threads of their own until ``stop()``."""
        self._loop = threading.Thread(target=self._run, name=f"{self.name}-jobs", daemon=True)
        self._loop.start()

    def _run(self) -> None:
        log.info(
            "%s: running jobs (%s), %d at a time, lease %g s",
            self.name,
            ", ".join(self.handlers),
            self.slots,
            self.lease.total_seconds(),
        )
        while not self._stopping.is_set():
            with self._lock:
                for job_id in [j for j, (_, t) in self._running.items() if not t.is_alive()]:
                    del self._running[job_id]
                free = self.slots - len(self._running)
            lease = None
            if free > 0:
                try:
                    lease = self.claim()
                except Exception:
                    log.exception("%s: could not claim a job; retrying in %g s", self.name, self.poll_seconds)
            if lease is None:
                self._stopping.wait(self.poll_seconds)
                continue
            thread = threading.Thread(
                target=self.execute, args=(lease,), name=f"job-{lease.claim.id}", daemon=True
            )
            with self._lock:
                self._running[lease.claim.id] = (lease, thread)
            thread.start()

    @property
    def running(self) -> int:
        """Jobs running now."""
        with self._lock:
            return sum(1 for _, thread in self._running.values() if thread.is_alive())

    def stop(self, *, forced: threading.Event | None = None, timeout: float | None = None) -> None:
        """Stop claiming and wait for the running jobs; give back those still running once ``forced`` is
        set (a second signal) or after ``timeout`` seconds."""
        self._stopping.set()
        if self._loop is not None:
            self._loop.join()
        with self._lock:
            running = list(self._running.values())
        deadline = None if timeout is None else time.monotonic() + timeout
        if any(thread.is_alive() for _, thread in running):
            log.info("%s: waiting for %d running job(s)", self.name, len(running))
        for _, thread in running:
            while thread.is_alive() and not (forced is not None and forced.is_set()):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                thread.join(0.2)
        for lease, thread in running:
            if thread.is_alive():
                self._release(lease)

    def _release(self, lease: HeldLease) -> None:
        lease.lost.set()
        try:
            with self.database.write() as session:
                released = service.release(session, job_id=lease.claim.id, attempt=lease.claim.attempt)
        except Exception:
            log.exception(
                "%s: job %d: could not give it back; its lease will run out", self.name, lease.claim.id
            )
            return
        if released:
            log.info("%s: job %d given back (queued again)", self.name, lease.claim.id)
