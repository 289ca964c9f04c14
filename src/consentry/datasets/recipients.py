"""Recipients of releases: who may receive which purposes and categories, each with its own
pseudonymisation secret."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent.catalog import PURPOSES
from consentry.datasets.eligibility import RELEASE_CATEGORIES
from consentry.datasets.models import RECIPIENT_KINDS, Recipient
from consentry.db import utcnow
from consentry.errors import Conflict, InvalidInput

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def add_recipient(
    session: Session,
    *,
    name: str,
    kind: str,
    purposes: Sequence[str],
    categories: Sequence[str],
    now: datetime | None = None,
) -> Recipient:
    """Register a recipient with the purposes and categories it may receive; its pseudonymisation secret
    is generated here and never shown."""
    if not NAME.match(name):
        raise InvalidInput("name must be 1-100 letters, digits, '.', '_' or '-'", field="name")
    if kind not in RECIPIENT_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(RECIPIENT_KINDS)}", field="kind")
    if not purposes or any(p not in PURPOSES for p in purposes):
        raise InvalidInput(f"purposes must be a non-empty subset of {', '.join(PURPOSES)}", field="purposes")
    if not categories or any(c not in RELEASE_CATEGORIES for c in categories):
        raise InvalidInput(
            f"categories must be a non-empty subset of {', '.join(RELEASE_CATEGORIES)}", field="categories"
        )
    if session.scalar(select(Recipient.id).where(Recipient.name == name)) is not None:
        raise Conflict(f"recipient {name!r} exists", field="name")
    recipient = Recipient(
        name=name,
        kind=kind,
        purposes=sorted(set(purposes), key=PURPOSES.index),
        categories=sorted(set(categories), key=RELEASE_CATEGORIES.index),
        secret=secrets.token_hex(32),
        created_at=now or utcnow(),
    )
    session.add(recipient)
    session.flush()
    return recipient


def list_recipients(session: Session) -> list[Recipient]:
    """Every recipient, by name."""
    return list(session.scalars(select(Recipient).order_by(Recipient.name)))
