"""The partner registry: adding, changing, suspending and resuming partners, and the checks on what an
operator gives (webhook URL and secret, deletion deadline). A partner is a ``Recipient`` of the datasets
domain with its partner columns filled in.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from consentry.datasets import service as datasets
from consentry.datasets.models import Recipient
from consentry.db import utcnow
from consentry.errors import (
    InvalidInput,
    NotFound,
)
from consentry.partners import keys
from consentry.partners.models import Revocation
from consentry.partners.schemas import (
    PartnerOut,
    RevocationCounts,
)

STATUSES = ("active", "suspended")
MAX_DEADLINE_HOURS = 24 * 366
"""Longest deletion deadline accepted (a year): longer ones would not be a deadline in any real sense."""

MAX_URL_CHARS = 2048
RESERVED_NAMES = frozenset({"overdue"})
"""Partner names the admin API uses as paths (``/v1/admin/partners/overdue``)."""


def check_webhook_url(url: str, *, field: str = "webhook_url") -> str:
    """A webhook URL as given, if it is ``http``/``https`` with a host (and nothing odd in it)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        raise InvalidInput(f"the webhook URL must be 1-{MAX_URL_CHARS} characters", field=field)
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidInput("the webhook URL must not contain spaces or control characters", field=field)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as error:
        raise InvalidInput(f"the webhook URL is malformed: {error}", field=field) from error
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("the webhook URL must start with http:// or https://", field=field)
    if not parts.hostname:
        raise InvalidInput("the webhook URL must name a host", field=field)
    return url


def check_deadline_hours(hours: int, *, field: str = "deadline_hours") -> int:
    """A deletion deadline in whole hours: a positive integer (at most a year)."""
    if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= MAX_DEADLINE_HOURS:
        raise InvalidInput(
            f"the deletion deadline must be a whole number of hours from 1 to {MAX_DEADLINE_HOURS}",
            field=field,
        )
    return hours


def check_webhook_secret(secret: str) -> str:
    """A webhook secret as given, if valid (see ``keys.check_webhook_secret``)."""
    return keys.check_webhook_secret(secret, field="webhook_secret")


def get_partner(session: Session, name: str) -> Recipient:
    """The partner called ``name``, or ``NotFound``."""
    partner = session.scalar(select(Recipient).where(Recipient.name == name))
    if partner is None:
        raise NotFound(f"unknown partner {name!r}; add it with 'consentry partner add'", field="partner")
    return partner


def list_partners(session: Session) -> list[Recipient]:
    """Every partner (every recipient of releases), by name."""
    return datasets.list_recipients(session)


def add_partner(
    session: Session,
    *,
    name: str,
    kind: str = "third_party",
    purposes: list[str],
    categories: list[str],
    deadline_hours: int = 72,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    now: datetime | None = None,
) -> tuple[Recipient, str | None]:
    """Register a partner; returns it and the webhook secret if one was generated (shown once).

    Everything is validated before anything is written."""
    if name in RESERVED_NAMES:
        raise InvalidInput(f"{name!r} is reserved; choose another name", field="name")
    check_deadline_hours(deadline_hours)
    if webhook_url is not None:
        check_webhook_url(webhook_url)
    generated = None
    if webhook_secret is not None:
        if webhook_url is None:
            raise InvalidInput("a webhook secret needs a webhook URL", field="webhook_url")
        check_webhook_secret(webhook_secret)
    elif webhook_url is not None:
        webhook_secret = generated = keys.new_webhook_secret()
    partner = datasets.add_recipient(
        session, name=name, kind=kind, purposes=purposes, categories=categories, now=now
    )
    partner.status = "active"
    partner.deletion_deadline_hours = deadline_hours
    partner.webhook_url = webhook_url
    partner.webhook_secret = webhook_secret
    session.flush()
    return partner, generated


def update_partner(
    session: Session,
    *,
    name: str,
    deadline_hours: int | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    rotate_secret: bool = False,
    remove_webhook: bool = False,
) -> tuple[Recipient, str | None]:
    """Change a partner's deletion deadline or webhook; returns it and a generated secret, if any.

    A new URL keeps the current secret (or gets a generated one if there is none); ``rotate_secret``
    generates a new secret; ``remove_webhook`` clears URL and secret. A new deadline applies to
    revocations created from now on."""
    partner = get_partner(session, name)
    if deadline_hours is not None:
        check_deadline_hours(deadline_hours)
    if remove_webhook and (webhook_url is not None or webhook_secret is not None or rotate_secret):
        raise InvalidInput("removing the webhook cannot be combined with setting it", field="webhook_url")
    if webhook_url is not None:
        check_webhook_url(webhook_url)
    if webhook_secret is not None:
        check_webhook_secret(webhook_secret)
        if rotate_secret:
            raise InvalidInput("give a webhook secret or rotate it, not both", field="rotate_secret")
    url = webhook_url or partner.webhook_url
    if (webhook_secret is not None or rotate_secret) and url is None:
        raise InvalidInput("set a webhook URL first", field="webhook_url")
    generated = None
    if deadline_hours is not None:
        partner.deletion_deadline_hours = deadline_hours
    if remove_webhook:
        partner.webhook_url = None
        partner.webhook_secret = None
    elif url is not None:
        partner.webhook_url = url
        if webhook_secret is not None:
            partner.webhook_secret = webhook_secret
        elif rotate_secret or not partner.webhook_secret:
            partner.webhook_secret = generated = keys.new_webhook_secret()
    session.flush()
    return partner, generated


def set_status(session: Session, *, name: str, status: str) -> Recipient:
    """Suspend (``suspended``) or resume (``active``) a partner; idempotent.

    A suspended partner's API keys get 403 on releases and it gets no new release; it can still read
    and acknowledge its revocations, since its duty to delete does not pause."""
    if status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    partner = get_partner(session, name)
    partner.status = status
    session.flush()
    return partner


def partner_out(partner: Recipient) -> PartnerOut:
    """The API shape of a partner (no secrets)."""
    return PartnerOut(
        id=partner.id,
        name=partner.name,
        kind=partner.kind,
        status=partner.status,
        purposes=list(partner.purposes),
        categories=list(partner.categories),
        deadline_hours=partner.deletion_deadline_hours,
        webhook_url=partner.webhook_url,
        webhook_secret_set=bool(partner.webhook_secret),
        created_at=partner.created_at,
    )


def revocation_counts(
    session: Session, *, recipient_id: int, now: datetime | None = None
) -> RevocationCounts:
    """A partner's revocations by state (``pending``, ``overdue``, ``acknowledged``)."""
    now = now or utcnow()
    open_ = Revocation.acknowledged_at.is_(None)
    total, acknowledged, overdue = session.execute(
        select(
            func.count(),
            func.count(Revocation.acknowledged_at),
            func.coalesce(func.sum(case((and_(open_, Revocation.deadline_at < now), 1), else_=0)), 0),
        ).where(Revocation.recipient_id == recipient_id)
    ).one()
    return RevocationCounts(
        pending=int(total) - int(acknowledged) - int(overdue),
        overdue=int(overdue),
        acknowledged=int(acknowledged),
    )
