"""HTTP routes for accounts (admin)."""

from __future__ import annotations

from fastapi import APIRouter

from consentry.api_deps import AdminDep, DatabaseDep
from consentry.social import service
from consentry.social.schemas import AccountIn, AccountOut

router = APIRouter(tags=["accounts"])


@router.post("/v1/accounts", status_code=201)
def create_account(body: AccountIn, principal: AdminDep, database: DatabaseDep) -> AccountOut:
    """Create an account (admin)."""
    with database.write() as session:
        account = service.create_account(
            session,
            handle=body.handle,
            country=body.country,
            birth_year=body.birth_year,
            protected=body.protected,
        )
        return AccountOut.model_validate(account)


@router.get("/v1/accounts/{account_id}")
def show_account(account_id: int, principal: AdminDep, database: DatabaseDep) -> AccountOut:
    """One account (admin)."""
    with database.read() as session:
        return AccountOut.model_validate(service.get_account(session, account_id))


@router.post("/v1/accounts/{account_id}/deactivate")
def deactivate_account(account_id: int, principal: AdminDep, database: DatabaseDep) -> AccountOut:
    """Deactivate an account (admin)."""
    with database.write() as session:
        return AccountOut.model_validate(service.deactivate_account(session, account_id=account_id))


@router.post("/v1/accounts/{account_id}/reactivate")
def reactivate_account(account_id: int, principal: AdminDep, database: DatabaseDep) -> AccountOut:
    """Reactivate a deactivated account (admin)."""
    with database.write() as session:
        return AccountOut.model_validate(service.reactivate_account(session, account_id=account_id))


@router.delete("/v1/accounts/{account_id}")
def delete_account(account_id: int, principal: AdminDep, database: DatabaseDep) -> AccountOut:
    """Delete an account (admin): its ledger events become anonymous, the chain still verifies."""
    with database.write() as session:
        return AccountOut.model_validate(service.delete_account(session, account_id=account_id))
