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
    note_revocation,
    resolve_token,
    revocations,
    revoke_tokens,
    verify_token,
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


def test_verify_token_gives_the_expiry_and_refuses_a_deleted_account(database: Database) -> None:
    account_id, token = make_account(database)
    later = utcnow() + timedelta(hours=1)
    with database.write() as session:
        admin = create_token(session, kind="admin", expires_at=later)
    with database.read() as session:
        principal, expires = verify_token(session, admin)
        assert principal.is_admin and expires == later
        assert verify_token(session, token)[1] is None
    with database.write() as session:
        session.execute(sa.text("UPDATE accounts SET status = 'deleted' WHERE id = :id"), {"id": account_id})
    with database.read() as session, pytest.raises(Unauthenticated):
        verify_token(session, token)


def test_fresh_tokens_are_served_within_their_age_until_expiry_or_a_revocation() -> None:
    recent, now = RecentTokens(), utcnow()
    ada = Principal(kind="account", token_id=1, account_id=7)
    ttl = timedelta(seconds=2)
    recent.remember("cst_a", ada, at=now, expires_at=now + timedelta(seconds=1))
    assert recent.fresh("cst_a", now=now, max_age=ttl) == ada
    assert recent.fresh("cst_a", now=now + timedelta(seconds=1), max_age=ttl) is None  # expired meanwhile
    recent.remember("cst_b", ada, at=now)
    assert recent.fresh("cst_b", now=now + ttl - timedelta(microseconds=1), max_age=ttl) == ada
    assert recent.fresh("cst_b", now=now + ttl, max_age=ttl) is None  # too old: verify again
    assert recent.fresh("cst_b", now=now - timedelta(seconds=1), max_age=ttl) is None  # clock went back
    note_revocation()  # this process revoked tokens: every cached verification is void
    assert recent.fresh("cst_b", now=now, max_age=ttl) is None
    recent.remember("cst_c", ada, at=now, generation=revocations() - 1)  # verified before a revocation
    assert recent.fresh("cst_c", now=now, max_age=ttl) is None
    assert recent.recall("cst_b", now=now, max_age=ttl) == ada  # the outage grace is not a cache
