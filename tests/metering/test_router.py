"""The admin API of the metering domain through the real application (problem+json errors)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentry.db import Database
from consentry.errors import Conflict
from consentry.metering import organisations, service
from consentry.metering.router import router
from consentry.metering.schemas import OrganisationUpdate
from tests.metering.test_damages import EXAMPLE


@pytest.fixture
def api(app: FastAPI) -> Iterator[TestClient]:
    if not any(getattr(route, "path", "") == "/v1/admin/organisations" for route in app.routes):
        app.include_router(router)
    with TestClient(app) as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_organisations_crud(api: TestClient, admin_token: str) -> None:
    headers = auth(admin_token)
    created = api.post(
        "/v1/admin/organisations",
        json={"name": "Example Labs", "mode": "throttle", "quota": 5000},
        headers=headers,
    )
    assert created.status_code == 201
    org = created.json()
    assert (org["mode"], org["quota"], org["subject"]) == ("throttle", 5000, f"org:{org['id']}")
    key = api.post(f"/v1/admin/organisations/{org['id']}/keys", json={"label": "fleet"}, headers=headers)
    assert key.status_code == 201 and key.json()["key"].startswith("cso_")
    network = api.post(
        "/v1/admin/organisations/Example Labs/networks", json={"cidr": "198.51.100.0/24"}, headers=headers
    )
    assert network.status_code == 201
    patched = api.patch(
        f"/v1/admin/organisations/{org['id']}", json={"mode": "pay", "price_micro_usd": 2500}, headers=headers
    )
    assert patched.json()["price_usd"] == "0.0025"
    shown = api.get("/v1/admin/organisations/example labs", headers=headers).json()
    assert len(shown["keys"]) == 1 and "key" not in shown["keys"][0]
    assert shown["networks"][0]["cidr"] == "198.51.100.0/24"
    revoked = api.post(f"/v1/admin/organisation-keys/{key.json()['id']}/revoke", headers=headers)
    assert revoked.json()["revoked_at"] is not None
    assert (
        api.delete(f"/v1/admin/organisation-networks/{network.json()['id']}", headers=headers).status_code
        == 204
    )
    assert [o["name"] for o in api.get("/v1/admin/organisations", headers=headers).json()] == ["Example Labs"]
    assert api.delete(f"/v1/admin/organisations/{org['id']}", headers=headers).status_code == 204
    assert api.get(f"/v1/admin/organisations/{org['id']}", headers=headers).status_code == 404
    crawlers = api.get("/v1/admin/metering/crawlers", headers=headers).json()
    assert len(crawlers) >= 100 and {"token", "operator", "purpose", "url"} == set(crawlers[0])


def test_errors_are_problems(api: TestClient, admin_token: str) -> None:
    headers = auth(admin_token)
    assert api.get("/v1/admin/organisations").status_code == 401
    bad_mode = api.post("/v1/admin/organisations", json={"name": "X", "mode": "free"}, headers=headers)
    assert bad_mode.status_code == 422 and bad_mode.headers["content-type"] == "application/problem+json"
    negative = api.post("/v1/admin/organisations", json={"name": "X", "quota": -1}, headers=headers)
    assert negative.status_code == 422
    fractional = api.post("/v1/admin/organisations", json={"name": "X", "quota": 2.5}, headers=headers)
    assert fractional.status_code == 422
    pay = api.post("/v1/admin/organisations", json={"name": "X", "mode": "pay"}, headers=headers)
    assert pay.status_code == 422 and pay.json()["field"] == "price_micro_usd"
    api.post("/v1/admin/organisations", json={"name": "X"}, headers=headers)
    cidr = api.post("/v1/admin/organisations/X/networks", json={"cidr": "10.0.0.1/8"}, headers=headers)
    assert cidr.status_code == 422 and "did you mean 10.0.0.0/8" in cidr.json()["detail"]
    assert api.post("/v1/admin/organisations", json={"name": "x"}, headers=headers).status_code == 409


def test_statement_and_top(api: TestClient, admin_token: str, database: Database) -> None:
    headers = auth(admin_token)
    org_id = api.post("/v1/admin/organisations", json={"name": "Scraper Inc"}, headers=headers).json()["id"]
    with database.write() as session:
        service.append_access_log(
            session,
            events=[
                service.AccessEvent(
                    f"org:{org_id}",
                    datetime.fromisoformat(at).replace(tzinfo=UTC),
                    posts,
                    org_id,
                    "/v1/posts",
                    "192.0.2.1",
                )
                for at, posts in EXAMPLE
            ],
        )
    url = f"/v1/admin/damages/{org_id}/statement"
    period = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
    statement = api.get(url, params=period, headers=headers)
    assert statement.status_code == 200
    body = statement.json()
    assert [w["amount_cents"] for w in body["windows"]] == [1_650_000, 1_725_000]
    assert body["total_amount_usd"] == "33,750.00"
    per_million = api.get(url, params={**period, "rounding": "per_started_million"}, headers=headers).json()
    assert per_million["total_amount_cents"] == 6_000_000
    as_csv = api.get(url, params={**period, "format": "csv"}, headers=headers)
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(as_csv.text)))) == 48
    as_html = api.get(url, params={**period, "format": "html"}, headers=headers)
    assert as_html.headers["content-type"].startswith("text/html") and "33,750.00" in as_html.text

    reversed_range = api.get(url, params={"from": period["to"], "to": period["from"]}, headers=headers)
    assert reversed_range.status_code == 422 and reversed_range.json()["field"] == "to"
    too_long = api.get(url, params={"from": "2026-01-01", "to": "2027-06-01"}, headers=headers)
    assert too_long.status_code == 422
    unknown = api.get("/v1/admin/damages/Nobody/statement", params=period, headers=headers)
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    assert api.get(url, params={**period, "format": "pdf"}, headers=headers).status_code == 422

    top = api.get("/v1/admin/damages/top", params={"at": "2026-11-02T08:30:00Z"}, headers=headers).json()
    assert top["entries"][0]["organisation"] == "Scraper Inc"
    assert top["entries"][0]["posts_24h"] == 200_000 + 300_000 + 500_000


def test_statement_of_requests_that_could_not_be_attributed(
    api: TestClient, admin_token: str, database: Database
) -> None:
    headers = auth(admin_token)
    period = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z", "threshold": "100"}
    url = "/v1/admin/damages/unknown/statement"
    missing = api.get(url, params=period, headers=headers)
    assert missing.status_code == 404 and missing.json()["field"] == "organisation"
    at = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
    with database.write() as session:
        service.append_access_log(
            session, events=[service.AccessEvent("unknown", at, 150, None, "/v1/posts", "192.0.2.7")]
        )
    statement = api.get(url, params=period, headers=headers)
    assert statement.status_code == 200
    body = statement.json()
    assert body["subject"] == "unknown" and body["posts_in_period"] == 150
    assert [window["posts"] for window in body["windows"]] == [150]


def test_organisation_names_are_one_whatever_their_case_or_unicode_form(
    api: TestClient, admin_token: str, database: Database
) -> None:
    headers = auth(admin_token)
    created = api.post("/v1/admin/organisations", json={"name": "Ünited AI"}, headers=headers)
    assert created.status_code == 201
    for same in ("Ünited AI", "ünited ai", "ÜNITED AI", "U\u0308nited AI"):  # the last: decomposed Ü
        again = api.post("/v1/admin/organisations", json={"name": same}, headers=headers)
        assert again.status_code == 409, (same, again.text)
        assert again.headers["content-type"] == "application/problem+json"
        assert again.json()["field"] == "name"
    ligature = api.post("/v1/admin/organisations", json={"name": "Straße \ufb01ne"}, headers=headers)
    assert ligature.status_code == 201
    assert (
        api.post("/v1/admin/organisations", json={"name": "STRASSE fine"}, headers=headers).status_code == 409
    )
    other = api.post("/v1/admin/organisations", json={"name": "Other"}, headers=headers).json()
    rename = api.patch(f"/v1/admin/organisations/{other['id']}", json={"name": "ünited ai"}, headers=headers)
    assert rename.status_code == 409
    found = api.get("/v1/admin/organisations/%C3%BCNITED%20ai", headers=headers)
    assert found.status_code == 200 and found.json()["id"] == created.json()["id"]
    assert [o["name"] for o in api.get("/v1/admin/organisations", headers=headers).json()] == [
        "Other",
        "Straße ﬁne",
        "Ünited AI",
    ]


def test_the_database_itself_refuses_a_second_name_of_the_same_key(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers racing past the check still cannot both insert: the key is unique in the table, and the
    loser gets a conflict, never an integrity error (the race is made certain by skipping the check)."""
    with database.write() as session:
        service.create_organisation(session, name="Ünited AI")
    monkeypatch.setattr(organisations, "_name_taken", lambda *_, **__: False)
    with pytest.raises(Conflict) as raised, database.write() as session:
        service.create_organisation(session, name="ünited ai")
    assert raised.value.field == "name"
    with database.write() as session:
        other = service.create_organisation(session, name="Other")
    with pytest.raises(Conflict), database.write() as session:
        service.update_organisation(session, ref=str(other.id), changes=OrganisationUpdate(name="ÜNITED AI"))
    with database.read() as session:
        assert sorted(o.name for o in service.list_organisations(session)) == ["Other", "Ünited AI"]


def test_bot_identities_over_http(api: TestClient, admin_token: str) -> None:
    from tests.metering.test_webbotauth import RFC_JWK, RFC_THUMBPRINT

    headers = auth(admin_token)
    org = api.post("/v1/admin/organisations", json={"name": "Crawler Co"}, headers=headers).json()
    added = api.post(
        f"/v1/admin/organisations/{org['id']}/bot-identities",
        json={"agent": "HTTPS://Crawler.Example/"},
        headers=headers,
    )
    assert added.status_code == 201, added.text
    identity = added.json()
    assert identity["agent"] == "https://crawler.example"
    assert (
        identity["directory_url"] == "https://crawler.example/.well-known/http-message-signatures-directory"
    )
    assert identity["pinned"] is False
    pinned = api.put(
        f"/v1/admin/bot-identities/{identity['id']}/pin", json={"jwks": {"keys": [RFC_JWK]}}, headers=headers
    )
    assert pinned.status_code == 200 and pinned.json()["pinned_key_ids"] == [RFC_THUMBPRINT]
    shown = api.get(f"/v1/admin/organisations/{org['id']}", headers=headers).json()
    assert [i["agent"] for i in shown["bot_identities"]] == ["https://crawler.example"]
    # bad input: a clear 4xx naming the field, nothing stored
    for body, field in (
        ({"agent": "crawler.example"}, "agent"),
        ({"agent": "https://crawler.example/path"}, "agent"),
        ({"agent": "https://other.example", "jwks": {"keys": [{"kty": "RSA"}]}}, "jwks"),
        ({"agent": "https://other.example", "directory_url": "ftp://x"}, "directory_url"),
    ):
        refused = api.post(f"/v1/admin/organisations/{org['id']}/bot-identities", json=body, headers=headers)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert field in refused.text
    duplicate = api.post(
        f"/v1/admin/organisations/{org['id']}/bot-identities",
        json={"agent": "https://crawler.example"},
        headers=headers,
    )
    assert duplicate.status_code == 409
    assert len(api.get("/v1/admin/bot-identities", headers=headers).json()) == 1
    assert (
        api.put("/v1/admin/bot-identities/999/pin", json={"jwks": None}, headers=headers).status_code == 404
    )
    assert api.delete(f"/v1/admin/bot-identities/{identity['id']}", headers=headers).status_code == 204
    assert api.get("/v1/admin/bot-identities", headers=headers).json() == []
