"""Tables of the consent domain: policy versions, the ledger, its head, and subject keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from consentry.db import Base, UTCDateTime

RowId = BigInteger().with_variant(Integer, "sqlite")
"""64-bit keys that are SQLite's rowid itself (no second index), BIGINT elsewhere."""


class PolicyVersion(Base):
    """A version of the default-consent policy. Never edited once it takes effect."""

    __tablename__ = "policy_versions"
    __table_args__ = (CheckConstraint("applies_to IN ('all', 'new_accounts')", name="applies_to"),)

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())
    applies_to: Mapped[str] = mapped_column(String(16))
    defaults: Mapped[dict[str, Any]] = mapped_column(JSON)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200), default="")


class Subject(Base):
    """Maps an account to the opaque key that names it in the ledger. Deleted with the account."""

    __tablename__ = "consent_subjects"

    account_id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=False)
    subject_key: Mapped[str] = mapped_column(String(32), unique=True)


class ConsentEvent(Base):
    """One link of the hash chain. Rows are only ever inserted."""

    __tablename__ = "consent_events"
    __table_args__ = (
        CheckConstraint("value IN ('allow', 'deny')", name="value"),
        # with the value, a scan of this index answers "every event of these settings" (builds,
        # eligibility) without reading the wide rows; seq is the rowid, in every index on SQLite
        Index("ix_consent_events_subject_setting", "subject_key", "setting", "recorded_at", "value"),
    )

    seq: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=False)
    subject_key: Mapped[str] = mapped_column(String(32))
    setting: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[int | None] = mapped_column(Integer)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    client: Mapped[str] = mapped_column(String(16))
    chosen_by: Mapped[str | None] = mapped_column(String(32))
    """Subject key of the account that chose, on events of a change made for linked accounts."""
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class LedgerHead(Base):
    """The head of one ledger partition: its last event; writers lock it to append in order.

    A ledger has ``P`` partitions, fixed when it is created (one by default): row ``id = p + 1`` is the
    head of partition ``p``, whose ``n``-th event has seq ``(n - 1) * P + p + 1`` (with one partition,
    the single row ``id = 1`` and seq ``n``). ``recorded_at`` is the latest time any event in the
    partition's chain carries (null while it is empty): a live write takes its time while it holds
    this row and never earlier than it, so along each chain live writes never go back in time.
    """

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Notification(Base):
    """A message for an account holder that the platform delivers (in-app, e-mail: its choice)."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
