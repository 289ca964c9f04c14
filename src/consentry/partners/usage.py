"""Where an account's data went: every release holding its records, and what became of revocations.

The report is read from release lineage (the same cached bitmaps and (author, record) index the
revocations use), so it costs a bitmap lookup and a binary search per release, not a scan of any data.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.datasets import lineage
from consentry.db import utcnow
from consentry.partners.models import Revocation
from consentry.partners.revocations import CACHE, Holder, holders


@dataclass(frozen=True)
class RevocationState:
    """A revocation of some of the account's records, as its holder sees it."""

    id: int
    category: str
    reason: str
    records: int
    created_at: datetime
    deadline_at: datetime
    acknowledged_at: datetime | None
    deleted_at: datetime | None
    state: str  # pending | overdue | acknowledged


@dataclass(frozen=True)
class ReleaseUsage:
    """One release that delivered the account's records."""

    release_id: str
    recipient: str
    recipient_kind: str
    purpose: str
    categories: tuple[str, ...]
    delivered_at: datetime
    records: dict[str, int]
    revocations: list[RevocationState] = field(default_factory=list)


def state_of(revocation: Revocation, *, now: datetime) -> str:
    """``acknowledged`` once the recipient attested deletion, else ``overdue`` past the deadline, else
    ``pending``."""
    if revocation.acknowledged_at is not None:
        return "acknowledged"
    return "overdue" if revocation.deadline_at < now else "pending"


def data_usage(session: Session, *, account_id: int, now: datetime | None = None) -> list[ReleaseUsage]:
    """Every published release holding records of ``account_id``, newest first, with its revocations."""
    now = now or utcnow()
    found: list[tuple[Holder, dict[str, int]]] = []
    for holder in holders(session):
        counts = {
            category: lineage.count_of(CACHE.pairs(holder, category), account_id)
            for category in holder.categories
            if account_id in CACHE.authors(holder, category)
        }
        if counts:
            found.append((holder, counts))
    states: dict[str, list[RevocationState]] = defaultdict(list)
    for revocation in session.scalars(
        select(Revocation).where(Revocation.account_id == account_id).order_by(Revocation.id)
    ):
        states[revocation.release_id].append(
            RevocationState(
                id=revocation.id,
                category=revocation.category,
                reason=revocation.reason,
                records=revocation.records,
                created_at=revocation.created_at,
                deadline_at=revocation.deadline_at,
                acknowledged_at=revocation.acknowledged_at,
                deleted_at=revocation.deleted_at,
                state=state_of(revocation, now=now),
            )
        )
    usage = [
        ReleaseUsage(
            release_id=holder.release_id,
            recipient=holder.recipient.name,
            recipient_kind=holder.recipient.kind,
            purpose=holder.purpose,
            categories=holder.categories,
            delivered_at=holder.delivered_at,
            records=counts,
            revocations=states.get(holder.release_id, []),
        )
        for holder, counts in found
    ]
    return sorted(usage, key=lambda u: (u.delivered_at, u.release_id), reverse=True)
