"""Policy versions: validated, measured against every account, announced, never edited afterwards."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from consentry.consent.context import ConsentContext
from consentry.consent.impact import Impact, measure_impact
from consentry.consent.models import Notification, PolicyVersion
from consentry.consent.policy import APPLIES_TO, Policy, validate_defaults
from consentry.consent.tables import accounts_table, events_table
from consentry.db import utcnow
from consentry.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)


def policy_of(row: PolicyVersion) -> Policy:
    """The evaluation view of a stored policy version."""
    return Policy(
        version=row.version, effective_at=row.effective_at, applies_to=row.applies_to, defaults=row.defaults
    )


_POLICIES = select(  # statements of the request path are built once (building one costs more than running it)
    PolicyVersion.version,
    PolicyVersion.effective_at,
    PolicyVersion.applies_to,
    PolicyVersion.defaults,
    PolicyVersion.title,
).order_by(PolicyVersion.version)


def load_policies(session: Session) -> list[Policy]:
    """Every policy version (one light query: this runs on every consent change)."""
    rows = session.execute(_POLICIES).all()
    return [Policy(version=v, effective_at=e, applies_to=a, defaults=d, title=t) for v, e, a, d, t in rows]


def list_policies(session: Session) -> list[PolicyVersion]:
    """Every policy version, oldest first."""
    return list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.version)))


DEFAULT_NOTICE = timedelta(days=30)


def candidate_policy(
    session: Session,
    *,
    effective_at: datetime,
    applies_to: str,
    defaults: Any,
    title: str,
    ctx: ConsentContext,
    now: datetime | None = None,
) -> Policy:
    """Validate a would-be policy version and return it (numbered as the next version)."""
    now = now or utcnow()
    if effective_at.tzinfo is None:
        raise InvalidInput("effective_at must carry a time zone", field="effective_at")
    if effective_at <= now:
        raise InvalidInput(
            "effective_at must be in the future; policies never take effect retroactively",
            field="effective_at",
        )
    if applies_to not in APPLIES_TO:
        raise InvalidInput(f"applies_to must be one of {', '.join(APPLIES_TO)}", field="applies_to")
    if not title.strip():
        raise InvalidInput("title must not be empty", field="title")
    clean = validate_defaults(defaults, catalog=ctx.catalog, jurisdictions=ctx.jurisdictions)
    version = (session.scalar(select(func.max(PolicyVersion.version))) or 0) + 1
    return Policy(
        version=version, effective_at=effective_at, applies_to=applies_to, defaults=clean, title=title
    )


def policy_impact(session: Session, *, candidate: Policy, ctx: ConsentContext) -> Impact:
    """How many accounts' effective consent the candidate would change, per setting and jurisdiction."""
    return measure_impact(
        candidate=candidate,
        policies=load_policies(session),
        accounts=accounts_table(session),
        events=events_table(session),
        settings=ctx.catalog.keys,
        jurisdictions=ctx.jurisdictions,
    )


def add_policy(
    session: Session,
    *,
    effective_at: datetime,
    applies_to: str,
    defaults: Any,
    title: str,
    summary: str,
    created_by: str,
    ctx: ConsentContext,
    allow_opt_in: bool = False,
    notice: timedelta = DEFAULT_NOTICE,
    now: datetime | None = None,
) -> tuple[PolicyVersion, Impact]:
    """Add a policy version that takes effect in the future; versions are never edited afterwards.

    A version that changes any default must be announced ``notice`` ahead; one that would silently opt
    existing accounts in is refused unless ``allow_opt_in``. Every account whose effective consent
    changes gets a notification for the platform to deliver.
    """
    now = now or utcnow()
    candidate = candidate_policy(
        session,
        effective_at=effective_at,
        applies_to=applies_to,
        defaults=defaults,
        title=title,
        ctx=ctx,
        now=now,
    )
    impact = policy_impact(session, candidate=candidate, ctx=ctx)
    if impact.changes_defaults and effective_at < now + notice:
        raise InvalidInput(
            f"this version changes defaults, so it must be announced at least {notice.days} days ahead "
            f"(effective_at on or after {(now + notice).isoformat()})",
            field="effective_at",
        )
    if impact.silent_opt_ins and not allow_opt_in:
        raise Conflict(
            f"this version would silently opt {impact.silent_opt_ins} existing accounts in; apply it to "
            "new accounts only, or pass allow_opt_in to do it knowingly",
            field="applies_to",
        )
    row = PolicyVersion(
        version=candidate.version,
        effective_at=effective_at,
        applies_to=applies_to,
        defaults=dict(candidate.defaults),
        title=title.strip(),
        summary=summary.strip(),
        created_at=now,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    notices = [
        {
            "account_id": account_id,
            "kind": "policy_change",
            "payload": {
                "policy_version": row.version,
                "effective_at": effective_at.isoformat(),
                "title": row.title,
            },
            "created_at": now,
        }
        for account_id in impact.changed_account_ids
    ]
    for start in range(0, len(notices), 10_000):
        session.execute(insert(Notification), notices[start : start + 10_000])
    return row, impact


def notifications(session: Session, *, account_id: int, limit: int = 100) -> list[Notification]:
    """An account's notifications, newest first."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    query = select(Notification).where(Notification.account_id == account_id)
    return list(session.scalars(query.order_by(Notification.id.desc()).limit(limit)))


def get_policy(session: Session, version: int) -> PolicyVersion:
    """One policy version, or ``NotFound``."""
    row = session.get(PolicyVersion, version)
    if row is None:
        raise NotFound(f"policy version {version} does not exist", field="version")
    return row
