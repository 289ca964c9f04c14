"""The jobs table's rules: enqueue, claim with a lease, renew it, finish, and fail what ran out.

A job is claimed by one statement that moves it to ``running``, adds one to ``attempts`` and sets
``lease_until`` (now + the lease) and ``worker``. The candidates are queued jobs and running jobs whose
lease ran out (their worker died or stalled) and that have attempts left; on PostgreSQL they are selected
``FOR UPDATE SKIP LOCKED``, so workers never wait on each other; on SQLite the write transaction
(``BEGIN IMMEDIATE``) serialises claims and the ``UPDATE ... WHERE`` repeats the condition.

Every write of a running job is fenced (``renew``): it happens only while the job is ``running`` with the
``attempts`` it was claimed with, and it renews the lease. A worker whose lease ran out and whose job was
claimed again cannot write over the newer attempt (``LeaseLost``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, CursorResult, Table, and_, or_, select, update
from sqlalchemy.orm import Session

from consentry.db import utcnow
from consentry.errors import NotFound
from consentry.jobs.models import Job

ACTIVE = ("queued", "running")
_JOBS = cast(Table, Job.__table__)


class LeaseLost(BaseException):
    """The running job's lease ran out and the job was claimed again (or failed, or released).

    A ``BaseException``, like a cancellation: the job's own ``except Exception`` must not record it as
    the job's failure; cleanup in ``finally`` blocks still runs."""


@dataclass(frozen=True)
class Claim:
    """A job a worker just claimed."""

    id: int
    kind: str
    ref: str
    attempt: int
    max_attempts: int


@dataclass(frozen=True)
class Expired:
    """A running job whose lease ran out after its last attempt: now ``failed``."""

    id: int
    kind: str
    ref: str
    attempts: int
    error: str


def enqueue(session: Session, *, kind: str, ref: str, max_attempts: int = 3) -> Job:
    """Queue a job for ``ref`` (a row of the ``kind``'s domain); the caller commits."""
    job = Job(kind=kind, ref=ref, status="queued", attempts=0, max_attempts=max_attempts, created_at=utcnow())
    session.add(job)
    session.flush()
    return job


def get(session: Session, *, kind: str, ref: str) -> Job:
    """The job of ``ref``, or ``NotFound``."""
    job = session.scalar(select(Job).where(Job.kind == kind, Job.ref == ref))
    if job is None:
        raise NotFound(f"no {kind} job for {ref}", field="job_id")
    return job


def list_jobs(session: Session, *, status: str | None = None, limit: int = 50) -> list[Job]:
    """Jobs, newest first."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Job.status == status)
    return list(session.scalars(query))


def fail(session: Session, *, kind: str, ref: str, error: str, now: datetime | None = None) -> None:
    """Fail the job of ``ref`` if it is still queued or running (its domain gave up on it)."""
    session.execute(
        update(_JOBS)
        .where(_JOBS.c.kind == kind, _JOBS.c.ref == ref, _JOBS.c.status.in_(ACTIVE))
        .values(status="failed", error=error, finished_at=now or utcnow(), lease_until=None)
    )


def expire(session: Session, *, kinds: Sequence[str], now: datetime) -> list[Expired]:
    """Fail every running job of ``kinds`` whose lease ran out on its last attempt."""
    rows = session.execute(
        update(_JOBS)
        .where(
            _JOBS.c.kind.in_(list(kinds)),
            _JOBS.c.status == "running",
            _JOBS.c.lease_until < now,
            _JOBS.c.attempts >= _JOBS.c.max_attempts,
        )
        .values(status="failed", finished_at=now, lease_until=None)
        .returning(_JOBS.c.id, _JOBS.c.kind, _JOBS.c.ref, _JOBS.c.attempts, _JOBS.c.worker)
    ).all()
    expired = []
    for row in rows:
        error = (
            f"abandoned: the worker running it ({row.worker}) stopped renewing its lease, on each of "
            f"{row.attempts} attempt{'s' if row.attempts != 1 else ''}"
        )
        session.execute(update(_JOBS).where(_JOBS.c.id == row.id).values(error=error))
        expired.append(Expired(row.id, row.kind, row.ref, row.attempts, error))
    return expired


def claim(
    session: Session, *, kinds: Sequence[str], worker: str, lease: timedelta, now: datetime
) -> Claim | None:
    """Claim the oldest claimable job of ``kinds`` for ``worker`` (one statement), or ``None``."""
    claimable = or_(
        _JOBS.c.status == "queued",
        and_(
            _JOBS.c.status == "running",
            _JOBS.c.lease_until < now,
            _JOBS.c.attempts < _JOBS.c.max_attempts,
        ),
    )
    due = (
        select(_JOBS.c.id)
        .where(_JOBS.c.kind.in_(list(kinds)), claimable)
        .order_by(_JOBS.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    # WITH due AS MATERIALIZED (SELECT id ... LIMIT 1 FOR UPDATE SKIP LOCKED) UPDATE jobs ... RETURNING
    chosen = due.cte("due").prefix_with("MATERIALIZED", dialect="postgresql")
    row = session.execute(
        update(_JOBS)
        .where(_JOBS.c.id.in_(select(chosen.c.id)), claimable)
        .values(
            status="running",
            attempts=_JOBS.c.attempts + 1,
            worker=worker,
            lease_until=now + lease,
            heartbeat_at=now,
            started_at=now,
            error=None,
        )
        .returning(_JOBS.c.id, _JOBS.c.kind, _JOBS.c.ref, _JOBS.c.attempts, _JOBS.c.max_attempts)
    ).one_or_none()
    if row is None:
        return None
    return Claim(row.id, row.kind, row.ref, row.attempts, row.max_attempts)


def _fenced(job_id: int, attempt: int) -> ColumnElement[bool]:
    return and_(_JOBS.c.id == job_id, _JOBS.c.attempts == attempt, _JOBS.c.status == "running")


def renew(session: Session, *, job_id: int, attempt: int, lease: timedelta, now: datetime) -> None:
    """Extend the lease of a job this worker runs (and lock its row until the commit); ``LeaseLost``
    when the job is no longer this attempt's."""
    result = cast(
        CursorResult[object],
        session.execute(
            update(_JOBS).where(_fenced(job_id, attempt)).values(lease_until=now + lease, heartbeat_at=now)
        ),
    )
    if result.rowcount != 1:
        raise LeaseLost(f"job {job_id}: attempt {attempt} no longer holds the lease")


def finish(
    session: Session, *, job_id: int, attempt: int, status: str, error: str | None, now: datetime
) -> None:
    """Record the outcome of a job this worker runs (``LeaseLost`` when it is no longer its)."""
    result = cast(
        CursorResult[object],
        session.execute(
            update(_JOBS)
            .where(_fenced(job_id, attempt))
            .values(status=status, error=error, finished_at=now, lease_until=None)
        ),
    )
    if result.rowcount != 1:
        raise LeaseLost(f"job {job_id}: attempt {attempt} no longer holds the lease")


def release(session: Session, *, job_id: int, attempt: int) -> bool:
    """Give a running job back at once (a worker stopping without finishing it): queued again, this
    attempt not counted. Returns whether it was still this attempt's."""
    result = cast(
        CursorResult[object],
        session.execute(
            update(_JOBS)
            .where(_fenced(job_id, attempt))
            .values(status="queued", attempts=attempt - 1, lease_until=None, worker=None)
        ),
    )
    return result.rowcount == 1
