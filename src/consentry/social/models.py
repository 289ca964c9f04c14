"""Tables of the reference platform."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from consentry.db import Base, UTCDateTime

ACCOUNT_STATUSES = ("active", "deactivated", "deleted")

BigId = BigInteger().with_variant(Integer, "sqlite")


class Account(Base):
    """An account holder of the platform."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("status IN ('active', 'deactivated', 'deleted')", name="status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    country: Mapped[str | None] = mapped_column(String(2))
    birth_year: Mapped[int | None] = mapped_column(SmallInteger)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
