"""Reading the release registry: recipients and releases. Light on purpose (SQLAlchemy and the models
only), so commands that list things start without the build machinery (Arrow, DuckDB, the lake)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.datasets.models import Recipient, Release
from consentry.errors import InvalidInput, NotFound


def get_recipient(session: Session, name: str) -> Recipient:
    """The recipient called ``name``, or ``NotFound``."""
    recipient = session.scalar(select(Recipient).where(Recipient.name == name))
    if recipient is None:
        raise NotFound(
            f"unknown recipient {name!r}; add it with 'consentry recipient add'", field="recipient"
        )
    return recipient


def list_releases(session: Session, *, recipient: str | None = None, limit: int = 100) -> list[Release]:
    """Releases, newest first (of one recipient when named)."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    query = select(Release)
    if recipient is not None:
        query = query.where(Release.recipient_id == get_recipient(session, recipient).id)
    return list(session.scalars(query.order_by(Release.created_at.desc(), Release.id.desc()).limit(limit)))


def recipient_names(session: Session) -> dict[int, str]:
    """Recipient names by id."""
    return {rid: name for rid, name in session.execute(select(Recipient.id, Recipient.name))}
