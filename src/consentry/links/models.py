"""Tables of linked accounts: one row per pair of accounts, requested by one and confirmed by the other."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from consentry.db import Base, UTCDateTime

LINK_STATUSES = ("pending", "confirmed")
LINK_SOURCES = ("user", "admin", "import")


class AccountLink(Base):
    """A link between two accounts, stored once per pair (``low_id < high_id``): links are symmetric.

    ``pending`` until the account that did not request it confirms; only ``confirmed`` links count.
    Unlinking deletes the row (the choices recorded meanwhile stay in the ledger); so does deleting
    either account.
    """

    __tablename__ = "account_links"
    __table_args__ = (
        CheckConstraint("low_id < high_id", name="ordered"),
        CheckConstraint("status IN ('pending', 'confirmed')", name="status"),
        CheckConstraint("source IN ('user', 'admin', 'import')", name="source"),
        UniqueConstraint("low_id", "high_id"),
        Index("ix_account_links_high_id", "high_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    low_id: Mapped[int] = mapped_column(BigInteger)
    high_id: Mapped[int] = mapped_column(BigInteger)
    requested_by: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
