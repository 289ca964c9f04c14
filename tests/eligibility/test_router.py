"""``POST /v1/eligibility`` during a real PostgreSQL outage: the application reaches its database through
a TCP proxy the test stops (every connection cut, new ones refused) and starts again. Never a mock.

Tokens verified shortly before the outage stay usable for eligibility, which then answers 200 with
``allowed: []`` and an ``error``; a token that cannot be verified gets 503 with ``Retry-After``; nothing
is ever allowed while the database is unreachable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from consentry.api import create_app
from consentry.auth.service import create_token, revoke_tokens
from consentry.config import Settings
from consentry.db import Database
from tests.conftest import make_account, reset
from tests.tcp_proxy import TcpProxy

REALTIME = {"setting": "assistant_realtime"}
BY_PURPOSE = {"purpose": "ai-input", "recipient": "first_party", "category": "posts"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def proxied(postgres_database: Database) -> Iterator[tuple[Database, TcpProxy]]:
    """The test's PostgreSQL database (emptied), reached through a proxy the test controls."""
    reset(postgres_database)
    url = sa.make_url(postgres_database.url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    database = Database(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    try:
        yield database, proxy
    finally:
        proxy.stop()
        database.dispose()


def client_for(database: Database, tmp_path: Path, **options: Any) -> TestClient:
    settings = Settings(home=tmp_path / "home", database_url=database.url, **options)
    return TestClient(create_app(settings, database=database, migrate=False), raise_server_exceptions=False)


def ask(client: TestClient, token: str | None, ids: list[int], form: dict[str, str] = REALTIME) -> Any:
    headers = auth(token) if token else {}
    return client.post("/v1/eligibility", json={**form, "account_ids": ids}, headers=headers)


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert "allowed" not in response.json()


def test_a_database_outage_allows_nobody_and_never_answers_500(
    proxied: tuple[Database, TcpProxy], tmp_path: Path
) -> None:
    database, proxy = proxied
    ada, ada_token = make_account(database, handle="ada", country="US")
    with database.write() as session:
        seen = create_token(session, kind="admin", label="the assistant")
        unseen = create_token(session, kind="admin", label="never used before the outage")
    with client_for(database, tmp_path) as client:
        before = ask(client, seen, [ada, 999_999])
        assert before.status_code == 200 and before.json()["allowed"] == [ada]
        assert ask(client, seen, [ada], BY_PURPOSE).json()["allowed"] == [ada]
        assert client.get("/v1/me/settings", headers=auth(ada_token)).status_code == 200

        proxy.stop()  # the outage
        for form in (REALTIME, BY_PURPOSE):
            during = ask(client, seen, [ada, 999_999], form)
            assert during.status_code == 200, during.text
            body = during.json()
            assert body["allowed"] == [] and body["error"], body
            assert body["ledger_seq"] is None and body["asked"] == 2
        assert_unavailable(ask(client, unseen, [ada]))  # cannot be verified
        assert_unavailable(ask(client, "cst_made-up", [ada]))
        assert ask(client, ada_token, [ada]).status_code == 403  # known to be an account token
        assert ask(client, None, [ada]).status_code == 401
        assert ask(client, seen, [ada], {"setting": "nope"}).status_code == 422  # still checked
        assert_unavailable(client.get("/v1/me/settings", headers=auth(ada_token)))  # other routes: 503
        assert_unavailable(client.get("/v1/policies"))  # also those without a token

        proxy.start()  # the database is back
        after = ask(client, seen, [ada])
        assert after.status_code == 200 and after.json() == {**after.json(), "allowed": [ada], "error": None}
        assert ask(client, unseen, [ada]).json()["allowed"] == [ada]


def test_without_a_grace_period_no_token_is_usable_during_an_outage(
    proxied: tuple[Database, TcpProxy], tmp_path: Path
) -> None:
    database, proxy = proxied
    ada, _ = make_account(database, handle="ada", country="US")
    with database.write() as session:
        admin = create_token(session, kind="admin")
    with client_for(database, tmp_path, token_grace_seconds=0) as client:
        assert ask(client, admin, [ada]).json()["allowed"] == [ada]
        proxy.stop()
        assert_unavailable(ask(client, admin, [ada]))


def test_a_token_seen_revoked_is_not_usable_during_an_outage(
    proxied: tuple[Database, TcpProxy], tmp_path: Path
) -> None:
    database, proxy = proxied
    ada, _ = make_account(database, handle="ada", country="US")
    with database.write() as session:
        admin = create_token(session, kind="admin")
    with client_for(database, tmp_path) as client:
        assert ask(client, admin, [ada]).json()["allowed"] == [ada]
        with database.write() as session:
            session.execute(sa.text("UPDATE api_tokens SET revoked_at = now()"))
        assert ask(client, admin, [ada]).status_code == 401
        proxy.stop()
        assert_unavailable(ask(client, admin, [ada]))


def test_revoking_an_account_token_is_seen_by_the_next_call(
    proxied: tuple[Database, TcpProxy], tmp_path: Path
) -> None:
    """Remembering tokens changes nothing while the database answers: every call verifies again."""
    database, _ = proxied
    ada, ada_token = make_account(database, handle="ada", country="US")
    with client_for(database, tmp_path) as client:
        assert client.get("/v1/me/settings", headers=auth(ada_token)).status_code == 200
        with database.write() as session:
            revoke_tokens(session, account_id=ada)
        assert client.get("/v1/me/settings", headers=auth(ada_token)).status_code == 401
