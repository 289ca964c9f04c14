"""A partner's API keys: issuing, listing and revoking them, and authenticating a request by one (keys
are stored as SHA-256 only; ``last_used_at`` is written at most once a minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from consentry.datasets.models import Recipient
from consentry.db import utcnow
from consentry.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
)
from consentry.ids import parse_id
from consentry.partners import keys
from consentry.partners.models import PartnerKey
from consentry.partners.registry import get_partner

TOUCH_INTERVAL = timedelta(seconds=60)
"""``last_used_at`` is written at most this often per key, so reads stay reads."""


@dataclass(frozen=True)
class PartnerPrincipal:
    """The partner behind an API key."""

    recipient_id: int
    name: str
    status: str
    key_id: int
    last_used_at: datetime | None

    @property
    def suspended(self) -> bool:
        """Whether the partner is suspended."""
        return self.status != "active"


def create_key(
    session: Session, *, partner: str, label: str = "", now: datetime | None = None
) -> tuple[PartnerKey, str]:
    """Issue an API key for ``partner``; the key is returned this once and stored as SHA-256."""
    target = get_partner(session, partner)
    if len(label) > 100:
        raise InvalidInput("a key label is at most 100 characters", field="label")
    key = keys.new_key()
    row = PartnerKey(
        recipient_id=target.id,
        prefix=keys.key_prefix(key),
        key_hash=keys.hash_key(key),
        label=label,
        created_at=now or utcnow(),
    )
    session.add(row)
    session.flush()
    return row, key


def list_keys(session: Session, *, partner: str) -> list[PartnerKey]:
    """A partner's keys, newest first (revoked ones included)."""
    target = get_partner(session, partner)
    return list(
        session.scalars(
            select(PartnerKey)
            .where(PartnerKey.recipient_id == target.id)
            .order_by(PartnerKey.created_at.desc(), PartnerKey.id.desc())
        )
    )


def revoke_key(session: Session, *, partner: str, key: str, now: datetime | None = None) -> PartnerKey:
    """Revoke one of ``partner``'s keys, named by id or by its listed prefix; idempotent."""
    target = get_partner(session, partner)
    query = select(PartnerKey).where(PartnerKey.recipient_id == target.id)
    if key.isascii() and key.isdigit():
        number = parse_id(key)
        rows = list(session.scalars(query.where(PartnerKey.id == number))) if number is not None else []
    else:
        rows = list(session.scalars(query.where(PartnerKey.prefix == key)))
    if not rows:
        raise NotFound(f"partner {partner!r} has no key {key!r}", field="key")
    if len(rows) > 1:
        raise Conflict(f"several keys start with {key!r}; name the key by id", field="key")
    row = rows[0]
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
        session.flush()
    return row


def authenticate(session: Session, *, key: str) -> PartnerPrincipal:
    """The partner of an API key; ``Unauthenticated`` if the key is unknown or revoked.

    Suspension is the caller's to enforce (``PartnerPrincipal.suspended``)."""
    row = session.scalar(select(PartnerKey).where(PartnerKey.key_hash == keys.hash_key(key)))
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("the partner API key is unknown or revoked")
    partner = session.get(Recipient, row.recipient_id)
    if partner is None:
        raise Unauthenticated("the partner of this key no longer exists")
    return PartnerPrincipal(
        recipient_id=partner.id,
        name=partner.name,
        status=partner.status,
        key_id=row.id,
        last_used_at=row.last_used_at,
    )


def needs_touch(principal: PartnerPrincipal, *, now: datetime) -> bool:
    """Whether the key's ``last_used_at`` is stale enough to be written again."""
    return principal.last_used_at is None or principal.last_used_at <= now - TOUCH_INTERVAL


def touch_key(session: Session, *, key_id: int, now: datetime | None = None) -> None:
    """Record that a key was used (at most once per ``TOUCH_INTERVAL``; concurrent requests agree)."""
    now = now or utcnow()
    session.execute(
        update(PartnerKey)
        .where(
            PartnerKey.id == key_id,
            or_(PartnerKey.last_used_at.is_(None), PartnerKey.last_used_at <= now - TOUCH_INTERVAL),
        )
        .values(last_used_at=now)
    )


def forbid_suspended(principal: PartnerPrincipal) -> PartnerPrincipal:
    """The principal, unless its partner is suspended (``Forbidden``)."""
    if principal.suspended:
        raise Forbidden(f"partner {principal.name!r} is suspended; releases are not available")
    return principal
