"""Legal holds: an account on hold keeps all its data, whatever the retention rules say, until the hold is
released (the row stays, with who released it and when).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consentry.db import utcnow
from consentry.errors import Conflict, InvalidInput, NotFound
from consentry.retention.models import LegalHold
from consentry.social.models import Account


def _account(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist", field="account_id")
    return account


def active_hold(session: Session, account_id: int) -> LegalHold | None:
    """The account's active legal hold, if any."""
    return session.scalar(
        select(LegalHold).where(LegalHold.account_id == account_id, LegalHold.released_at.is_(None))
    )


def add_hold(
    session: Session, *, account_id: int, reason: str, by: str = "", at: datetime | None = None
) -> LegalHold:
    """Put an account on legal hold: no retention rule removes its data until the hold is released.

    ``NotFound`` (field ``account_id``) for an unknown account, ``Conflict`` when it is already held;
    nothing is written then.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a legal hold needs a reason", field="reason")
    if len(reason) > 2000:
        raise InvalidInput("reason is limited to 2,000 characters", field="reason")
    _account(session, account_id)
    existing = active_hold(session, account_id)
    if existing is not None:
        raise Conflict(
            f"account {account_id} is already on legal hold since {existing.created_at:%Y-%m-%d} "
            f"({existing.reason})",
            field="account_id",
        )
    hold = LegalHold(
        account_id=account_id, reason=reason.strip(), created_at=at or utcnow(), created_by=by[:200]
    )
    session.add(hold)
    try:
        session.flush()
    except IntegrityError as error:  # a concurrent hold won the partial unique index
        raise Conflict(f"account {account_id} is already on legal hold", field="account_id") from error
    return hold


def release_hold(session: Session, *, account_id: int, by: str = "", at: datetime | None = None) -> LegalHold:
    """Release an account's legal hold (the row stays, with ``released_at``); ``NotFound`` (field
    ``account_id``) for an unknown account or one without an active hold."""
    _account(session, account_id)
    hold = active_hold(session, account_id)
    if hold is None:
        raise NotFound(f"account {account_id} has no active legal hold", field="account_id")
    hold.released_at, hold.released_by = at or utcnow(), by[:200]
    session.flush()
    return hold


def list_holds(session: Session, *, include_released: bool = False) -> list[LegalHold]:
    """Legal holds, oldest first (active ones only unless ``include_released``)."""
    query = select(LegalHold).order_by(LegalHold.created_at, LegalHold.id)
    if not include_released:
        query = query.where(LegalHold.released_at.is_(None))
    return list(session.scalars(query))


def held_account_ids(session: Session) -> list[int]:
    """Accounts under an active legal hold, ascending."""
    return sorted(session.scalars(select(LegalHold.account_id).where(LegalHold.released_at.is_(None))))
