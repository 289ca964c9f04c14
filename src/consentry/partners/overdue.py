"""Overdue revocations (past their deadline without acknowledgement): the report, and the refusal of new
releases to a partner that has any or is suspended (``check_can_receive``).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consentry.datasets.models import Recipient
from consentry.db import utcnow
from consentry.errors import (
    Conflict,
)
from consentry.partners.models import Revocation
from consentry.partners.registry import get_partner
from consentry.partners.schemas import (
    OverduePartner,
    OverdueRelease,
    OverdueReport,
)


def overdue_report(
    session: Session, *, now: datetime | None = None, partner: str | None = None
) -> OverdueReport:
    """Revocations past their deadline without acknowledgement, per partner and release; the partner with
    the oldest missed deadline first."""
    now = now or utcnow()
    query = (
        select(
            Revocation.recipient_id,
            Revocation.release_id,
            func.count(),
            func.sum(Revocation.records),
            func.min(Revocation.deadline_at),
        )
        .where(Revocation.acknowledged_at.is_(None), Revocation.deadline_at < now)
        .group_by(Revocation.recipient_id, Revocation.release_id)
    )
    if partner is not None:
        query = query.where(Revocation.recipient_id == get_partner(session, partner).id)
    by_partner: dict[int, list[OverdueRelease]] = defaultdict(list)
    for recipient_id, release_id, count, records, oldest in session.execute(query):
        by_partner[int(recipient_id)].append(
            OverdueRelease(
                release=release_id, revocations=int(count), records=int(records or 0), oldest_deadline=oldest
            )
        )
    partners = {r.id: r for r in session.scalars(select(Recipient).where(Recipient.id.in_(list(by_partner))))}
    report = []
    for recipient_id, releases in by_partner.items():
        releases.sort(key=lambda r: (r.oldest_deadline, r.release))
        report.append(
            OverduePartner(
                partner=partners[recipient_id].name,
                status=partners[recipient_id].status,
                revocations=sum(r.revocations for r in releases),
                records=sum(r.records for r in releases),
                oldest_deadline=releases[0].oldest_deadline,
                releases=releases,
            )
        )
    report.sort(key=lambda p: (p.oldest_deadline, p.partner))
    return OverdueReport(as_of=now, partners=report)


def overdue_count(session: Session, *, recipient_id: int, now: datetime | None = None) -> int:
    """How many of a partner's revocations are overdue."""
    now = now or utcnow()
    return int(
        session.scalar(
            select(func.count()).where(
                Revocation.recipient_id == recipient_id,
                Revocation.acknowledged_at.is_(None),
                Revocation.deadline_at < now,
            )
        )
        or 0
    )


def check_can_receive(
    session: Session, *, recipient: Recipient, now: datetime | None = None, block_when_overdue: bool = True
) -> None:
    """Refuse (``Conflict`` naming ``recipient``) a new release to a suspended partner, or to one with
    overdue revocations while ``block_when_overdue``."""
    if recipient.status != "active":
        raise Conflict(
            f"recipient {recipient.name!r} is suspended and gets no new release "
            f"(resume it with 'consentry partner resume {recipient.name}')",
            field="recipient",
        )
    if block_when_overdue:
        overdue = overdue_count(session, recipient_id=recipient.id, now=now)
        if overdue:
            raise Conflict(
                f"recipient {recipient.name!r} has {overdue} overdue revocation(s) and gets no new release "
                "until they are acknowledged (see 'consentry partner overdue')",
                field="recipient",
            )
