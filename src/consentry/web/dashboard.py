"""What the operator's dashboard shows, over every account: consent rates over time per setting and
jurisdiction, current opt-out shares, what each policy version did, recent releases, the revocations
owed by each partner and the scrapers' leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from consentry.consent.service import ConsentContext, load_policies
from consentry.datasets.models import Recipient, Release
from consentry.db import utcnow
from consentry.errors import InvalidInput
from consentry.metering import damages
from consentry.metering.schemas import TopOut
from consentry.metering.service import top
from consentry.partners.models import Revocation
from consentry.web.cohorts import Evaluator, PolicyEffect, policy_effects
from consentry.web.snapshot import ConsentStateCache

RANGES = {"90d": "13 weeks", "12m": "12 months", "5y": "5 years"}
ALL = "All accounts"


def timeline(now: datetime, range_key: str) -> list[datetime]:
    """The times a chart samples: weekly over 13 weeks, monthly over 12 months, or quarterly over 5
    years, ending now."""
    if range_key not in RANGES:
        raise InvalidInput(f"range must be one of {', '.join(RANGES)}", field="range")
    if range_key == "90d":
        return [now - timedelta(weeks=13 - i) for i in range(13)] + [now]
    step, count = (1, 12) if range_key == "12m" else (3, 20)
    month = now.year * 12 + now.month - 1
    month -= month % step
    points = []
    for i in range(count, 0, -1):
        m = month - (i - 1) * step
        points.append(datetime(m // 12, m % 12 + 1, 1, tzinfo=UTC))
    return [p for p in points if p < now] + [now]


@dataclass(frozen=True)
class ShareRow:
    """Current opt-out figures of one setting in one group (or over all groups)."""

    group: str
    population: int
    allow: int
    explicit_deny: int
    default_deny: int
    minors: int

    @property
    def deny_share(self) -> float:
        """Share of the population whose effective consent is deny."""
        return 1 - self.allow / self.population if self.population else 0.0


@dataclass(frozen=True)
class SettingShares:
    """Current opt-out figures of one setting."""

    key: str
    label: str
    total: ShareRow
    groups: list[ShareRow]


@dataclass(frozen=True)
class ConsentOverview:
    """Consent rates over time and now, and policy effects, over every account."""

    as_of: datetime
    accounts: int
    population: int
    events: int
    groups: list[str]
    times: list[datetime]
    rates: dict[str, dict[str, list[float | None]]]  # setting -> group (or ALL) -> share allowing
    shares: list[SettingShares]
    effects: dict[int, PolicyEffect]


def consent_overview(
    session: Session,
    *,
    cache: ConsentStateCache,
    ctx: ConsentContext,
    range_key: str = "12m",
    now: datetime | None = None,
) -> ConsentOverview:
    """Everything the dashboard shows about consent, from the cached state brought up to date."""
    now = now or utcnow()
    times = timeline(now, range_key)
    snapshot = cache.current(session)
    policies = load_policies(session)
    jurisdictions, keys = ctx.jurisdictions, list(snapshot.settings)
    evaluator = Evaluator(snapshot, policies=policies, jurisdictions=jurisdictions, times=times)
    states = [evaluator.state(t) for t in times]
    final = states[-1]
    groups = [g for i, g in enumerate(jurisdictions.names) if final.population[i] > 0]
    rates: dict[str, dict[str, list[float | None]]] = {}
    for s, key in enumerate(keys):
        lines: dict[str, list[float | None]] = {ALL: []}
        for state in states:
            total = int(state.population.sum())
            lines[ALL].append(float(state.allow[:, s].sum()) / total if total else None)
        for group in groups:
            g = jurisdictions.names.index(group)
            lines[group] = [
                float(state.allow[g, s]) / int(state.population[g]) if state.population[g] else None
                for state in states
            ]
        rates[key] = lines
    shares = []
    for s, key in enumerate(keys):

        def row(name: str, index: slice | int, s: int = s) -> ShareRow:
            population = int(np.sum(final.population[index]))
            minors = int(np.sum(final.minors[index]))
            allow = int(np.sum(final.allow[index, s]))
            explicit = int(np.sum(final.explicit_deny[index, s]))
            return ShareRow(name, population, allow, explicit, population - minors - allow - explicit, minors)

        shares.append(
            SettingShares(
                key=key,
                label=ctx.catalog.get(key).label,
                total=row(ALL, slice(None)),
                groups=[row(g, jurisdictions.names.index(g)) for g in groups],
            )
        )
    return ConsentOverview(
        as_of=now,
        accounts=len(snapshot.accounts),
        population=int(final.population.sum()),
        events=snapshot.events,
        groups=groups,
        times=times,
        rates=rates,
        shares=shares,
        effects=policy_effects(
            snapshot, policies=policies, jurisdictions=jurisdictions, now=now, governs=final.governs
        ),
    )


@dataclass(frozen=True)
class ReleaseRow:
    """A release and how much consent and deletions kept out of it."""

    id: str
    recipient: str
    purpose: str
    categories: list[str]
    status: str
    rows: int
    excluded: int
    removals: int
    created_at: datetime

    @property
    def excluded_share(self) -> float:
        """Share of candidate records left out."""
        total = self.rows + self.excluded
        return self.excluded / total if total else 0.0


def recent_releases(session: Session, *, limit: int = 10) -> list[ReleaseRow]:
    """The newest releases with their exclusion counts."""
    rows = session.execute(
        select(
            Release.id,
            Recipient.name,
            Release.purpose,
            Release.categories,
            Release.status,
            Release.rows,
            Release.excluded,
            Release.removals,
            Release.created_at,
        )
        .join(Recipient, Recipient.id == Release.recipient_id)
        .order_by(Release.created_at.desc(), Release.id.desc())
        .limit(limit)
    ).all()
    return [
        ReleaseRow(r[0], r[1], r[2], list(r[3] or []), r[4], int(r[5]), int(r[6]), int(r[7] or 0), r[8])
        for r in rows
    ]


@dataclass(frozen=True)
class PartnerRow:
    """A recipient and the state of the revocations sent to it."""

    name: str
    kind: str
    status: str
    pending: int
    overdue: int
    acknowledged: int
    oldest_overdue: datetime | None


def partner_revocations(session: Session, *, now: datetime | None = None) -> list[PartnerRow]:
    """Every recipient with its pending (not yet due), overdue and acknowledged revocations, in one
    grouped query; most overdue first."""
    now = now or utcnow()
    open_ = Revocation.acknowledged_at.is_(None)
    late = and_(open_, Revocation.deadline_at < now)
    rows = session.execute(
        select(
            Recipient.name,
            Recipient.kind,
            Recipient.status,
            func.coalesce(func.sum(case((and_(open_, Revocation.deadline_at >= now), 1), else_=0)), 0),
            func.coalesce(func.sum(case((late, 1), else_=0)), 0),
            func.count(Revocation.acknowledged_at),
            func.min(case((late, Revocation.deadline_at), else_=None)),
        )
        .outerjoin(Revocation, Revocation.recipient_id == Recipient.id)
        .group_by(Recipient.id, Recipient.name, Recipient.kind, Recipient.status)
    ).all()
    partners = [
        PartnerRow(
            name=r[0],
            kind=r[1],
            status=r[2],
            pending=int(r[3]),
            overdue=int(r[4]),
            acknowledged=int(r[5]),
            oldest_overdue=r[6].replace(tzinfo=UTC)
            if isinstance(r[6], datetime) and r[6].tzinfo is None
            else r[6],
        )
        for r in rows
    ]
    return sorted(partners, key=lambda p: (-p.overdue, -p.pending, p.name))


def leaderboard(session: Session, *, threshold: int, limit: int = 10, now: datetime | None = None) -> TopOut:
    """Scrapers by posts served in the last 24 hours, with projected damages (the metering ranking)."""
    return top(session, now=now, limit=limit, terms=damages.Terms(threshold=threshold))
