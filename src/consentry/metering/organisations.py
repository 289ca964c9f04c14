"""Organisations that take content from the platform: their registry (names compared caselessly), API keys,
networks and contract terms, and the directory attribution reads them from.
"""

from __future__ import annotations

import secrets
import unicodedata

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consentry.db import utcnow
from consentry.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from consentry.ids import parse_id
from consentry.metering.attribution import (
    KEY_PREFIX,
    CrawlerCatalog,
    Directory,
    NetworkTable,
    OrgPolicy,
    hash_key,
    parse_network,
)
from consentry.metering.meter import check_posts
from consentry.metering.models import (
    MODES,
    AccessRecord,
    Organisation,
    OrganisationBotIdentity,
    OrganisationKey,
    OrganisationNetwork,
)
from consentry.metering.schemas import (
    KeyOut,
    NetworkOut,
    OrganisationOut,
    OrganisationUpdate,
    price_usd,
)
from consentry.metering.webbotauth import IdentityIndex, KeyStore

NAME_KEY_LENGTH = 600
"""Longest ``name_key`` stored (a 200-character name can grow under NFKC and case folding)."""


def name_key(name: str) -> str:
    """What two organisation names share when they are the same name: the NFKC form of the case-folded
    NFKC form (Unicode's compatibility caseless matching, without its NFD steps), so ``Ünited AI``,
    ``ünited ai``, a decomposed ``U\u0308nited AI`` and ``ÜNITED AI`` are one name, and ``ﬁ`` is ``fi``.
    Stored in ``organisations.name_key``, unique, so the database itself refuses a second one."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        raise InvalidInput("an organisation name is 1-200 characters", field="name")
    name = name.strip()
    if name.isdigit() or ":" in name:
        raise InvalidInput("an organisation name must not be a number or contain ':'", field="name")
    if len(name_key(name)) > NAME_KEY_LENGTH:
        raise InvalidInput("an organisation name is too long once normalised", field="name")
    return name


def _taken(name: str) -> Conflict:
    return Conflict(f"an organisation named {name!r} exists (names are compared ignoring case)", field="name")


def _flush_named(session: Session, name: str) -> None:
    """Flush an organisation's new name; a name another writer took meanwhile is a conflict."""
    try:
        session.flush()
    except IntegrityError as error:
        raise _taken(name) from error


def _check_terms(mode: str, quota: int | None, price: int | None) -> None:
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, not {mode!r}", field="mode")
    if quota is not None:
        check_posts(quota, field="quota")
    if price is not None:
        check_posts(price, field="price_micro_usd")
    if mode == "pay" and not price:
        raise InvalidInput("pay mode needs a price per post (price_micro_usd > 0)", field="price_micro_usd")


def _name_taken(session: Session, name: str, *, other_than: int | None = None) -> bool:
    query = select(Organisation.id).where(Organisation.name_key == name_key(name))
    if other_than is not None:
        query = query.where(Organisation.id != other_than)
    return session.scalar(query) is not None


def create_organisation(
    session: Session,
    *,
    name: str,
    mode: str = "meter",
    quota: int | None = None,
    price_micro_usd: int | None = None,
) -> Organisation:
    """Register an organisation that reads content."""
    name = _check_name(name)
    _check_terms(mode, quota, price_micro_usd)
    if _name_taken(session, name):
        raise _taken(name)
    now = utcnow()
    organisation = Organisation(
        name=name,
        name_key=name_key(name),
        mode=mode,
        quota=quota,
        price_micro_usd=price_micro_usd,
        created_at=now,
        updated_at=now,
    )
    session.add(organisation)
    _flush_named(session, name)
    return organisation


def get_organisation(session: Session, *, ref: int | str) -> Organisation:
    """An organisation by id (``12``, ``"12"``, ``"org:12"``) or name (any case); else ``NotFound``."""
    text = str(ref).strip()
    if text.startswith("org:"):
        text = text[4:]
    organisation = None
    if text.isascii() and text.isdigit():
        number = parse_id(text)
        organisation = session.get(Organisation, number) if number is not None else None
    else:
        organisation = session.scalar(select(Organisation).where(Organisation.name_key == name_key(text)))
    if organisation is None:
        raise NotFound(f"no organisation {ref!r}", field="organisation")
    return organisation


def list_organisations(session: Session) -> list[Organisation]:
    """Every organisation, by name."""
    return list(session.scalars(select(Organisation).order_by(Organisation.name)))


def update_organisation(session: Session, *, ref: int | str, changes: OrganisationUpdate) -> Organisation:
    """Change name, mode, quota or price; fields not set in ``changes`` are kept."""
    organisation = get_organisation(session, ref=ref)
    given = changes.model_fields_set
    name = _check_name(changes.name) if "name" in given and changes.name is not None else organisation.name
    mode = changes.mode if "mode" in given and changes.mode is not None else organisation.mode
    quota = changes.quota if "quota" in given else organisation.quota
    price = changes.price_micro_usd if "price_micro_usd" in given else organisation.price_micro_usd
    _check_terms(mode, quota, price)
    if name != organisation.name and _name_taken(session, name, other_than=organisation.id):
        raise _taken(name)
    organisation.name, organisation.name_key, organisation.mode = name, name_key(name), mode
    organisation.quota, organisation.price_micro_usd = quota, price
    organisation.updated_at = utcnow()
    _flush_named(session, name)
    return organisation


def delete_organisation(session: Session, *, ref: int | str) -> None:
    """Delete an organisation with its keys and networks; refused once the access log names it."""
    organisation = get_organisation(session, ref=ref)
    logged = session.scalar(
        select(AccessRecord.id).where(AccessRecord.organisation_id == organisation.id).limit(1)
    )
    if logged is not None:
        raise Conflict(
            f"organisation {organisation.name!r} appears in the access log, which is evidence; "
            "set its mode to 'block' instead",
            field="organisation",
        )
    session.execute(delete(OrganisationKey).where(OrganisationKey.organisation_id == organisation.id))
    session.execute(delete(OrganisationNetwork).where(OrganisationNetwork.organisation_id == organisation.id))
    session.execute(
        delete(OrganisationBotIdentity).where(OrganisationBotIdentity.organisation_id == organisation.id)
    )
    session.delete(organisation)
    session.flush()


def organisation_out(session: Session, organisation: Organisation) -> OrganisationOut:
    """The API shape of an organisation, with its keys and networks."""
    keys = session.scalars(
        select(OrganisationKey)
        .where(OrganisationKey.organisation_id == organisation.id)
        .order_by(OrganisationKey.id)
    )
    networks = session.scalars(
        select(OrganisationNetwork)
        .where(OrganisationNetwork.organisation_id == organisation.id)
        .order_by(OrganisationNetwork.id)
    )
    from consentry.metering.identities import identity_out, list_identities

    return OrganisationOut(
        bot_identities=[
            identity_out(row) for row in list_identities(session, organisation_id=organisation.id)
        ],
        id=organisation.id,
        name=organisation.name,
        mode=organisation.mode,
        quota=organisation.quota,
        price_micro_usd=organisation.price_micro_usd,
        price_usd=price_usd(organisation.price_micro_usd),
        subject=f"org:{organisation.id}",
        created_at=organisation.created_at,
        updated_at=organisation.updated_at,
        keys=[key_out(key) for key in keys],
        networks=[network_out(network) for network in networks],
    )


def key_out(key: OrganisationKey) -> KeyOut:
    """The API shape of a key."""
    return KeyOut(
        id=key.id,
        organisation_id=key.organisation_id,
        hint=key.hint,
        label=key.label,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


def issue_key(session: Session, *, ref: int | str, label: str = "") -> tuple[OrganisationKey, str]:
    """Issue an API key for an organisation; the key is returned this once and stored hashed."""
    organisation = get_organisation(session, ref=ref)
    if len(label) > 200:
        raise InvalidInput("a key label is at most 200 characters", field="label")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = OrganisationKey(
        organisation_id=organisation.id,
        key_hash=hash_key(key),
        hint=key[:10],
        label=label,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row, key


def resolve_key(session: Session, *, key: str) -> Organisation:
    """The organisation of an API key; ``Unauthenticated`` if unknown or revoked."""
    row = session.scalar(select(OrganisationKey).where(OrganisationKey.key_hash == hash_key(key)))
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("the organisation key is unknown or revoked")
    return get_organisation(session, ref=row.organisation_id)


def revoke_key(session: Session, *, key_id: int) -> OrganisationKey:
    """Revoke a key (idempotent)."""
    row = session.get(OrganisationKey, key_id)
    if row is None:
        raise NotFound(f"no organisation key {key_id}", field="key_id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def network_out(network: OrganisationNetwork) -> NetworkOut:
    """The API shape of a network."""
    return NetworkOut(
        id=network.id,
        organisation_id=network.organisation_id,
        cidr=network.cidr,
        created_at=network.created_at,
    )


def add_network(session: Session, *, ref: int | str, cidr: str) -> OrganisationNetwork:
    """Attribute a network (CIDR) to an organisation; ``InvalidInput`` if malformed."""
    organisation = get_organisation(session, ref=ref)
    network = str(parse_network(cidr))
    existing = session.scalar(select(OrganisationNetwork).where(OrganisationNetwork.cidr == network))
    if existing is not None:
        raise Conflict(f"{network} is already attributed (network {existing.id})", field="cidr")
    row = OrganisationNetwork(organisation_id=organisation.id, cidr=network, created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def remove_network(session: Session, *, network_id: int) -> None:
    """Stop attributing a network."""
    row = session.get(OrganisationNetwork, network_id)
    if row is None:
        raise NotFound(f"no network {network_id}", field="network_id")
    session.delete(row)
    session.flush()


def load_directory(
    session: Session, *, crawlers: CrawlerCatalog | None = None, key_store: KeyStore | None = None
) -> Directory:
    """A snapshot of organisations, active keys, networks and signature agents for attribution.

    The agents' key directories are read from ``key_store`` (refreshed by the caller, off the request
    path); a new store when None.
    """
    from consentry.metering.identities import load_identities

    policies = [
        OrgPolicy(
            id=row.id,
            name=row.name,
            mode=row.mode,  # type: ignore[arg-type]
            quota=row.quota,
            price_micro_usd=row.price_micro_usd,
        )
        for row in session.scalars(select(Organisation))
    ]
    active = select(OrganisationKey.key_hash, OrganisationKey.organisation_id).where(
        OrganisationKey.revoked_at.is_(None)
    )
    keys = {key_hash: organisation_id for key_hash, organisation_id in session.execute(active)}
    networks = NetworkTable(
        (cidr, organisation_id)
        for cidr, organisation_id in session.execute(
            select(OrganisationNetwork.cidr, OrganisationNetwork.organisation_id)
        )
    )
    identities = IdentityIndex(load_identities(session), key_store)
    return Directory(policies, keys=keys, networks=networks, crawlers=crawlers, identities=identities)
