"""Tokens: stored hashed, shown once, expire and revoke."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from consentry.auth.service import create_token, hash_token, resolve_token, revoke_tokens
from consentry.db import Database, utcnow
from consentry.errors import InvalidInput, NotFound, Unauthenticated
from tests.conftest import make_account


def test_only_the_hash_is_stored(database: Database) -> None:
    account_id, token = make_account(database, client="ios")
    with database.read() as session:
        stored = session.execute(sa.text("SELECT token_hash FROM api_tokens")).scalars().all()
        principal = resolve_token(session, token)
    assert stored == [hash_token(token)] and token not in stored
    assert (principal.kind, principal.account_id, principal.client) == ("account", account_id, "ios")


def test_expired_and_revoked_tokens_are_refused(database: Database) -> None:
    account_id, token = make_account(database)
    with database.write() as session:
        expired = create_token(session, kind="admin", expires_at=utcnow() - timedelta(seconds=1))
        revoke_tokens(session, account_id=account_id)
    with database.read() as session:
        for value in (expired, token, "cst_unknown"):
            with pytest.raises(Unauthenticated):
                resolve_token(session, value)


def test_token_arguments_are_checked(database: Database) -> None:
    with database.write() as session:
        with pytest.raises(NotFound):
            create_token(session, kind="account", account_id=404)
        with pytest.raises(InvalidInput):
            create_token(session, kind="account")
        with pytest.raises(InvalidInput):
            create_token(session, kind="root")
        with pytest.raises(InvalidInput):
            create_token(session, kind="admin", client="fax")
