"""HTTP routes of the metering domain (admin only): translate requests into service calls."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from consentry.api_deps import AdminDep, DatabaseDep
from consentry.config import DAMAGES_RATE_CENTS, DAMAGES_THRESHOLD_POSTS
from consentry.errors import Conflict
from consentry.ids import INT64_MAX, Id32
from consentry.metering import damages, identities, service
from consentry.metering.attribution import default_crawlers
from consentry.metering.schemas import (
    BotIdentityCreate,
    BotIdentityOut,
    BotIdentityPin,
    IssuedKey,
    KeyCreate,
    KeyOut,
    NetworkCreate,
    NetworkOut,
    OrganisationCreate,
    OrganisationOut,
    OrganisationUpdate,
    Rounding,
    Statement,
    TopOut,
)
from consentry.openapi import raises

router = APIRouter()
TAGS: list[str | Enum] = ["metering"]


def as_utc(at: datetime) -> datetime:
    """A query time; UTC when it has no offset."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@router.get("/v1/admin/organisations", tags=TAGS)
def list_organisations(principal: AdminDep, database: DatabaseDep) -> list[OrganisationOut]:
    """Every organisation with its mode, keys and networks."""
    with database.read() as session:
        return [service.organisation_out(session, org) for org in service.list_organisations(session)]


@router.post("/v1/admin/organisations", status_code=201, tags=TAGS)
@raises(Conflict)
def create_organisation(
    body: OrganisationCreate, principal: AdminDep, database: DatabaseDep
) -> OrganisationOut:
    """Register an organisation."""
    with database.write() as session:
        organisation = service.create_organisation(
            session, name=body.name, mode=body.mode, quota=body.quota, price_micro_usd=body.price_micro_usd
        )
        return service.organisation_out(session, organisation)


@router.get("/v1/admin/organisations/{organisation}", tags=TAGS)
def show_organisation(organisation: str, principal: AdminDep, database: DatabaseDep) -> OrganisationOut:
    """One organisation, by id or name."""
    with database.read() as session:
        return service.organisation_out(session, service.get_organisation(session, ref=organisation))


@router.patch("/v1/admin/organisations/{organisation}", tags=TAGS)
@raises(Conflict)
def update_organisation(
    organisation: str, body: OrganisationUpdate, principal: AdminDep, database: DatabaseDep
) -> OrganisationOut:
    """Change name, mode, quota or price (``null`` clears quota or price)."""
    with database.write() as session:
        updated = service.update_organisation(session, ref=organisation, changes=body)
        return service.organisation_out(session, updated)


@router.delete("/v1/admin/organisations/{organisation}", status_code=204, tags=TAGS)
@raises(Conflict)
def delete_organisation(organisation: str, principal: AdminDep, database: DatabaseDep) -> Response:
    """Delete an organisation that the access log does not name (409 otherwise)."""
    with database.write() as session:
        service.delete_organisation(session, ref=organisation)
    return Response(status_code=204)


@router.post("/v1/admin/organisations/{organisation}/keys", status_code=201, tags=TAGS)
def issue_key(organisation: str, body: KeyCreate, principal: AdminDep, database: DatabaseDep) -> IssuedKey:
    """Issue an API key; the key is in this response only."""
    with database.write() as session:
        row, key = service.issue_key(session, ref=organisation, label=body.label)
        return IssuedKey(**service.key_out(row).model_dump(), key=key)


@router.post("/v1/admin/organisation-keys/{key_id}/revoke", tags=TAGS)
def revoke_key(key_id: Id32, principal: AdminDep, database: DatabaseDep) -> KeyOut:
    """Revoke an API key."""
    with database.write() as session:
        return service.key_out(service.revoke_key(session, key_id=key_id))


@router.post("/v1/admin/organisations/{organisation}/networks", status_code=201, tags=TAGS)
@raises(Conflict)
def add_network(
    organisation: str, body: NetworkCreate, principal: AdminDep, database: DatabaseDep
) -> NetworkOut:
    """Attribute a network (CIDR) to an organisation."""
    with database.write() as session:
        return service.network_out(service.add_network(session, ref=organisation, cidr=body.cidr))


@router.delete("/v1/admin/organisation-networks/{network_id}", status_code=204, tags=TAGS)
def remove_network(network_id: Id32, principal: AdminDep, database: DatabaseDep) -> Response:
    """Stop attributing a network."""
    with database.write() as session:
        service.remove_network(session, network_id=network_id)
    return Response(status_code=204)


@router.post("/v1/admin/organisations/{organisation}/bot-identities", status_code=201, tags=TAGS)
@raises(Conflict)
def add_bot_identity(
    organisation: str, body: BotIdentityCreate, principal: AdminDep, database: DatabaseDep
) -> BotIdentityOut:
    """Register a Web Bot Auth signature agent (its key directory is fetched, or ``jwks`` pinned)."""
    with database.write() as session:
        row = identities.add_identity(
            session, ref=organisation, agent=body.agent, directory_url=body.directory_url, jwks=body.jwks
        )
        return identities.identity_out(row)


@router.get("/v1/admin/bot-identities", tags=TAGS)
def list_bot_identities(principal: AdminDep, database: DatabaseDep) -> list[BotIdentityOut]:
    """Every registered signature agent."""
    with database.read() as session:
        return [identities.identity_out(row) for row in identities.list_identities(session)]


@router.put("/v1/admin/bot-identities/{identity_id}/pin", tags=TAGS)
def pin_bot_identity(
    identity_id: Id32, body: BotIdentityPin, principal: AdminDep, database: DatabaseDep
) -> BotIdentityOut:
    """Pin an agent's keys (a JWKS; its directory is no longer fetched), or unpin them with null."""
    with database.write() as session:
        row = identities.pin_identity(session, identity_id=identity_id, jwks=body.jwks)
        return identities.identity_out(row)


@router.delete("/v1/admin/bot-identities/{identity_id}", status_code=204, tags=TAGS)
def remove_bot_identity(identity_id: Id32, principal: AdminDep, database: DatabaseDep) -> Response:
    """Forget a signature agent (its logged traffic stays)."""
    with database.write() as session:
        identities.remove_identity(session, identity_id=identity_id)
    return Response(status_code=204)


@router.get("/v1/admin/metering/crawlers", tags=TAGS)
def crawlers(principal: AdminDep) -> list[dict[str, str | None]]:
    """The known AI crawler user-agent tokens with their operators."""
    return [
        {"token": c.token, "operator": c.operator, "purpose": c.purpose, "url": c.url}
        for c in default_crawlers()
    ]


@router.get("/v1/admin/damages/top", tags=TAGS)
def damages_top(
    principal: AdminDep,
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    threshold: Annotated[int, Query(ge=0, le=INT64_MAX)] = DAMAGES_THRESHOLD_POSTS,
    rate_cents: Annotated[int, Query(ge=0, le=INT64_MAX)] = DAMAGES_RATE_CENTS,
    at: Annotated[datetime | None, Query(description="end of the 24 hours (default now)")] = None,
) -> TopOut:
    """Subjects by posts served in the last 24 hours, with their projected liability."""
    terms = damages.Terms(threshold=threshold, rate_cents=rate_cents)
    with database.read() as session:
        return service.top(session, now=as_utc(at) if at else None, limit=limit, terms=terms)


STATEMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The statement as JSON, CSV or HTML (``format``)",
        "model": Statement,
        "content": {"text/csv": {"schema": {"type": "string"}}, "text/html": {"schema": {"type": "string"}}},
    }
}


@router.get("/v1/admin/damages/{organisation}/statement", tags=TAGS, responses=STATEMENT_RESPONSES)
def damages_statement(
    organisation: str,
    principal: AdminDep,
    database: DatabaseDep,
    start: Annotated[datetime, Query(alias="from", description="ISO 8601; UTC without offset")],
    end: Annotated[datetime, Query(alias="to", description="ISO 8601, exclusive; at most a year after")],
    format: Annotated[Literal["json", "csv", "html"], Query()] = "json",
    threshold: Annotated[int, Query(ge=0, le=INT64_MAX)] = DAMAGES_THRESHOLD_POSTS,
    rate_cents: Annotated[
        int, Query(ge=0, le=INT64_MAX, description="cents per 1,000,000 posts")
    ] = DAMAGES_RATE_CENTS,
    rounding: Annotated[Rounding, Query()] = "pro_rata",
) -> Response:
    """The damages statement of an organisation (id, name, a ``crawler:``/``net:``/``spoofed:`` subject
    or ``unknown``)."""
    terms = damages.Terms(threshold=threshold, rate_cents=rate_cents, rounding=rounding)
    with database.read() as session:
        result = service.statement(
            session, organisation=organisation, start=as_utc(start), end=as_utc(end), terms=terms
        )
    text, media_type = damages.render_statement(result, format)
    headers = {}
    if format != "json":
        name = f"statement-{result.subject.replace(':', '-').replace('/', '_')}.{format}"
        headers["Content-Disposition"] = f'inline; filename="{name}"'
    return Response(text, media_type=media_type, headers=headers)
