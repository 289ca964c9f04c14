"""The jobs table and its runner on a real database (SQLite and PostgreSQL): claims, leases, fencing,
expiry after the last attempt, giving a job back, and a handler that crashes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from consentry.config import Settings
from consentry.db import Database, utcnow
from consentry.exports import service as exports
from consentry.exports.models import ExportJob
from consentry.jobs import service
from consentry.jobs.models import Job
from consentry.jobs.runner import Handler, JobRunner, Lease
from consentry.jobs.service import LeaseLost
from tests.conftest import make_account

LEASE = timedelta(seconds=30)


def enqueue(database: Database, count: int, *, kind: str = "test", max_attempts: int = 3) -> list[int]:
    with database.write() as session:
        return [
            service.enqueue(session, kind=kind, ref=f"r{n}", max_attempts=max_attempts).id
            for n in range(count)
        ]


def expire_leases(database: Database) -> None:
    with database.write() as session:
        session.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))


def claim(database: Database, worker: str = "w") -> service.Claim | None:
    with database.write() as session:
        return service.claim(session, kinds=["test"], worker=worker, lease=LEASE, now=utcnow())


def test_concurrent_workers_claim_each_job_once(database: Database) -> None:
    ids = enqueue(database, 40)
    own = [Database(database.url) for _ in range(4)]
    claimed: list[list[int]] = [[] for _ in own]
    start = threading.Barrier(len(own))

    def work(n: int) -> None:
        start.wait()
        while (got := claim(own[n], f"w{n}")) is not None:
            claimed[n].append(got.id)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(own))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for db in own:
        db.dispose()
    every = [job_id for ids_ in claimed for job_id in ids_]
    assert sorted(every) == ids  # each exactly once
    with database.read() as session:
        rows = session.query(Job).all()
        assert {(r.status, r.attempts) for r in rows} == {("running", 1)}
        assert all(r.worker == f"w{n}" for n, got in enumerate(claimed) for r in rows if r.id in got)


def test_a_lease_that_ran_out_is_claimed_again_and_the_old_attempt_is_fenced(database: Database) -> None:
    (job_id,) = enqueue(database, 1)
    first = claim(database, "a")
    assert first is not None and first.attempt == 1
    assert claim(database, "b") is None  # leased
    expire_leases(database)
    second = claim(database, "b")
    assert second is not None and (second.id, second.attempt) == (job_id, 2)
    with database.write() as session, pytest.raises(LeaseLost):
        service.renew(session, job_id=job_id, attempt=1, lease=LEASE, now=utcnow())
    with database.write() as session, pytest.raises(LeaseLost):
        service.finish(session, job_id=job_id, attempt=1, status="succeeded", error=None, now=utcnow())
    with database.write() as session:
        service.renew(session, job_id=job_id, attempt=2, lease=LEASE, now=utcnow())
        service.finish(session, job_id=job_id, attempt=2, status="succeeded", error=None, now=utcnow())
    with database.read() as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.status, job.attempts, job.worker) == ("succeeded", 2, "b")
        assert job.lease_until is None and job.finished_at is not None


def test_after_the_last_attempt_the_job_fails_with_a_reason(database: Database) -> None:
    (job_id,) = enqueue(database, 1, max_attempts=2)
    for _ in range(2):
        assert claim(database) is not None
        expire_leases(database)
    assert claim(database) is None
    with database.write() as session:
        expired = service.expire(session, kinds=["test"], now=utcnow())
    assert [(e.id, e.ref, e.attempts) for e in expired] == [(job_id, "r0", 2)]
    with database.read() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "failed"
        assert job.error == expired[0].error and "on each of 2 attempts" in job.error


def test_a_job_given_back_is_queued_again_without_counting_the_attempt(database: Database) -> None:
    (job_id,) = enqueue(database, 1)
    got = claim(database)
    assert got is not None
    with database.write() as session:
        assert service.release(session, job_id=job_id, attempt=1)
    with database.read() as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.status, job.attempts, job.worker) == ("queued", 0, None)
    again = claim(database)
    assert again is not None and again.attempt == 1


def runner(database: Database, settings: Settings, handlers: dict[str, Handler]) -> JobRunner:
    return JobRunner(database, settings, handlers, name="test")


def test_the_runner_records_a_crashing_or_silent_handler_as_failed(
    database: Database, settings: Settings
) -> None:
    abandoned: list[tuple[str, str]] = []

    def crash(ref: str, lease: Lease) -> None:
        if ref == "r0":
            raise RuntimeError("bug in the handler")

    def abandon(session: Session, ref: str, error: str) -> None:
        abandoned.append((ref, error))

    enqueue(database, 2)
    assert runner(database, settings, {"test": Handler(run=crash, abandon=abandon)}).run_once() == 2
    with database.read() as session:
        errors = {job.ref: (job.status, job.error) for job in session.query(Job)}
    assert errors == {
        "r0": ("failed", "RuntimeError: bug in the handler"),
        "r1": ("failed", "RuntimeError: the job ended without recording an outcome"),
    }
    assert abandoned == [(ref, error) for ref, (_, error) in sorted(errors.items())]


def test_the_runner_expires_jobs_of_dead_workers_and_tells_their_domain(
    database: Database, settings: Settings
) -> None:
    abandoned: list[str] = []
    enqueue(database, 1, max_attempts=1)
    assert claim(database) is not None  # a worker that then dies
    expire_leases(database)

    def never(ref: str, lease: Lease) -> None:
        raise AssertionError("an expired job is not run again")

    handler = Handler(run=never, abandon=lambda session, ref, error: abandoned.append(ref))
    assert runner(database, settings, {"test": handler}).run_once() == 0
    assert abandoned == ["r0"]


def test_an_export_whose_worker_died_is_finished_by_the_next(
    database: Database, settings: Settings, run_jobs: Callable[[], int]
) -> None:
    ada, _ = make_account(database, handle="ada")
    with database.write() as session:
        export, _ = exports.request_export(session, account_id=ada, requested_by="test")
        export_id = export.id
    with database.write() as session:  # a worker claims it, marks it running, and dies
        got = service.claim(session, kinds=[exports.JOB_KIND], worker="dead", lease=LEASE, now=utcnow())
        assert got is not None and got.ref == export_id
        row = session.get(ExportJob, export_id)
        assert row is not None
        row.status, row.stage = "running", "posts"
    assert run_jobs() == 0  # its lease has not run out
    expire_leases(database)
    assert run_jobs() == 1
    with database.read() as session:
        done = exports.get_job(session, account_id=ada, job_id=export_id)
        assert done.status == "succeeded" and exports.download_path(done).is_file()
        job = service.get(session, kind=exports.JOB_KIND, ref=export_id)
        assert (job.status, job.attempts) == ("succeeded", 2)


def test_a_stale_export_fails_its_job_too(database: Database, settings: Settings) -> None:
    ada, _ = make_account(database, handle="ada")
    with database.write() as session:
        stuck, _ = exports.request_export(session, account_id=ada, requested_by="test")
        stuck.created_at = utcnow() - exports.STALE_AFTER - timedelta(minutes=1)
        stuck_id = stuck.id
    with database.write() as session:
        exports.request_export(session, account_id=ada, requested_by="test")
        job = service.get(session, kind=exports.JOB_KIND, ref=stuck_id)
        assert job.status == "failed" and job.error == "abandoned: the job did not finish"
