"""Tables of the retention domain: legal holds on accounts, and the record of every purge run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from consentry.db import Base, UTCDateTime

RUN_STATUSES = ("running", "finished", "failed")
RUN_TRIGGERS = ("cli", "api", "schedule")


class LegalHold(Base):
    """A legal hold on an account: while ``released_at`` is null, no retention rule removes its data.

    Rows are kept after release (the history of holds); an account has at most one active hold.
    """

    __tablename__ = "retention_holds"
    __table_args__ = (
        Index(
            "uq_retention_holds_active_account",
            "account_id",
            unique=True,
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
        Index("ix_retention_holds_account_id", "account_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200), default="")
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    released_by: Mapped[str | None] = mapped_column(String(200))


class RetentionRun(Base):
    """One ``retention apply``: the rules in force, per-rule counts, and how it ended (the purge report)."""

    __tablename__ = "retention_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'finished', 'failed')", name="status"),
        CheckConstraint("trigger IN ('cli', 'api', 'schedule')", name="trigger"),
        Index("ix_retention_runs_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="running")
    trigger: Mapped[str] = mapped_column(String(16), default="cli")
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    rows_removed: Mapped[int] = mapped_column(BigInteger, default=0)
    revocations: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
