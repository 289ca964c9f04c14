"""Bearer tokens at the API: verifications are cached briefly per process, and a revocation made in the
process that serves the request takes effect at once; one made elsewhere within the cache time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from consentry.api import create_app
from consentry.auth.service import create_token
from consentry.config import Settings
from consentry.db import Database, utcnow
from tests.conftest import make_account


def _client(database: Database, tmp_path: Path, seconds: float) -> TestClient:
    settings = Settings(home=tmp_path / "home", database_url=database.url, token_cache_seconds=seconds)
    return TestClient(create_app(settings, database=database, migrate=False))


def _revoke_elsewhere(database: Database) -> None:
    """A revocation by another process: straight in the database, unseen by this one's cache."""
    with database.write() as session:
        session.execute(sa.text("UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP"))


def test_a_revocation_elsewhere_counts_at_once_without_the_cache(database: Database, tmp_path: Path) -> None:
    _, token = make_account(database)
    with _client(database, tmp_path, 0) as client:
        me = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/me/settings", headers=me).status_code == 200
        _revoke_elsewhere(database)
        assert client.get("/v1/me/settings", headers=me).status_code == 401


def test_a_revocation_elsewhere_counts_after_the_cache_time(database: Database, tmp_path: Path) -> None:
    _, token = make_account(database)
    with _client(database, tmp_path, 60) as client:
        me = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/me/settings", headers=me).status_code == 200
        _revoke_elsewhere(database)
        # the documented window: this process verified the token less than 60 s ago
        assert client.get("/v1/me/settings", headers=me).status_code == 200
        client.app.state.recent_tokens.forget(token)  # as if the cache time had passed
        assert client.get("/v1/me/settings", headers=me).status_code == 401


def test_deleting_an_account_refuses_its_cached_token_at_once(
    database: Database, tmp_path: Path, admin_token: str
) -> None:
    account_id, token = make_account(database)
    with _client(database, tmp_path, 60) as client:
        me = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/me/settings", headers=me).status_code == 200
        assert client.get("/v1/platform/accounts/1/posts", headers=me).status_code in (200, 404)
        admin = {"Authorization": f"Bearer {admin_token}"}
        assert client.delete(f"/v1/accounts/{account_id}", headers=admin).status_code == 200
        assert client.get("/v1/me/settings", headers=me).status_code == 401
        assert client.get(f"/v1/platform/accounts/{account_id}/posts", headers=me).status_code == 401


def test_an_expired_token_is_refused_even_when_cached(database: Database, tmp_path: Path) -> None:
    with database.write() as session:
        token = create_token(session, kind="admin", expires_at=utcnow() + timedelta(hours=1))
    with _client(database, tmp_path, 60) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/admin/partners", headers=headers).status_code == 200
        recent = client.app.state.recent_tokens
        [(key, (principal, at, expires, generation))] = recent._seen.items()
        assert expires is not None
        past = utcnow() - timedelta(seconds=1)
        recent._seen[key] = (principal, at, past, generation)  # the hour has passed, for the cache ...
        with database.write() as session:  # ... and for the database
            expire = sa.text("UPDATE api_tokens SET expires_at = :past")
            session.execute(expire, {"past": past.replace(tzinfo=None)})
        assert client.get("/v1/admin/partners", headers=headers).status_code == 401
