"""Stored bearer tokens (only their SHA-256 is kept)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from consentry.db import Base, UTCDateTime


class ApiToken(Base):
    """A bearer token: ``admin`` for operators, ``account`` for one account holder."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint("kind IN ('admin', 'account')", name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    client: Mapped[str | None] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
