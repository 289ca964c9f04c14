"""Tables of the partners domain.

A partner is a ``Recipient`` (datasets domain) with the rest of its record filled in: status, deletion
deadline and webhook endpoint live on ``recipients``; this module adds its API keys, the revocations that
follow released records after an opt-out or deletion, and the webhook outbox with its delivery log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from consentry.consent.models import RowId
from consentry.db import Base, UTCDateTime

REVOCATION_REASONS = (
    "opt_out",
    "post_deleted",
    "interaction_deleted",
    "account_deleted",
    "account_deactivated",
    "retention_purge",
)
OUTBOX_STATUSES = ("pending", "delivered", "dead")


class PartnerKey(Base):
    """An API key of a partner: only its SHA-256 is kept; ``prefix`` identifies it in listings."""

    __tablename__ = "partner_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipient_id: Mapped[int] = mapped_column(Integer, ForeignKey("recipients.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Revocation(Base):
    """Records of one release that its recipient must delete by ``deadline_at``, and why.

    ``account_id`` names whose records they are (for the account holder's data-usage report; never shown
    to the partner, who knows authors only by pseudonym). The acknowledgement columns hold the partner's
    attestation: when and how it deleted them.
    """

    __tablename__ = "revocations"
    __table_args__ = (
        CheckConstraint(
            "reason IN ('opt_out', 'post_deleted', 'interaction_deleted', 'account_deleted', "
            "'account_deactivated', 'retention_purge')",
            name="reason",
        ),
        Index("ix_revocations_recipient_id", "recipient_id", "id"),
        Index("ix_revocations_account", "account_id"),
        Index("ix_revocations_open_deadline", "acknowledged_at", "deadline_at"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    recipient_id: Mapped[int] = mapped_column(Integer, ForeignKey("recipients.id"))
    release_id: Mapped[str] = mapped_column(String(40), ForeignKey("releases.id"), index=True)
    category: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(24))
    setting: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(BigInteger)
    record_ids: Mapped[list[int]] = mapped_column(JSON)
    records: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ack_method: Mapped[str | None] = mapped_column(String(100))
    ack_note: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    """A webhook to send, written in the same transaction as what it reports (transactional outbox).

    ``id`` is stable across retries, so ``webhook-id`` lets receivers drop duplicates.
    """

    __tablename__ = "webhook_outbox"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status"),
        Index("ix_webhook_outbox_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    recipient_id: Mapped[int] = mapped_column(Integer, ForeignKey("recipients.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


class Delivery(Base):
    """One attempt to deliver an outbox message: the delivery log."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(RowId, ForeignKey("webhook_outbox.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
