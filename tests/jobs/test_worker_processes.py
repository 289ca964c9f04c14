"""Real ``consentry worker`` processes: a worker killed with SIGKILL mid-job leaves its job to another
worker once the lease runs out (or, after the last attempt, failed with a reason); a live worker's
heartbeats keep its job from a second worker. On SQLite and on PostgreSQL.

A build is held mid-job by a lake whose posts file is a named pipe: the worker that reads it blocks in
``open()`` (as on a stalled disk or network share) while its heartbeat thread goes on."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consentry.api import create_app
from consentry.config import Settings
from consentry.consent.service import ConsentContext
from consentry.datasets import service as datasets
from consentry.datasets.models import BuildJob, Release
from consentry.db import Database
from consentry.jobs.models import Job
from tests.datasets.conftest import load
from tests.datasets.scenario import AS_OF, write_scenario

LEASE_SECONDS = 2


def stalled_lake(source: Path, target: Path) -> tuple[Path, Path]:
    """A copy of ``source`` whose posts file is a named pipe; returns the pipe and the real file."""
    shutil.copytree(source, target)
    (posts,) = sorted((target / "posts").rglob("*.parquet"))
    real = target.parent / "posts.parquet.real"
    posts.rename(real)
    os.mkfifo(posts)
    return posts, real


def queue_build(database: Database, lake: Path, out: Path, *, max_attempts: int) -> int:
    params = {
        "recipient": "assistant",
        "purpose": "train-ai",
        "categories": ["posts"],
        "lake": str(lake),
        "out": str(out),
        "as_of": AS_OF.isoformat(),
    }
    with database.write() as session:
        job = datasets.create_job(session, params=params, created_by="test", max_attempts=max_attempts)
        return job.id


class Workers:
    """``consentry worker`` processes on the test database, stopped (killed) at the end."""

    def __init__(self, settings: Settings, database: Database, logs: Path) -> None:
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
            "CONSENTRY_HOME": str(settings.home),
            "CONSENTRY_DATABASE_URL": database.url,
            "CONSENTRY_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        }
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "consentry.cli", "worker", "--poll", "0.1"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append(process)
        return process

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("worker-*.log")))

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def scenario_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made lake of ``tests/datasets/scenario.py`` (read-only)."""
    return write_scenario(tmp_path_factory.mktemp("scenario") / "lake")


@pytest.fixture
def workers(settings: Settings, database: Database, tmp_path: Path) -> Iterator[Workers]:
    logs = tmp_path / "logs"
    logs.mkdir()
    started = Workers(settings, database, logs)
    try:
        yield started
    finally:
        started.stop()


def job_row(database: Database, build_id: int) -> Job:
    with database.read() as session:
        job = session.query(Job).filter_by(kind="dataset_build", ref=str(build_id)).one()
        session.expunge(job)
        return job


def wait_for(condition: Callable[[], bool], what: str, workers: Workers, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{workers.output()}"
        time.sleep(0.1)


def build_status(
    settings: Settings, database: Database, admin_token: str, build_id: int
) -> dict[str, object]:
    """The build as the API shows it."""
    with TestClient(create_app(settings, database=database, migrate=False)) as client:
        response = client.get(
            f"/v1/admin/datasets/builds/{build_id}", headers={"Authorization": f"Bearer {admin_token}"}
        )
    assert response.status_code == 200, response.text
    shown: dict[str, object] = response.json()
    return shown


def test_a_killed_worker_s_job_is_finished_by_another_and_never_run_twice_at_once(
    database: Database,
    settings: Settings,
    ctx: ConsentContext,
    scenario_lake: Path,
    tmp_path: Path,
    workers: Workers,
    admin_token: str,
) -> None:
    load(database, ctx, scenario_lake)
    pipe, real = stalled_lake(scenario_lake, tmp_path / "lake")
    out = tmp_path / "release"
    build_id = queue_build(database, tmp_path / "lake", out, max_attempts=3)

    first = workers.start()
    wait_for(lambda: job_row(database, build_id).status == "running", "the first claim", workers)
    held = job_row(database, build_id)
    assert held.attempts == 1 and held.worker is not None and f":{first.pid}:" in held.worker
    second = workers.start()
    time.sleep(3 * LEASE_SECONDS)  # heartbeats renew the lease: the second worker must not take the job
    still = job_row(database, build_id)
    assert (still.status, still.attempts, still.worker) == ("running", 1, held.worker), workers.output()
    assert still.heartbeat_at is not None and held.heartbeat_at is not None
    assert still.heartbeat_at > held.heartbeat_at
    assert build_status(settings, database, admin_token, build_id)["status"] == "running"

    os.replace(real, pipe)  # the lake is whole again, for whoever reads it next
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    wait_for(lambda: job_row(database, build_id).status == "succeeded", "the second worker", workers)
    done = job_row(database, build_id)
    assert done.attempts == 2 and done.worker is not None and f":{second.pid}:" in done.worker
    shown = build_status(settings, database, admin_token, build_id)
    assert shown["status"] == "succeeded" and shown["stage"] == "published", shown
    assert shown["done"] == shown["total"] and shown["release_id"]
    with database.read() as session:
        assert [r.id for r in session.query(Release)] == [shown["release_id"]]  # published once
        assert session.get(BuildJob, build_id).error is None  # type: ignore[union-attr]
    assert (out / "manifest.json").is_file()


def test_a_job_whose_worker_dies_on_its_last_attempt_fails_visibly(
    database: Database,
    settings: Settings,
    ctx: ConsentContext,
    scenario_lake: Path,
    tmp_path: Path,
    workers: Workers,
    admin_token: str,
) -> None:
    load(database, ctx, scenario_lake)
    stalled_lake(scenario_lake, tmp_path / "lake")
    build_id = queue_build(database, tmp_path / "lake", tmp_path / "release", max_attempts=1)
    first = workers.start()
    wait_for(lambda: job_row(database, build_id).status == "running", "the claim", workers)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    workers.start()
    wait_for(lambda: job_row(database, build_id).status == "failed", "the job to fail", workers)
    job = job_row(database, build_id)
    assert job.attempts == 1 and job.error and "stopped renewing its lease" in job.error
    shown = build_status(settings, database, admin_token, build_id)
    assert shown["status"] == "failed" and shown["error"] == job.error
    assert shown["finished_at"] is not None
