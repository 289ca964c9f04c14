"""Export jobs on SQLite and PostgreSQL: one active job per account, its states, a failed run, a stale job
taken as abandoned, and downloads only of one's own finished export."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from consentry.consent.service import ConsentContext
from consentry.db import Database, utcnow
from consentry.errors import Conflict, Forbidden, Gone, NotFound
from consentry.exports import jobs
from consentry.exports.models import ExportJob
from tests.conftest import make_account


def test_service_lifecycle_states(
    database: Database, ctx: ConsentContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada, _ = make_account(database, handle="ada")
    bob, _ = make_account(database, handle="bob")
    with database.write() as session:
        job, created = jobs.request_export(session, account_id=ada, requested_by="test")
        same, created_again = jobs.request_export(session, account_id=ada, requested_by="test")
        job_id = job.id
    assert created and not created_again and same.id == job_id
    with database.read() as session:
        queued = jobs.get_job(session, account_id=ada, job_id=job_id)
        with pytest.raises(Conflict, match="queued"):
            jobs.download_path(queued)
        with pytest.raises(NotFound):
            jobs.get_job(session, account_id=bob, job_id=job_id)
    with pytest.raises(Forbidden):
        jobs.check_own(ada, bob)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(jobs, "write_export", broken)
    jobs.run_job(database, job_id=job_id, ctx=ctx, home=tmp_path)
    with database.read() as session:
        failed = jobs.get_job(session, account_id=ada, job_id=job_id)
        assert failed.status == "failed" and "disk on fire" in (failed.error or "")
        with pytest.raises(Conflict, match="failed"):
            jobs.download_path(failed)
    monkeypatch.undo()

    # a job abandoned by a dead process does not block a new request
    with database.write() as session:
        stuck, _ = jobs.request_export(session, account_id=bob, requested_by="test")
        stuck.created_at = utcnow() - jobs.STALE_AFTER - timedelta(minutes=1)
        stuck_id = stuck.id
    with database.write() as session:
        fresh, created = jobs.request_export(session, account_id=bob, requested_by="test")
        assert created and fresh.id != stuck_id
        fresh_id = fresh.id
        assert session.get(ExportJob, stuck_id).status == "failed"  # type: ignore[union-attr]
    jobs.run_job(database, job_id=fresh_id, ctx=ctx, home=tmp_path)
    with database.read() as session:
        done = jobs.get_job(session, account_id=bob, job_id=fresh_id)
        path = jobs.download_path(done)
        assert path.is_file() and path.parent == tmp_path / "exports" / str(bob)
        later = (done.expires_at or utcnow()) + timedelta(seconds=1)
        with pytest.raises(Gone, match="expired"):
            jobs.download_path(done, now=later)
    assert jobs.purge_expired(database, now=later) == 1
    assert not path.exists()
    with database.read() as session, pytest.raises(Gone):
        jobs.download_path(jobs.get_job(session, account_id=bob, job_id=fresh_id))
