"""Export jobs: an account holder's request (queued as a job of the one jobs table), the worker running it,
downloads while the file lasts, and the purge of expired files.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent.service import ConsentContext
from consentry.db import Database, utcnow
from consentry.errors import Conflict, ConsentryError, Forbidden, Gone, InvalidInput, NotFound
from consentry.exports.models import ExportJob
from consentry.exports.writer import write_export
from consentry.jobs import service as job_queue
from consentry.jobs.runner import Lease
from consentry.progress import throttled
from consentry.social.service import get_account

log = logging.getLogger(__name__)
EXPIRES_AFTER = timedelta(days=7)
"""A finished export can be downloaded this long; then its file is deleted."""

STALE_AFTER = timedelta(hours=1)
"""A job queued or running this long without finishing is taken as abandoned (its process died)."""

ACTIVE = ("queued", "running")
JOB_KIND = "account_export"
SCOPES = ("account", "linked")


def new_job_id() -> str:
    """A random export id: says nothing about other exports."""
    return "exp_" + secrets.token_hex(12)


def check_own(account_id: int, requested: int | None) -> None:
    """An account holder may only export their own account."""
    if requested is not None and requested != account_id:
        raise Forbidden(
            "an export can only be requested for your own account; leave account_id out (operators "
            "export any account with 'consentry account export ACCOUNT_ID --out FILE')",
            field="account_id",
        )


def request_export(
    session: Session,
    *,
    account_id: int,
    requested_by: str,
    now: datetime | None = None,
    max_attempts: int = 3,
    scope: str = "account",
) -> tuple[ExportJob, bool]:
    """Queue an export of ``account_id`` for the worker (the caller commits); returns the job and
    whether it is new. An account has at most one export of each scope (``account``, or ``linked``: with
    every linked account's files) in progress: asking again returns it."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", field="scope")
    now = now or utcnow()
    account = get_account(session, account_id)
    if account.status == "deleted":
        raise Gone(f"account {account_id} is deleted", field="account_id")
    active = session.scalars(
        select(ExportJob)
        .where(ExportJob.account_id == account_id, ExportJob.scope == scope, ExportJob.status.in_(ACTIVE))
        .order_by(ExportJob.created_at.desc())
    ).all()
    for job in active:
        if job.created_at > now - STALE_AFTER:
            return job, False
        job.status, job.error, job.finished_at = "failed", "abandoned: the job did not finish", now
        job_queue.fail(session, kind=JOB_KIND, ref=job.id, error=job.error, now=now)
    job = ExportJob(
        id=new_job_id(),
        account_id=account_id,
        status="queued",
        stage="queued",
        done=0,
        total=0,
        requested_by=requested_by,
        created_at=now,
        scope=scope,
    )
    session.add(job)
    session.flush()
    job_queue.enqueue(session, kind=JOB_KIND, ref=job.id, max_attempts=max_attempts)
    return job, True


def get_job(session: Session, *, account_id: int, job_id: str) -> ExportJob:
    """One of the account's exports; another account's export is ``NotFound`` like a missing one."""
    job = session.get(ExportJob, job_id)
    if job is None or job.account_id != account_id:
        raise NotFound(f"no export {job_id!r} of this account", field="export_id")
    return job


def latest_job(session: Session, *, account_id: int) -> ExportJob:
    """The account's most recent export, or ``NotFound``."""
    job = session.scalars(
        select(ExportJob).where(ExportJob.account_id == account_id).order_by(ExportJob.created_at.desc())
    ).first()
    if job is None:
        raise NotFound("this account has no export yet; start one with POST /v1/me/export", field="export")
    return job


def list_jobs(session: Session, *, account_id: int, limit: int = 20) -> list[ExportJob]:
    """The account's exports, newest first."""
    if not 1 <= limit <= 100:
        raise InvalidInput("limit must be between 1 and 100", field="limit")
    query = select(ExportJob).where(ExportJob.account_id == account_id)
    return list(session.scalars(query.order_by(ExportJob.created_at.desc()).limit(limit)))


def download_path(job: ExportJob, *, now: datetime | None = None) -> Path:
    """The file of a finished export: ``Conflict`` while it runs or when it failed, ``Gone`` once it
    expired or its file was removed."""
    now = now or utcnow()
    if job.status != "succeeded":
        hint = "; poll it until status is succeeded" if job.status in ACTIVE else f": {job.error}"
        raise Conflict(f"export {job.id} is {job.status}{hint}", field="export_id")
    if job.path is None or (job.expires_at is not None and job.expires_at <= now):
        raise Gone(f"export {job.id} expired; request a new one", field="export_id")
    path = Path(job.path)
    if not path.is_file():
        raise Gone(f"the file of export {job.id} is no longer there; request a new one", field="export_id")
    return path


def exports_folder(home: Path, account_id: int) -> Path:
    """Where an account's export files live."""
    return Path(home) / "exports" / str(account_id)


def abandon_job(session: Session, ref: str, error: str) -> None:
    """Mark an export failed that the worker gave up on (``jobs.runner.Handler.abandon``)."""
    job = session.get(ExportJob, ref)
    if job is not None and job.status in ACTIVE:
        job.status, job.error, job.finished_at = "failed", error, utcnow()


def run_job(
    database: Database,
    *,
    job_id: str,
    ctx: ConsentContext,
    home: Path,
    min_interval: float = 0.5,
    lease: Lease | None = None,
) -> None:
    """Run an export job, recording progress (at most every ``min_interval`` seconds) and the outcome
    on its row, each through ``lease`` (fenced by the worker's claim). Never raises for a failed export:
    failures are recorded on the job."""
    lease = lease or Lease(database)
    with lease.write() as session:
        job = session.get(ExportJob, job_id)
        if job is None or job.status not in ACTIVE:
            status = "failed" if job is None else job.status
            lease.finish(session, status=status, error=None if job else f"no export {job_id}")
            return
        account_id, scope = job.account_id, job.scope
        job.status, job.stage, job.started_at = "running", "starting", utcnow()

    def update(**values: Any) -> None:
        with lease.write() as session:
            job = session.get(ExportJob, job_id)
            if job is None:
                raise NotFound(f"no export {job_id}", field="export_id")
            for key, value in values.items():
                setattr(job, key, value)
            if values.get("status") in ("succeeded", "failed"):
                lease.finish(session, status=values["status"], error=values.get("error"))

    def record(stage: str, done: int, total: int) -> None:
        lease.check()
        update(stage=stage, done=done, total=total)

    target = exports_folder(home, account_id) / f"{job_id}.zip"
    try:
        summary = write_export(
            database,
            account_id=account_id,
            ctx=ctx,
            out=target,
            progress=throttled(record, min_interval=min_interval),
            scope=scope,
        )
    except ConsentryError as error:
        update(status="failed", error=error.detail, finished_at=utcnow())
        return
    except Exception as error:  # the job records any failure; the worker keeps running
        log.exception("export %s failed", job_id)
        update(status="failed", error=f"{error.__class__.__name__}: {error}", finished_at=utcnow())
        return
    finished = utcnow()
    update(
        status="succeeded",
        stage="done",
        done=summary.records,
        total=summary.records,
        path=str(summary.path),
        size_bytes=summary.bytes,
        sha256=summary.sha256,
        finished_at=finished,
        expires_at=finished + EXPIRES_AFTER,
    )
    purge_expired(database)


def purge_expired(database: Database, *, now: datetime | None = None) -> int:
    """Delete the files of expired exports (their rows stay, without a path); returns how many."""
    now = now or utcnow()
    with database.write() as session:
        jobs = session.scalars(
            select(ExportJob).where(ExportJob.path.is_not(None), ExportJob.expires_at <= now)
        ).all()
        for job in jobs:
            if job.path:
                Path(job.path).unlink(missing_ok=True)
            job.path = None
        return len(jobs)
