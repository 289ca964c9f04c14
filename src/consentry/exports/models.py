"""Tables of the exports domain: an account holder's data export, produced as a background job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from consentry.db import Base, UTCDateTime

EXPORT_STATUSES = ("queued", "running", "succeeded", "failed")


class ExportJob(Base):
    """One requested export of one account's data; ``stage``/``done``/``total`` report progress.

    ``id`` is random (``exp_`` and 24 hex digits): ids say nothing about other accounts' exports. The file
    (``path``, a ZIP) exists once ``status`` is ``succeeded``, until ``expires_at``.
    """

    __tablename__ = "account_exports"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name="status"),
        Index("ix_account_exports_account_created", "account_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    stage: Mapped[str] = mapped_column(String(32), default="queued")
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    path: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    scope: Mapped[str] = mapped_column(String(16), default="account", server_default="account")
    """``account``, or ``linked``: the files of every account linked with it too."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
