"""The transactional outbox: webhooks are queued in the same transaction as what they report.

``consentry worker`` delivers them later (``consentry.partners.worker``); queuing never calls out over the
network, so a partner's endpoint being down can never fail or slow the change that caused the message.
A message is ``pending`` until a 2xx answer makes it ``delivered``, or until it runs out of attempts and is
``dead`` (a dead letter, which ``retry`` puts back). The rest of this module is what the operator sees of
it: the log, a message's attempts, retries and test pings. Every function takes the caller's session and
never commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from consentry.datasets.models import Recipient
from consentry.db import utcnow
from consentry.errors import Conflict, InvalidInput, NotFound
from consentry.partners.models import OUTBOX_STATUSES, Delivery, OutboxMessage

EVENT_TYPES = ("revocation.created", "ping")
"""Event types Consentry sends (see docs/webhooks.md)."""
MAX_LIMIT = 10_000


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


@dataclass(frozen=True)
class LoggedMessage:
    """An outbox message with the name of its partner, as the log shows it."""

    message: OutboxMessage
    partner: str


def _partner(session: Session, name: str) -> Recipient:
    recipient = session.scalar(select(Recipient).where(Recipient.name == name))
    if recipient is None:
        raise NotFound(f"unknown partner {name!r}", field="partner")
    return recipient


def list_messages(
    session: Session, *, partner: str | None = None, status: str | None = None, limit: int = 50
) -> list[LoggedMessage]:
    """The newest outbox messages first, optionally of one partner and in one status."""
    if status is not None and status not in OUTBOX_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(OUTBOX_STATUSES)}", field="status")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT:,}", field="limit")
    query = (
        select(OutboxMessage, Recipient.name)
        .join(Recipient, Recipient.id == OutboxMessage.recipient_id)
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    )
    if partner is not None:
        query = query.where(OutboxMessage.recipient_id == _partner(session, partner).id)
    if status is not None:
        query = query.where(OutboxMessage.status == status)
    return [LoggedMessage(message=m, partner=name) for m, name in session.execute(query)]


def get_message(session: Session, message_id: str) -> LoggedMessage:
    """One message by its ``webhook-id`` (``msg_...``), or ``NotFound``."""
    row = session.execute(
        select(OutboxMessage, Recipient.name)
        .join(Recipient, Recipient.id == OutboxMessage.recipient_id)
        .where(OutboxMessage.message_id == message_id)
    ).first()
    if row is None:
        raise NotFound(f"no webhook message {message_id!r}", field="message_id")
    return LoggedMessage(message=row[0], partner=row[1])


def attempts_of(session: Session, message: OutboxMessage) -> list[Delivery]:
    """Every attempt to deliver ``message``, oldest first (the delivery log)."""
    return list(
        session.scalars(select(Delivery).where(Delivery.outbox_id == message.id).order_by(Delivery.id))
    )


def retry(session: Session, message_id: str, *, at: datetime | None = None) -> OutboxMessage:
    """Put a dead message back to ``pending``, due at once with a fresh set of attempts.

    Its ``webhook-id`` stays the same, so a receiver that did process an earlier attempt drops it.
    """
    message = get_message(session, message_id).message
    if message.status != "dead":
        raise Conflict(f"webhook message {message_id} is {message.status}; only dead ones are retried")
    _revive(session, [message.id], at or utcnow())
    session.refresh(message)
    return message


def retry_dead(session: Session, *, partner: str | None = None, at: datetime | None = None) -> int:
    """Put every dead message (of ``partner``) back to ``pending``; returns how many."""
    query = select(OutboxMessage.id).where(OutboxMessage.status == "dead")
    if partner is not None:
        query = query.where(OutboxMessage.recipient_id == _partner(session, partner).id)
    ids = list(session.scalars(query))
    _revive(session, ids, at or utcnow())
    return len(ids)


def _revive(session: Session, ids: list[int], at: datetime) -> None:
    for start in range(0, len(ids), 1000):
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids[start : start + 1000]), OutboxMessage.status == "dead")
            .values(status="pending", attempts=0, next_attempt_at=at)
            .execution_options(synchronize_session=False)
        )


def send_test(session: Session, *, partner: str, at: datetime | None = None) -> OutboxMessage:
    """Queue a ``ping`` for ``partner``, to check its endpoint and signature verification end to end."""
    recipient = _partner(session, partner)
    now = at or utcnow()
    message = enqueue(
        session,
        recipient=recipient,
        event_type="ping",
        data={"partner": recipient.name, "message": "Test webhook from Consentry"},
        at=now,
    )
    if message is None:
        raise Conflict(
            f"partner {partner!r} has no webhook endpoint; set one with "
            f"'consentry partner update {partner} --webhook-url URL'",
            field="partner",
        )
    session.flush()
    return message
