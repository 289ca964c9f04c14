"""HTTP routes of linked accounts: translate requests into service calls, nothing more."""

from __future__ import annotations

from fastapi import APIRouter

from consentry.api_deps import AdminDep, DatabaseDep
from consentry.consent.deps import AccountDep
from consentry.errors import Conflict, Gone, NotFound
from consentry.ids import Id64
from consentry.links import service
from consentry.links.schemas import LinkImportIn, LinkImportOut, LinkIn, LinkOut
from consentry.openapi import raises

router = APIRouter(tags=["links"])


def _view(database: DatabaseDep, account_id: int, other_id: int) -> LinkOut:
    with database.read() as session:
        views = service.links_of(session, account_id=account_id)
    return next(LinkOut.model_validate(v) for v in views if v.account_id == other_id)


@router.get("/v1/me/links")
def my_links(principal: AccountDep, database: DatabaseDep) -> list[LinkOut]:
    """The caller's linked accounts: confirmed links, and requests waiting for either side."""
    assert principal.account_id is not None
    with database.read() as session:
        return [LinkOut.model_validate(v) for v in service.links_of(session, account_id=principal.account_id)]


@router.post("/v1/me/links", status_code=201)
@raises(NotFound, Gone, Conflict)
def request_link(body: LinkIn, principal: AccountDep, database: DatabaseDep) -> LinkOut:
    """Ask to link the caller's account with another one; the link is ``pending`` until the other
    account confirms it (``POST /v1/me/links/{account_id}/confirm`` with its own token). 422 for the
    caller itself, 404 for no such account, 410 for a deleted one, 409 for a deactivated one or a link
    that exists or is already asked for."""
    assert principal.account_id is not None
    with database.write() as session:
        service.request_link(session, account_id=principal.account_id, other_id=body.account_id)
    return _view(database, principal.account_id, body.account_id)


@router.post("/v1/me/links/{account_id}/confirm")
@raises(Gone, Conflict)
def confirm_link(account_id: Id64, principal: AccountDep, database: DatabaseDep) -> LinkOut:
    """Confirm the link ``account_id`` asked for; from then on a change of scope ``linked`` made from
    either account covers both. 404 when it asked for none, 409 when the caller asked for it itself
    (only the other side can confirm) or it is confirmed already."""
    assert principal.account_id is not None
    with database.write() as session:
        service.confirm_link(session, account_id=principal.account_id, other_id=account_id)
    return _view(database, principal.account_id, account_id)


@router.delete("/v1/me/links/{account_id}", status_code=204)
def remove_link(account_id: Id64, principal: AccountDep, database: DatabaseDep) -> None:
    """Remove a link, or withdraw or decline a request, from either side. Every choice recorded while
    the accounts were linked stays as it is."""
    assert principal.account_id is not None
    with database.write() as session:
        service.remove_link(session, account_id=principal.account_id, other_id=account_id)


@router.post("/v1/admin/links", status_code=201, tags=["accounts"])
def import_links(body: LinkImportIn, principal: AdminDep, database: DatabaseDep) -> LinkImportOut:
    """Link pairs of accounts the operator's identity system knows to belong to one person (admin):
    confirmed at once, all or nothing; every problem is listed with the pair it is in."""
    pairs = [(item.account_id, item.linked_account_id) for item in body.links]
    with database.write() as session:
        result = service.import_links(session, pairs, source="admin")
    return LinkImportOut.model_validate(result)


@router.get("/v1/accounts/{account_id}/links", tags=["accounts"])
def account_links(account_id: Id64, principal: AdminDep, database: DatabaseDep) -> list[LinkOut]:
    """An account's links, for operators."""
    with database.read() as session:
        from consentry.social.service import get_account

        get_account(session, account_id)
        return [LinkOut.model_validate(v) for v in service.links_of(session, account_id=account_id)]
