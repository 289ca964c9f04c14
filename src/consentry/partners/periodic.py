"""Periodic jobs that run on threads beside the deliveries, one run of a job at a time (the retention
schedule is one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from consentry.config import Settings
from consentry.db import Database, utcnow

log = logging.getLogger("consentry.worker")


@dataclass(frozen=True)
class PeriodicTask:
    """A job the worker runs every ``every``: ``run(database, settings)``.

    Without ``due`` it runs when the worker starts and then every ``every``. With ``due`` (when the next run
    is due, asked at start and after each run, for jobs that remember their last run in the database) it
    runs then, but at least ``every`` after its previous run in this worker.
    """

    name: str
    every: timedelta
    run: Callable[[Database, Settings], object]
    due: Callable[[Database, Settings], datetime] | None = None


class Host(Protocol):
    """What the periodic jobs need of the worker they run beside."""

    @property
    def database(self) -> Database: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def name(self) -> str: ...
    @property
    def periodic(self) -> Sequence[PeriodicTask]: ...
    @property
    def stopping(self) -> bool: ...


class Periodic:
    """The worker's periodic jobs: each run happens on a thread of its own, one run of a job at a time."""

    def __init__(self, worker: Host, *, enabled: bool) -> None:
        self.worker = worker
        self.tasks = list(worker.periodic) if enabled else []
        self.next: dict[str, float] = {}
        self.running: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        """Schedule every job's first run."""
        for task in self.tasks:
            self.next[task.name] = self._next_run(task, previous=None)

    def _next_run(self, task: PeriodicTask, *, previous: float | None) -> float:
        """When ``task`` runs next (``time.monotonic``)."""
        floor = time.monotonic() if previous is None else previous + task.every.total_seconds()
        if task.due is None:
            return floor
        try:
            due = task.due(self.worker.database, self.worker.settings)
        except Exception:
            log.exception("%s: periodic %s: could not tell when it is due", self.worker.name, task.name)
            return floor
        return max(floor, time.monotonic() + (due - utcnow()).total_seconds())

    def seconds_to_next(self) -> float:
        """Seconds until the next job that is not running is due (infinite without jobs)."""
        with self._lock:
            waiting = [at for name, at in self.next.items() if name not in self.running]
        return max(0.0, min(waiting) - time.monotonic()) if waiting else float("inf")

    def tick(self) -> None:
        """Start every job that is due and not running (nothing once the worker is stopping)."""
        if self.worker.stopping or not self.tasks:
            return
        now = time.monotonic()
        with self._lock:
            for task in self.tasks:
                if task.name not in self.running and self.next[task.name] <= now:
                    thread = threading.Thread(
                        target=self._run, args=(task,), name=f"{self.worker.name}-{task.name}", daemon=True
                    )
                    self.running[task.name] = thread
                    thread.start()

    def _run(self, task: PeriodicTask) -> None:
        started = time.monotonic()
        name = self.worker.name
        log.info("%s: periodic %s started", name, task.name)
        try:
            result = task.run(self.worker.database, self.worker.settings)
        except Exception:
            log.exception("%s: periodic %s failed", name, task.name)
        else:
            shown = f": {result}" if result is not None and len(str(result)) <= 200 else ""
            log.info("%s: periodic %s done in %.1f s%s", name, task.name, time.monotonic() - started, shown)
        following = self._next_run(task, previous=started)
        with self._lock:
            self.next[task.name] = following
            del self.running[task.name]

    def finish(self) -> None:
        """Wait for the runs in progress."""
        with self._lock:
            running = list(self.running.values())
        if running:
            log.info("%s: waiting for periodic %s", self.worker.name, ", ".join(self.running))
        for thread in running:
            thread.join()


def periodic_tasks(settings: Settings) -> list[PeriodicTask]:
    """The periodic jobs ``consentry worker`` runs beside the deliveries: the retention schedule (every
    ``retention_interval_hours`` after the last finished run, recorded in the database, so a restarted
    worker does not run it again early)."""
    from consentry.retention.service import next_due, run_scheduled

    def due(database: Database, settings: Settings) -> datetime:
        with database.read() as session:
            return next_due(session, settings)

    return [
        PeriodicTask(
            "retention",
            every=timedelta(hours=settings.retention_interval_hours),
            run=run_scheduled,
            due=due,
        )
    ]
