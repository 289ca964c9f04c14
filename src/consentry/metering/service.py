"""Statement queries over the access log (damages statements and the 24-hour ranking), and the metering
domain's public face: organisations (``consentry.metering.organisations``) and the access log
(``consentry.metering.access_log``). No HTTP here.

Functions take a ``session`` and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from consentry.db import utcnow
from consentry.errors import InvalidInput, NotFound
from consentry.metering import damages
from consentry.metering.access_log import (
    BASIS,
    SUBJECT,
    AccessEvent,
    AccessLogWriter,
    BucketKey,
    append_access_log,
    minute_of,
)
from consentry.metering.attribution import (
    UNATTRIBUTED,
)
from consentry.metering.meter import check_time
from consentry.metering.models import (
    AccessRecord,
    Organisation,
)
from consentry.metering.organisations import (
    NAME_KEY_LENGTH,
    add_network,
    create_organisation,
    delete_organisation,
    get_organisation,
    issue_key,
    key_out,
    list_organisations,
    load_directory,
    name_key,
    network_out,
    organisation_out,
    remove_network,
    resolve_key,
    revoke_key,
    update_organisation,
)
from consentry.metering.schemas import (
    BreachWindow,
    Breakdown,
    HourEvidence,
    Statement,
    TermsIn,
    TopEntry,
    TopOut,
)

__all__ = [
    "BASIS",
    "METHOD",
    "NAME_KEY_LENGTH",
    "SUBJECT",
    "AccessEvent",
    "AccessLogWriter",
    "BucketKey",
    "Target",
    "add_network",
    "append_access_log",
    "create_organisation",
    "delete_organisation",
    "get_organisation",
    "issue_key",
    "key_out",
    "list_organisations",
    "load_directory",
    "minute_of",
    "name_key",
    "network_out",
    "organisation_out",
    "remove_network",
    "resolve_key",
    "resolve_target",
    "revoke_key",
    "statement",
    "top",
    "update_organisation",
]


# --- statements ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Whose access-log rows a statement covers."""

    label: str
    subject: str
    organisation_id: int | None

    def condition(self) -> ColumnElement[bool]:
        """The access-log filter."""
        if self.organisation_id is not None:
            return AccessRecord.organisation_id == self.organisation_id
        return AccessRecord.subject == self.subject


def resolve_target(session: Session, *, ref: int | str) -> Target:
    """An organisation (id or name) or an unregistered subject (``crawler:...``, ``net:...``,
    ``spoofed:...``: a registered crawler's user agent without its proof, or ``unknown``: requests that
    could not be attributed)."""
    text = str(ref).strip()
    if text.startswith(("crawler:", "net:", "spoofed:")) or text == UNATTRIBUTED.subject:
        seen = session.scalar(select(AccessRecord.id).where(AccessRecord.subject == text).limit(1))
        if seen is None:
            raise NotFound(f"no access by {text!r} is logged", field="organisation")
        return Target(label=text, subject=text, organisation_id=None)
    organisation = get_organisation(session, ref=text)
    return Target(label=organisation.name, subject=f"org:{organisation.id}", organisation_id=organisation.id)


METHOD = (
    "A breach window is a 24-hour period [s, s+24h) starting at a minute s in which posts were served, "
    "holding more than the threshold. Windows are taken greedily: the earliest, then the earliest starting "
    "at or after its end, and so on; they never overlap. Only posts served within the statement period "
    "are counted. Each hour of evidence shows the posts per attribution basis: signed (a Web Bot Auth "
    "signature of the organisation's registered agent), api_key, network (a network registered for it), "
    "user_agent (a crawler user agent naming its operator, which anyone can send)."
)


def statement(
    session: Session,
    *,
    organisation: int | str,
    start: datetime,
    end: datetime,
    terms: damages.Terms | None = None,
    evidence_rows: int = 10,
) -> Statement:
    """The damages statement of an organisation over ``[start, end)``."""
    terms = terms or damages.Terms()
    damages.check_period(start, end)
    target = resolve_target(session, ref=organisation)
    rows = session.execute(
        select(AccessRecord.minute, func.sum(AccessRecord.posts), func.sum(AccessRecord.requests))
        .where(target.condition(), AccessRecord.minute >= start, AccessRecord.minute < end)
        .group_by(AccessRecord.minute)
        .order_by(AccessRecord.minute)
    ).all()
    minutes = np.fromiter((damages.epoch_minute(row[0]) for row in rows), dtype=np.int64, count=len(rows))
    posts = np.fromiter((int(row[1]) for row in rows), dtype=np.int64, count=len(rows))
    requests = np.fromiter((int(row[2]) for row in rows), dtype=np.int64, count=len(rows))
    buckets = damages.prepare(np.zeros_like(minutes), minutes, posts, requests)
    found = damages.find_windows(buckets, threshold=terms.threshold)
    hour_posts, hour_requests = damages.hourly_evidence(buckets, found)
    windows: list[BreachWindow] = []
    for number in range(len(found)):
        window_start = damages.from_minute(int(found.start[number]))
        window_end = window_start + timedelta(days=1)
        amount = damages.amount_cents(int(found.posts[number]), terms)
        hours = [
            HourEvidence(
                start=window_start + timedelta(hours=hour),
                end=window_start + timedelta(hours=hour + 1),
                posts=int(hour_posts[number, hour]),
                requests=int(hour_requests[number, hour]),
            )
            for hour in range(24)
        ]
        scope = (
            target.condition(),
            AccessRecord.minute >= window_start,
            AccessRecord.minute < min(window_end, end),
        )
        hour_bases = _hour_bases(session, scope, window_start)
        for hour_number, evidence in enumerate(hours):
            evidence.bases = hour_bases.get(hour_number, {})
        breakdowns: dict[str, list[Breakdown]] = {}
        for name, column in (
            ("routes", AccessRecord.route),
            ("clients", AccessRecord.client),
            ("bases", AccessRecord.basis),
            ("evidence", AccessRecord.evidence),
        ):
            total = func.sum(AccessRecord.posts)
            breakdowns[name] = [
                Breakdown(name=str(value), posts=int(count))
                for value, count in session.execute(
                    select(column, total)
                    .where(*scope)
                    .group_by(column)
                    .order_by(total.desc())
                    .limit(evidence_rows)
                )
            ]
        windows.append(
            BreachWindow(
                number=number + 1,
                start=window_start,
                end=window_end,
                posts=int(found.posts[number]),
                amount_cents=amount,
                amount_usd=damages.format_usd(amount),
                hours=hours,
                routes=breakdowns["routes"],
                clients=breakdowns["clients"],
                bases=[Breakdown(name=b.name or "unrecorded", posts=b.posts) for b in breakdowns["bases"]],
                evidence=[b for b in breakdowns["evidence"] if b.name],
            )
        )
    total_cents = sum(window.amount_cents for window in windows)
    return Statement(
        organisation=target.label,
        organisation_id=target.organisation_id,
        subject=target.subject,
        period_from=start,
        period_to=end,
        terms=TermsIn(threshold=terms.threshold, rate_cents=terms.rate_cents, rounding=terms.rounding),
        posts_in_period=int(posts.sum()),
        posts_in_windows=sum(window.posts for window in windows),
        windows=windows,
        total_amount_cents=total_cents,
        total_amount_usd=damages.format_usd(total_cents),
        generated_at=utcnow(),
        method=METHOD,
    )


def _hour_bases(
    session: Session, scope: tuple[ColumnElement[bool], ...], start: datetime
) -> dict[int, dict[str, int]]:
    """Posts per attribution basis in each hour of a window (``unrecorded`` for rows without one)."""
    total = func.sum(AccessRecord.posts)
    result: dict[int, dict[str, int]] = {}
    for minute, basis, posts in session.execute(
        select(AccessRecord.minute, AccessRecord.basis, total)
        .where(*scope)
        .group_by(AccessRecord.minute, AccessRecord.basis)
    ):
        hour = int((check_time(minute) - start).total_seconds() // 3600)
        per_hour = result.setdefault(hour, {})
        name = basis or "unrecorded"
        per_hour[name] = per_hour.get(name, 0) + int(posts)
    return result


def top(
    session: Session, *, now: datetime | None = None, limit: int = 20, terms: damages.Terms | None = None
) -> TopOut:
    """Subjects by posts served in the 24 hours up to ``now``, with their projected liability.

    The projected liability is what the last 24 hours would owe as a breach window: the amount for its
    posts when they exceed the threshold, else zero.
    """
    terms = terms or damages.Terms()
    now = check_time(now)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    window_start = minute_of(now) - timedelta(minutes=damages.WINDOW_MINUTES - 1)
    total = func.sum(AccessRecord.posts)
    rows = session.execute(
        select(AccessRecord.subject, func.max(AccessRecord.organisation_id), total)
        .where(AccessRecord.minute >= window_start, AccessRecord.minute <= now)
        .group_by(AccessRecord.subject)
        .order_by(total.desc(), AccessRecord.subject)
        .limit(limit)
    ).all()
    ids = {row[1] for row in rows if row[1] is not None}
    organisations = (
        {org.id: org for org in session.scalars(select(Organisation).where(Organisation.id.in_(ids)))}
        if ids
        else {}
    )
    entries = []
    for subject, organisation_id, posts_sum in rows:
        posts = int(posts_sum or 0)
        organisation = organisations.get(organisation_id) if organisation_id is not None else None
        projected = damages.amount_cents(posts, terms) if posts > terms.threshold else 0
        entries.append(
            TopEntry(
                subject=subject,
                organisation_id=organisation_id,
                organisation=organisation.name if organisation else subject,
                mode=organisation.mode if organisation else None,
                posts_24h=posts,
                threshold=terms.threshold,
                share_of_threshold=round(posts / terms.threshold, 6) if terms.threshold else 0.0,
                projected_cents=projected,
                projected_usd=damages.format_usd(projected),
            )
        )
    return TopOut(
        as_of=now,
        window_start=window_start,
        terms=TermsIn(threshold=terms.threshold, rate_cents=terms.rate_cents, rounding=terms.rounding),
        entries=entries,
    )
