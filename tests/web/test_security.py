"""The session cookie against the ``Authorization`` header: a request that carries a header is judged by
that header alone. A header that is not one ``Bearer <token>`` is a 401, never a fall-back to the cookie,
so no header can switch off the CSRF check of a cookie session."""

from __future__ import annotations

import string
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentry.consent.models import ConsentEvent, LedgerHead
from consentry.db import Database
from consentry.social.models import Post
from tests.conftest import make_account
from tests.web.test_router import TRAINING, settings_of, signed_in

NOT_BEARER = [
    "Basic dXNlcjpwYXNzd29yZA==",  # RFC 7617's example form
    "Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnagMDAuBgkqhkiG9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNwICHg==",
    "Bearer",
    "x",
    "Bearer ",
    "",
    "Bearer a b",
    "Bearer\tcst_tab",
    "Token cst_abc",
    "Digest username=x",
]
"""``Authorization`` values that are not a bearer credential (RFC 6750: ``Bearer`` 1*SP b64token)."""


def ledger(database: Database) -> tuple[int, int, int]:
    """What a refused request must leave unchanged: consent events, the ledger head, posts."""
    with database.read() as session:
        events = session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) or 0
        head = session.scalar(sa.select(LedgerHead.seq)) or 0
        posts = session.scalar(sa.select(sa.func.count()).select_from(Post)) or 0
    return events, head, posts


def assert_401(response: Any, what: str) -> None:
    assert response.status_code == 401, (what, response.status_code, response.text[:200])
    assert response.headers["content-type"] == "application/problem+json", what
    assert response.headers["www-authenticate"] == "Bearer", what
    assert response.json()["field"] == "Authorization", what


def test_a_header_that_is_not_a_bearer_token_is_401_and_never_falls_back_to_the_cookie(
    client: TestClient, database: Database
) -> None:
    _, ada = make_account(database, handle="ada")
    csrf = signed_in(client, ada)  # the client now holds ada's session cookie
    before = ledger(database)
    for value in NOT_BEARER:
        for extra in ({}, {"X-CSRF-Token": csrf}):  # a valid CSRF token does not rescue a bad header
            headers = {"Authorization": value, **extra}
            body = {"settings": {TRAINING: "deny"}}
            assert_401(client.put("/v1/me/settings", json=body, headers=headers), f"PUT settings {value!r}")
            assert_401(client.get("/v1/me/settings", headers=headers), f"GET settings {value!r}")
            post = {"text": "forged", "visibility": "public"}
            assert_401(client.post("/v1/platform/posts", json=post, headers=headers), f"post {value!r}")
            assert_401(client.post("/v1/me/export", json={}, headers=headers), f"export {value!r}")
            assert_401(client.get("/v1/platform/posts/1", headers=headers), f"read {value!r}")
            page = client.post(
                "/settings",
                data={"setting": TRAINING, "value": "deny", "csrf_token": csrf},
                headers={**headers, "Accept": "application/json"},
                follow_redirects=False,
            )
            assert_401(page, f"web form {value!r}")
            assert_401(client.get("/settings", headers=headers, follow_redirects=False), f"page {value!r}")
    assert ledger(database) == before
    assert settings_of(client, ada)[TRAINING]["explicit"] is False


def test_two_authorization_headers_are_refused(client: TestClient, database: Database) -> None:
    _, ada = make_account(database, handle="ada")
    signed_in(client, ada)
    before = ledger(database)
    for pair in ([f"Bearer {ada}", "Basic eDp5"], ["Basic eDp5", f"Bearer {ada}"], [f"Bearer {ada}"] * 2):
        headers = [("Authorization", value) for value in pair]
        response = client.put("/v1/me/settings", json={"settings": {TRAINING: "deny"}}, headers=headers)
        assert_401(response, repr(pair))
    assert ledger(database) == before


def test_an_unknown_bearer_token_with_a_cookie_is_401(client: TestClient, database: Database) -> None:
    _, ada = make_account(database, handle="ada")
    signed_in(client, ada)
    before = ledger(database)
    response = client.put(
        "/v1/me/settings",
        json={"settings": {TRAINING: "deny"}},
        headers={"Authorization": "Bearer cst_wrong"},
    )
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert ledger(database) == before


def test_a_valid_bearer_token_wins_over_the_cookie_and_needs_no_csrf_token(
    client: TestClient, database: Database
) -> None:
    _, ada = make_account(database, handle="ada")
    _, bruno = make_account(database, handle="bruno")
    signed_in(client, ada)
    for value in (f"Bearer {bruno}", f"bearer {bruno}", f"BEARER  {bruno}"):
        response = client.put(
            "/v1/me/settings", json={"settings": {TRAINING: "deny"}}, headers={"Authorization": value}
        )
        assert response.status_code == 200, (value, response.text)
    assert settings_of(client, bruno)[TRAINING]["explicit"] is True  # the header's account changed
    assert settings_of(client, ada)[TRAINING]["explicit"] is False  # the cookie's did not


def test_the_cookie_alone_needs_the_csrf_token(client: TestClient, database: Database) -> None:
    _, ada = make_account(database, handle="ada")
    csrf = signed_in(client, ada)
    body = {"settings": {TRAINING: "deny"}}
    before = ledger(database)
    refused = client.put("/v1/me/settings", json=body)
    assert refused.status_code == 403 and refused.json()["field"] == "X-CSRF-Token"
    assert ledger(database) == before
    accepted = client.put("/v1/me/settings", json=body, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 200
    assert ledger(database)[0] == before[0] + 1
    assert settings_of(client, ada)[TRAINING]["explicit"] is True


HEADER_CHARS = string.ascii_letters + string.digits + " \t-.~+/=:,\"'"
"""Characters of generated header values; no ``_``, so no value can hold a real ``cst_`` token."""


@pytest.fixture
def ada_session(client: TestClient, database: Database) -> tuple[str, str]:
    """ada's token and the CSRF token of her session (the client holds her cookie)."""
    _, token = make_account(database, handle="ada")
    return token, signed_in(client, token)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.one_of(
        st.text(HEADER_CHARS, max_size=40),
        st.builds(
            str.__add__,
            st.sampled_from(["Bearer", "bearer", "Basic", "Negotiate"]),
            st.text(HEADER_CHARS, max_size=12),
        ),
    )
)
def test_no_header_value_without_a_valid_token_acts_with_the_cookie(
    client: TestClient, database: Database, ada_session: tuple[str, str], value: str
) -> None:
    """Whatever the header says, unless it presents a valid token the cookie's account is never used,
    even with the session's CSRF token."""
    _, csrf = ada_session
    before = ledger(database)
    response = client.put(
        "/v1/me/settings",
        json={"settings": {TRAINING: "deny"}},
        headers={"Authorization": value, "X-CSRF-Token": csrf},
    )
    assert response.status_code == 401, (value, response.status_code)
    assert ledger(database) == before


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "PATCH"])
def test_the_middleware_refuses_a_bad_header_before_the_route_runs(
    client: TestClient, database: Database, method: str
) -> None:
    """Even on a path no route serves, a cookie with a bad header is a 401 (not a 404 or 405)."""
    _, ada = make_account(database, handle="ada")
    signed_in(client, ada)
    assert_401(client.request(method, "/v1/nowhere", headers={"Authorization": "Basic eDp5"}), method)
