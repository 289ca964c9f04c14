"""The transactional outbox: webhooks are queued in the same transaction as what they report.

``consentry worker`` delivers them later (``consentry.partners.worker``); queuing never calls out over the
network, so a partner's endpoint being down can never fail or slow the change that caused the message.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from consentry.datasets.models import Recipient
from consentry.db import utcnow
from consentry.partners.models import OutboxMessage


def new_message_id() -> str:
    """A fresh, unique webhook message id (``webhook-id``), kept across retries."""
    return f"msg_{uuid.uuid4().hex}"


def enqueue(
    session: Session,
    *,
    recipient: Recipient,
    event_type: str,
    data: dict[str, Any],
    at: datetime | None = None,
) -> OutboxMessage | None:
    """Queue a webhook for ``recipient`` (``None`` when it has no webhook endpoint).

    The payload follows the Standard Webhooks convention: ``{"type", "timestamp", "data"}``.
    """
    if not recipient.webhook_url:
        return None
    now = at or utcnow()
    message = OutboxMessage(
        message_id=new_message_id(),
        recipient_id=recipient.id,
        event_type=event_type,
        payload={"type": event_type, "timestamp": now.isoformat(), "data": data},
        status="pending",
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(message)
    return message
