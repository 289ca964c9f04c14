"""The settings API end to end: a newcomer's path, bad input, and who may see what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient

from consentry.consent.receipts import verify_receipt
from consentry.db import Database
from tests.conftest import make_account


def auth(token: str, client: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if client:
        headers["X-Consentry-Client"] = client
    return headers


def event_count(database: Database) -> int:
    with database.read() as session:
        return int(session.execute(sa.text("SELECT count(*) FROM consent_events")).scalar_one())


def test_ios_change_receipt_history(client: TestClient, database: Database) -> None:
    _, token = make_account(database, country="US")
    before = client.get("/v1/me/settings", headers=auth(token)).json()
    posts = next(s for s in before["settings"] if s["key"] == "assistant_training_posts")
    assert posts == {**posts, "value": "allow", "basis": "default", "explicit": False, "policy_version": 1}

    response = client.put(
        "/v1/me/settings", headers=auth(token, "ios"), json={"settings": {"assistant_training_posts": "deny"}}
    )
    assert response.status_code == 200
    [signed] = response.json()["receipts"]
    jwks = client.get("/.well-known/consentry/receipt-key").json()
    receipt = verify_receipt(signed, jwks["keys"][0])
    assert receipt["event"]["client"] == "ios"
    assert receipt["event"]["value"] == "deny"
    after = {s["key"]: s for s in response.json()["settings"]}
    assert after["assistant_training_posts"]["value"] == "deny"
    assert after["assistant_training_posts"]["explicit"] is True

    history = client.get("/v1/me/consent-history", headers=auth(token)).json()["events"]
    assert [(e["setting"], e["value"], e["client"]) for e in history] == [
        ("assistant_training_posts", "deny", "ios")
    ]
    seq = history[0]["seq"]
    assert client.get(f"/v1/me/receipts/{seq}", headers=auth(token)).json() == signed


def test_client_kind_comes_from_the_token_when_no_header(client: TestClient, database: Database) -> None:
    _, token = make_account(database, client="android")
    response = client.put(
        "/v1/me/settings", headers=auth(token), json={"settings": {"assistant_realtime": "deny"}}
    )
    assert response.json()["receipts"][0]["receipt"]["event"]["client"] == "android"


def test_bad_input_is_refused_with_the_field_and_nothing_is_written(
    client: TestClient, database: Database
) -> None:
    _, token = make_account(database)
    cases = [
        ({"settings": {"no_such_setting": "deny"}}, "settings.no_such_setting"),
        ({"settings": {"assistant_realtime": "maybe"}}, "settings.assistant_realtime"),
        ({"settings": {}}, "settings"),
        ({"setting": {"assistant_realtime": "deny"}}, "settings"),
        ({"settings": {"assistant_realtime": "deny", "bogus": "allow"}}, "settings.bogus"),
    ]
    for body, field in cases:
        response = client.put("/v1/me/settings", headers=auth(token), json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["field"] == field and problem["status"] == 422
    malformed = client.put(
        "/v1/me/settings", headers={**auth(token), "content-type": "application/json"}, content=b"{not json"
    )
    assert malformed.status_code == 422
    bad_client = client.put(
        "/v1/me/settings", headers=auth(token, "fax"), json={"settings": {"assistant_realtime": "deny"}}
    )
    assert bad_client.status_code == 422 and bad_client.json()["field"] == "X-Consentry-Client"
    huge = client.put("/v1/me/settings", headers=auth(token), content=b"x" * 100_000)
    assert huge.status_code == 413
    assert event_count(database) == 0


def test_every_problem_of_a_change_is_listed(client: TestClient, database: Database) -> None:
    _, token = make_account(database)
    body = {"settings": {"assistant_training_posts": "maybe", "nope": "allow", "assistant_realtime": "deny"}}
    response = client.put("/v1/me/settings", headers=auth(token), json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == ["settings.assistant_training_posts", "settings.nope"]
    assert "allow or deny" in problem["errors"][0]["message"]
    assert "unknown setting 'nope'" in problem["errors"][1]["message"]
    assert problem["field"] == "settings.assistant_training_posts"  # the first one, as before
    assert problem["detail"].startswith("settings.assistant_training_posts: ")
    assert event_count(database) == 0


def test_tokens_and_scopes(client: TestClient, database: Database, admin_token: str) -> None:
    alice_id, alice = make_account(database, handle="alice")
    bob_id, bob = make_account(database, handle="bob")
    assert client.get("/v1/me/settings").status_code == 401
    assert client.get("/v1/me/settings", headers=auth("cst_wrong")).status_code == 401
    seq = client.put(
        "/v1/me/settings", headers=auth(alice), json={"settings": {"assistant_realtime": "deny"}}
    ).json()["receipts"][0]["receipt"]["chain"]["seq"]
    assert client.get(f"/v1/me/receipts/{seq}", headers=auth(bob)).status_code == 404
    assert client.get(f"/v1/accounts/{alice_id}/consent", headers=auth(bob)).status_code == 403
    assert client.get("/v1/me/settings", headers=auth(admin_token)).status_code == 403
    consent = client.get(f"/v1/accounts/{alice_id}/consent", headers=auth(admin_token)).json()
    assert {s["key"]: s["value"] for s in consent["settings"]}["assistant_realtime"] == "deny"
    assert (
        client.get(f"/v1/accounts/{bob_id}/consent?as_of=yesterday", headers=auth(admin_token)).status_code
        == 422
    )
    assert client.get("/v1/accounts/424242/consent", headers=auth(admin_token)).status_code == 404


def test_as_of_shows_the_past(client: TestClient, database: Database, admin_token: str) -> None:
    account_id, token = make_account(database, created_at=datetime(2020, 1, 1, tzinfo=UTC))
    client.put("/v1/me/settings", headers=auth(token), json={"settings": {"third_party_sharing": "deny"}})
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    before = client.get(
        f"/v1/accounts/{account_id}/consent", params={"as_of": past}, headers=auth(admin_token)
    )
    now = client.get(f"/v1/accounts/{account_id}/consent", headers=auth(admin_token))
    value = lambda r: {s["key"]: s["value"] for s in r.json()["settings"]}["third_party_sharing"]  # noqa: E731
    assert (value(before), value(now)) == ("allow", "deny")


def test_policies_admin_only_validated_and_listed(
    client: TestClient, database: Database, admin_token: str
) -> None:
    future = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    good = {
        "effective_at": future,
        "applies_to": "new_accounts",
        "title": "Opt-in everywhere",
        "defaults": {"default": {"*": "deny"}},
    }
    _, token = make_account(database)
    assert client.post("/v1/policies", json=good, headers=auth(token)).status_code == 403
    bad_cases = [
        ({**good, "effective_at": "2020-01-01T00:00:00Z"}, "effective_at"),
        ({**good, "defaults": {"EEA": {"*": "deny"}}}, "defaults.default"),
        ({**good, "defaults": {"default": {"assistant_realtime": "deny"}}}, "defaults.default"),
        ({**good, "defaults": {"default": {"*": "deny"}, "Mars": {"*": "deny"}}}, "defaults.Mars"),
        ({**good, "defaults": {"default": {"*": "deny", "nope": "deny"}}}, "defaults.default.nope"),
        ({**good, "applies_to": "some"}, "applies_to"),
        ({**good, "effective_at": "soon"}, "effective_at"),
    ]
    for body, field in bad_cases:
        response = client.post("/v1/policies", json=body, headers=auth(admin_token))
        assert response.status_code == 422, body
        assert response.json()["field"] == field
    assert [p["version"] for p in client.get("/v1/policies").json()] == [1]
    created = client.post("/v1/policies", json=good, headers=auth(admin_token))
    assert created.status_code == 201 and created.json()["version"] == 2
    assert [p["version"] for p in client.get("/v1/policies").json()] == [1, 2]


def test_account_admin_routes(client: TestClient, admin_token: str) -> None:
    created = client.post(
        "/v1/accounts", json={"handle": "zoe", "country": "FR", "birth_year": 1999}, headers=auth(admin_token)
    )
    assert created.status_code == 201
    account_id = created.json()["id"]
    assert client.post("/v1/accounts", json={"handle": "zoe"}, headers=auth(admin_token)).status_code == 409
    assert (
        client.post("/v1/accounts", json={"handle": "bad handle!"}, headers=auth(admin_token)).status_code
        == 422
    )
    assert client.post(f"/v1/accounts/{account_id}/deactivate", headers=auth(admin_token)).json()[
        "status"
    ] == ("deactivated")
    assert (
        client.delete(f"/v1/accounts/{account_id}", headers=auth(admin_token)).json()["status"] == "deleted"
    )
    assert client.get("/v1/accounts/99999", headers=auth(admin_token)).status_code == 404
