"""Web Bot Auth identities of organisations: register, pin, list and remove. No HTTP here.

Functions take a ``session`` and never commit. See ``consentry.metering.webbotauth`` for verification.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.db import utcnow
from consentry.errors import Conflict, InvalidInput, NotFound
from consentry.metering.models import OrganisationBotIdentity
from consentry.metering.schemas import BotIdentityOut
from consentry.metering.webbotauth import (
    DIRECTORY_PATH,
    Identity,
    jwk_thumbprint,
    normalise_agent,
    parse_jwks,
)


def _check_url(url: str, *, field: str) -> str:
    text = url.strip() if isinstance(url, str) else ""
    if not text.startswith(("https://", "http://")) or len(text) > 500 or any(c.isspace() for c in text):
        raise InvalidInput("a key directory URL is an http(s) URL of at most 500 characters", field=field)
    return text


def _pinned_text(jwks: Any) -> str:
    """The stored form of a pinned JWKS: its Ed25519 keys only (checked), canonical JSON."""
    parse_jwks(jwks, source="the JWKS")
    data = json.loads(jwks) if isinstance(jwks, (str, bytes)) else jwks
    keys = [
        {"kty": "OKP", "crv": "Ed25519", "x": key["x"], "kid": jwk_thumbprint(key)}
        for key in data["keys"]
        if isinstance(key, dict) and key.get("kty") == "OKP" and key.get("crv") == "Ed25519"
    ]
    return json.dumps({"keys": keys}, separators=(",", ":"), sort_keys=True)


def identity_out(row: OrganisationBotIdentity) -> BotIdentityOut:
    """The API shape of an identity."""
    key_ids = sorted(parse_jwks(row.pinned_jwks)) if row.pinned_jwks else []
    return BotIdentityOut(
        id=row.id,
        organisation_id=row.organisation_id,
        agent=row.agent,
        directory_url=row.directory_url,
        pinned=row.pinned_jwks is not None,
        pinned_key_ids=key_ids,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def add_identity(
    session: Session,
    *,
    ref: int | str,
    agent: str,
    directory_url: str | None = None,
    jwks: Any | None = None,
) -> OrganisationBotIdentity:
    """Register a signature agent for an organisation; ``jwks`` pins its keys (no directory fetch)."""
    from consentry.metering.service import get_organisation

    organisation = get_organisation(session, ref=ref)
    origin = normalise_agent(agent)
    url = _check_url(directory_url, field="directory_url") if directory_url else origin + DIRECTORY_PATH
    pinned = _pinned_text(jwks) if jwks is not None else None
    existing = session.scalar(select(OrganisationBotIdentity).where(OrganisationBotIdentity.agent == origin))
    if existing is not None:
        raise Conflict(f"{origin} is already registered (identity {existing.id})", field="agent")
    now = utcnow()
    row = OrganisationBotIdentity(
        organisation_id=organisation.id,
        agent=origin,
        directory_url=url,
        pinned_jwks=pinned,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


def get_identity(session: Session, *, identity_id: int) -> OrganisationBotIdentity:
    """An identity by id; ``NotFound`` otherwise."""
    row = session.get(OrganisationBotIdentity, identity_id)
    if row is None:
        raise NotFound(f"no bot identity {identity_id}", field="identity_id")
    return row


def pin_identity(session: Session, *, identity_id: int, jwks: Any | None) -> OrganisationBotIdentity:
    """Pin an identity's keys (``jwks``), or unpin them (None: fetch the directory again)."""
    row = get_identity(session, identity_id=identity_id)
    row.pinned_jwks = _pinned_text(jwks) if jwks is not None else None
    row.updated_at = utcnow()
    session.flush()
    return row


def remove_identity(session: Session, *, identity_id: int) -> None:
    """Forget an identity (its past traffic stays in the access log)."""
    session.delete(get_identity(session, identity_id=identity_id))
    session.flush()


def list_identities(session: Session, *, organisation_id: int | None = None) -> list[OrganisationBotIdentity]:
    """Identities, of one organisation or all, by id."""
    query = select(OrganisationBotIdentity).order_by(OrganisationBotIdentity.id)
    if organisation_id is not None:
        query = query.where(OrganisationBotIdentity.organisation_id == organisation_id)
    return list(session.scalars(query))


def load_identities(session: Session) -> list[Identity]:
    """Every identity, for the attribution snapshot (pinned keys parsed)."""
    return [
        Identity(
            id=row.id,
            organisation_id=row.organisation_id,
            agent=row.agent,
            directory_url=row.directory_url,
            pinned=parse_jwks(row.pinned_jwks) if row.pinned_jwks else None,
        )
        for row in list_identities(session)
    ]
