"""The jobs table: one row per job the worker runs (dataset builds, account exports).

A job names the domain row it works on (``kind`` and ``ref``); that row keeps the job's parameters, its
progress and its result, which the API shows. This row keeps what the runner needs: the lease, the
heartbeat and the attempts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from consentry.db import Base, UTCDateTime

JOB_STATUSES = ("queued", "running", "succeeded", "failed")


class Job(Base):
    """One job: ``queued`` until a worker claims it, ``running`` while a worker holds its lease (renewed
    by heartbeats), then ``succeeded`` or ``failed``. A running job whose lease ran out is claimed again
    (``attempts`` + 1) or, after ``max_attempts``, failed with ``error`` saying so."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name="status"),
        UniqueConstraint("kind", "ref"),
        Index("ix_jobs_status_lease", "status", "lease_until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
