"""The kinds of job ``consentry worker`` runs, and the domain function behind each."""

from __future__ import annotations

import consentry.wiring  # noqa: F401  (the domains wired together: consent.events' subscribers)
from consentry.config import Settings
from consentry.consent.service import ConsentContext
from consentry.datasets import service as datasets
from consentry.db import Database
from consentry.exports import service as exports
from consentry.jobs.runner import Handler, JobRunner, Lease


def job_handlers(database: Database, settings: Settings) -> dict[str, Handler]:
    """Dataset builds and account exports, run with this process's settings and consent context."""
    ctx = ConsentContext.from_settings(settings)

    def build(ref: str, lease: Lease) -> None:
        datasets.run_job(
            database,
            job_id=int(ref),
            ctx=ctx,
            lease=lease,
            block_when_overdue=settings.block_releases_when_overdue,
        )

    def export(ref: str, lease: Lease) -> None:
        exports.run_job(database, job_id=ref, ctx=ctx, home=settings.home, lease=lease)

    return {
        datasets.JOB_KIND: Handler(run=build, abandon=datasets.abandon_job),
        exports.JOB_KIND: Handler(run=export, abandon=exports.abandon_job),
    }


def job_runner(
    database: Database, settings: Settings, *, name: str = "worker", poll_seconds: float = 1.0
) -> JobRunner:
    """A runner of every kind of job."""
    return JobRunner(
        database, settings, job_handlers(database, settings), name=name, poll_seconds=poll_seconds
    )
