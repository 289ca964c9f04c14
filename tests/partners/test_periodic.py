"""Periodic jobs beside the deliveries: they run on their schedule, survive their own errors, and the
retention schedule is not repeated early by a restarted worker."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from consentry.config import Settings
from consentry.db import Database, utcnow
from consentry.metering.models import AccessRecord
from consentry.partners.periodic import PeriodicTask, periodic_tasks
from consentry.partners.worker import Worker, start_in_thread
from consentry.retention.models import RetentionRun
from tests.retention.conftest import seed


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Settings with backoffs of milliseconds and four attempts."""
    return settings.model_copy(
        update={
            "webhook_max_attempts": 4,
            "webhook_backoff_base_seconds": 0.02,
            "webhook_backoff_cap_seconds": 0.05,
            "webhook_timeout_seconds": 5.0,
            "worker_concurrency": 4,
        }
    )


def test_periodic_tasks_run_beside_deliveries_and_survive_errors(database: Database, fast: Settings) -> None:
    calls: Counter[str] = Counter()

    def count(db: Database, settings: Settings) -> None:
        assert db is database and settings is fast
        calls["count"] += 1

    def broken(db: Database, settings: Settings) -> None:
        calls["broken"] += 1
        raise RuntimeError("boom")

    def later(db: Database, settings: Settings) -> None:
        calls["later"] += 1

    tasks = [
        PeriodicTask("count", every=timedelta(seconds=0.02), run=count),
        PeriodicTask("broken", every=timedelta(seconds=0.02), run=broken),
        PeriodicTask(
            "later", every=timedelta(seconds=0.01), run=later, due=lambda db, s: utcnow() + timedelta(hours=1)
        ),
    ]
    handle = start_in_thread(database, fast, periodic=tasks, poll_seconds=0.01)
    deadline = time.monotonic() + 30
    while calls["count"] < 3 or calls["broken"] < 3:
        assert time.monotonic() < deadline and handle.alive
        time.sleep(0.01)
    handle.stop()
    assert calls["later"] == 0  # not due for an hour
    Worker(database, fast, periodic=tasks).run_once()  # --once runs no periodic job
    assert calls["later"] == 0


def test_the_worker_runs_the_retention_schedule_and_a_restart_does_not_repeat_it(
    database: Database, fast: Settings, tmp_path: Path
) -> None:
    seed(database)
    rules = tmp_path / "retention.json"
    rules.write_text(json.dumps({"access_log": {"max_age": "P1M"}}))
    settings = fast.model_copy(update={"retention_file": rules, "retention_interval_hours": 24.0})
    assert [task.name for task in periodic_tasks(settings)] == ["retention"]

    def runs() -> list[tuple[str, str]]:
        with database.read() as session:
            found = session.execute(
                select(RetentionRun.trigger, RetentionRun.status).order_by(RetentionRun.id)
            )
            return [(trigger, status) for trigger, status in found]

    with start_in_thread(database, settings, periodic=periodic_tasks(settings), poll_seconds=0.01) as handle:
        deadline = time.monotonic() + 60
        while ("schedule", "finished") not in runs():
            assert time.monotonic() < deadline and handle.alive
            time.sleep(0.05)
    assert runs() == [("schedule", "finished")]
    with database.read() as session:  # the configured rule removed every access-log row (all are old)
        assert session.scalar(select(func.count()).select_from(AccessRecord)) == 0
    # A worker started again at once finds the next run a day away, so it does not run it twice.
    with start_in_thread(database, settings, periodic=periodic_tasks(settings), poll_seconds=0.01):
        time.sleep(1.0)
    assert runs() == [("schedule", "finished")]
