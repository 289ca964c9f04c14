"""Build jobs: a build queued by the API and run by ``consentry worker``, its progress and outcome
recorded on its row through the worker's lease."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from consentry.consent.service import ConsentContext
from consentry.datasets.build import build_release
from consentry.datasets.eligibility import Retention
from consentry.datasets.models import BuildJob, Release
from consentry.db import Database, utcnow
from consentry.errors import ConsentryError, NotFound
from consentry.jobs import service as job_queue
from consentry.jobs.runner import Lease
from consentry.lake.source import LakeSpec
from consentry.progress import throttled

JOB_KIND = "dataset_build"


def create_job(
    session: Session, *, params: Mapping[str, Any], created_by: str, max_attempts: int = 3
) -> BuildJob:
    """Queue a build for the worker (the caller commits)."""
    job = BuildJob(
        status="queued",
        params=dict(params),
        stage="queued",
        done=0,
        total=0,
        created_by=created_by,
        created_at=utcnow(),
    )
    session.add(job)
    session.flush()
    job_queue.enqueue(session, kind=JOB_KIND, ref=str(job.id), max_attempts=max_attempts)
    return job


def get_job(session: Session, job_id: int) -> BuildJob:
    """One build job, or ``NotFound``."""
    job = session.get(BuildJob, job_id)
    if job is None:
        raise NotFound(f"no build job {job_id}", field="job_id")
    return job


def abandon_job(session: Session, ref: str, error: str) -> None:
    """Mark a build failed that the worker gave up on (``jobs.runner.Handler.abandon``)."""
    job = session.get(BuildJob, int(ref))
    if job is not None and job.status in job_queue.ACTIVE:
        job.status, job.error, job.finished_at = "failed", error, utcnow()


def run_job(
    database: Database,
    *,
    job_id: int,
    ctx: ConsentContext,
    build: Callable[..., Release] | None = None,
    min_interval: float = 0.5,
    block_when_overdue: bool = True,
    lease: Lease | None = None,
) -> None:
    """Run a build job, recording progress (at most every ``min_interval`` seconds) and the outcome on
    its row, each through ``lease`` (fenced by the worker's claim). Never raises for a failed build:
    failures are recorded on the job. A job already finished (its worker died after recording it) only
    has its outcome recorded on the claim again."""
    lease = lease or Lease(database)
    with lease.write() as session:
        job = get_job(session, job_id)
        if job.status not in job_queue.ACTIVE:
            lease.finish(session, status=job.status, error=job.error)
            return
        params = dict(job.params)
        job.status, job.stage, job.started_at = "running", "starting", utcnow()

    def record(stage: str, done: int, total: int) -> None:
        lease.check()
        if lease.finished:
            return
        with lease.write() as session:
            job = get_job(session, job_id)
            job.stage, job.done, job.total = stage, done, total

    def published(session: Session, release: Release) -> None:
        lease.renew(session)
        job = get_job(session, job_id)
        job.status, job.stage, job.release_id, job.finished_at = (
            "succeeded",
            "published",
            release.id,
            utcnow(),
        )
        job.done = job.total = max(job.total, job.done)
        lease.finish(session, status="succeeded")

    try:
        (build or build_release)(
            database,
            ctx=ctx,
            progress=throttled(record, min_interval=min_interval),
            block_when_overdue=params.get("block_when_overdue", block_when_overdue),
            on_publish=published,
            **_build_arguments(params),
        )
    except ConsentryError as error:
        _failed(lease, job_id, error.detail)
    except Exception as error:  # the job records any failure; the worker keeps running
        _failed(lease, job_id, f"{error.__class__.__name__}: {error}")


def _failed(lease: Lease, job_id: int, error: str) -> None:
    with lease.write() as session:
        job = get_job(session, job_id)
        job.status, job.error, job.finished_at = "failed", error, utcnow()
        lease.finish(session, status="failed", error=error)


def _build_arguments(params: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``build_release`` from a job's stored (JSON) parameters."""
    arguments: dict[str, Any] = {
        "recipient": params["recipient"],
        "purpose": params["purpose"],
        "categories": list(params["categories"]),
        "lake": LakeSpec.from_params(params),
        "out": Path(params["out"]),
        "engine": params.get("engine", "duckdb"),
        "spark_master": params.get("spark_master"),
        "since_release": params.get("since_release"),
        "scrub_pii": params.get("scrub_pii"),
        "retention": Retention(dict(params.get("retention_days") or {})),
        "license": params.get("license", "other"),
    }
    for key in ("as_of", "since", "until"):
        value = params.get(key)
        arguments[key] = datetime.fromisoformat(value) if value else None
    return arguments
