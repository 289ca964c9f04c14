"""Accounts of the reference platform: create, read, deactivate, delete."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from consentry.auth.service import revoke_tokens
from consentry.consent.evaluate import AccountFacts
from consentry.consent.models import Subject
from consentry.db import utcnow
from consentry.errors import Conflict, InvalidInput, NotFound
from consentry.social.models import Account

HANDLE = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def create_account(
    session: Session,
    *,
    handle: str,
    country: str | None,
    birth_year: int | None,
    protected: bool = False,
    created_at: datetime | None = None,
    account_id: int | None = None,
) -> Account:
    """Create an active account."""
    if not HANDLE.match(handle):
        raise InvalidInput("handle must be 1-64 letters, digits or underscores", field="handle")
    if country is not None and (len(country) != 2 or not country.isalpha()):
        raise InvalidInput("country must be an ISO 3166-1 alpha-2 code", field="country")
    now = utcnow()
    if birth_year is not None and not 1900 <= birth_year <= now.year:
        raise InvalidInput(f"birth_year must be between 1900 and {now.year}", field="birth_year")
    if session.scalar(select(Account.id).where(Account.handle == handle)) is not None:
        raise Conflict(f"handle {handle!r} is taken", field="handle")
    if account_id is not None and session.get(Account, account_id) is not None:
        raise Conflict(f"account {account_id} exists", field="account_id")
    account = Account(
        id=account_id,
        handle=handle,
        created_at=created_at or now,
        country=country.upper() if country else None,
        birth_year=birth_year,
        protected=protected,
        status="active",
    )
    session.add(account)
    session.flush()
    return account


def get_account(session: Session, account_id: int) -> Account:
    """The account with this id, or ``NotFound``."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist", field="account_id")
    return account


def deactivate_account(session: Session, *, account_id: int, at: datetime | None = None) -> Account:
    """Deactivate an active account."""
    account = get_account(session, account_id)
    if account.status != "active":
        raise Conflict(f"account {account_id} is {account.status}", field="account_id")
    account.status, account.status_changed_at = "deactivated", at or utcnow()
    return account


def reactivate_account(session: Session, *, account_id: int, at: datetime | None = None) -> Account:
    """Reactivate a deactivated account."""
    account = get_account(session, account_id)
    if account.status != "deactivated":
        raise Conflict(f"account {account_id} is {account.status}", field="account_id")
    account.status, account.status_changed_at = "active", at or utcnow()
    return account


def delete_account(session: Session, *, account_id: int, at: datetime | None = None) -> Account:
    """Delete an account: its tokens are revoked and its ledger subject mapping removed.

    The ledger events stay (the chain still verifies) but no longer name anybody.
    """
    account = get_account(session, account_id)
    if account.status == "deleted":
        raise Conflict(f"account {account_id} is already deleted", field="account_id")
    account.status, account.status_changed_at = "deleted", at or utcnow()
    session.execute(delete(Subject).where(Subject.account_id == account_id))
    revoke_tokens(session, account_id=account_id)
    return account


def facts(account: Account) -> AccountFacts:
    """What consent evaluation needs of an account."""
    return AccountFacts(
        account_id=account.id,
        created_at=account.created_at,
        country=account.country,
        birth_year=account.birth_year,
        status=account.status,
        status_changed_at=account.status_changed_at,
    )
