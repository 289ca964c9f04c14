"""Tokens: stored hashed, shown once, expire and revoke."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from consentry.auth.service import (
    Principal,
    RecentTokens,
    create_token,
    hash_token,
    resolve_token,
    revoke_tokens,
)
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


def test_recent_tokens_are_recalled_only_within_their_age_and_never_after_a_failure() -> None:
    recent, now = RecentTokens(size=3), utcnow()
    admin = Principal(kind="admin", token_id=1)
    recent.remember("cst_a", admin, at=now)
    grace = timedelta(minutes=5)
    assert recent.recall("cst_a", now=now + grace, max_age=grace) == admin
    assert recent.recall("cst_a", now=now + grace + timedelta(microseconds=1), max_age=grace) is None
    assert recent.recall("cst_a", now=now - timedelta(seconds=1), max_age=grace) is None  # clock went back
    assert recent.recall("cst_a", now=now, max_age=timedelta(0)) == admin
    assert recent.recall("cst_b", now=now, max_age=grace) is None
    recent.forget("cst_a")
    assert recent.recall("cst_a", now=now, max_age=grace) is None
    assert "cst_a" not in repr(recent._seen)  # only hashes are kept


def test_recent_tokens_keep_the_most_recently_verified_within_their_size() -> None:
    recent, now = RecentTokens(size=3), utcnow()
    for i in range(5):
        recent.remember(f"cst_{i}", Principal(kind="admin", token_id=i), at=now)
    recent.remember("cst_2", Principal(kind="admin", token_id=2), at=now)  # verified again: kept longest
    recent.remember("cst_5", Principal(kind="admin", token_id=5), at=now)
    kept = {i for i in range(6) if recent.recall(f"cst_{i}", now=now, max_age=timedelta(1)) is not None}
    assert kept == {2, 4, 5}
