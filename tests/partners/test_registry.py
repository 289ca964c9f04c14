"""The partner registry and API keys: service, admin API and CLI, on a real database."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from consentry.config import get_settings
from consentry.datasets.models import Recipient
from consentry.db import Database
from consentry.partners import service
from consentry.partners.cli import partner_app
from consentry.partners.models import PartnerKey

runner = CliRunner()
cli = typer.Typer()
cli.add_typer(partner_app, name="partner")

URL = "https://partner.example/consentry/hooks"
SECRET_24 = "whsec_" + base64.b64encode(bytes(range(24))).decode()
SECRET_64 = "whsec_" + base64.b64encode(bytes(range(64))).decode()
URLSAFE = "whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode()  # '-' and '_': not standard


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def body(**changes: Any) -> dict[str, Any]:
    return {"name": "acme", "purposes": ["train-ai"], "categories": ["posts"], **changes}


def recipients(database: Database) -> list[tuple[Any, ...]]:
    with database.read() as session:
        return [
            tuple(row)
            for row in session.execute(
                select(
                    Recipient.name,
                    Recipient.status,
                    Recipient.deletion_deadline_hours,
                    Recipient.webhook_url,
                    Recipient.webhook_secret,
                ).order_by(Recipient.name)
            )
        ]


@pytest.fixture
def cli_env(database: Database, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setenv("CONSENTRY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", database.url)
    get_settings.cache_clear()
    yield database
    get_settings.cache_clear()


# --- registry ---------------------------------------------------------------------------------------


def test_a_partner_is_a_recipient_with_its_partner_fields_and_a_generated_secret_shown_once(
    client: TestClient, admin_token: str, database: Database
) -> None:
    created = client.post(
        "/v1/admin/partners",
        json=body(purposes=["train-ai", "ai-input"], deadline_hours=48, webhook_url=URL),
        headers=auth(admin_token),
    )
    assert created.status_code == 201, created.text
    out = created.json()
    secret = out["webhook_secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:], validate=True)) == 32
    assert out["kind"] == "third_party" and out["status"] == "active" and out["deadline_hours"] == 48
    assert out["webhook_url"] == URL and out["webhook_secret_set"] is True
    assert out["keys"] == [] and out["revocations"] == {"pending": 0, "overdue": 0, "acknowledged": 0}
    assert recipients(database) == [("acme", "active", 48, URL, secret)]
    # never shown again
    shown = client.get("/v1/admin/partners/acme", headers=auth(admin_token)).json()
    listed = client.get("/v1/admin/partners", headers=auth(admin_token)).json()
    assert secret not in json.dumps(shown) and secret not in json.dumps(listed)
    assert "secret" not in shown and [p["name"] for p in listed] == ["acme"]
    # and a recipient like any other: the datasets admin API lists it
    assert [r["name"] for r in client.get("/v1/admin/recipients", headers=auth(admin_token)).json()] == [
        "acme"
    ]


def test_a_given_secret_is_kept_and_not_echoed_and_no_webhook_means_no_secret(
    client: TestClient, admin_token: str, database: Database
) -> None:
    given = client.post(
        "/v1/admin/partners",
        json=body(webhook_url=URL, webhook_secret=SECRET_64),
        headers=auth(admin_token),
    )
    assert given.status_code == 201 and given.json()["webhook_secret"] is None
    plain = client.post("/v1/admin/partners", json=body(name="plain"), headers=auth(admin_token))
    assert plain.status_code == 201 and plain.json()["webhook_secret_set"] is False
    assert recipients(database) == [
        ("acme", "active", 72, URL, SECRET_64),
        ("plain", "active", 72, None, None),
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"webhook_url": "ftp://partner.example/hooks"}, "webhook_url"),
        ({"webhook_url": "https://"}, "webhook_url"),
        ({"webhook_url": "partner.example/hooks"}, "webhook_url"),
        ({"webhook_url": "https://partner .example/"}, "webhook_url"),
        ({"webhook_url": "http://partner.example:99999/"}, "webhook_url"),
        ({"webhook_url": ""}, "webhook_url"),
        ({"webhook_url": URL, "webhook_secret": "abc"}, "webhook_secret"),
        ({"webhook_url": URL, "webhook_secret": "whsec_"}, "webhook_secret"),
        ({"webhook_url": URL, "webhook_secret": SECRET_24[6:]}, "webhook_secret"),
        (
            {"webhook_url": URL, "webhook_secret": "whsec_" + base64.b64encode(bytes(23)).decode()},
            "webhook_secret",
        ),
        (
            {"webhook_url": URL, "webhook_secret": "whsec_" + base64.b64encode(bytes(65)).decode()},
            "webhook_secret",
        ),
        ({"webhook_url": URL, "webhook_secret": "whsec_!!not-base64!!"}, "webhook_secret"),
        ({"webhook_url": URL, "webhook_secret": SECRET_24.rstrip("=") + "A"}, "webhook_secret"),
        ({"webhook_url": URL, "webhook_secret": URLSAFE}, "webhook_secret"),
        ({"webhook_secret": SECRET_24}, "webhook_url"),
        ({"deadline_hours": 0}, "deadline_hours"),
        ({"deadline_hours": -3}, "deadline_hours"),
        ({"deadline_hours": 1.5}, "deadline_hours"),
        ({"deadline_hours": 10**9}, "deadline_hours"),
        ({"purposes": ["sell"]}, "purposes"),
        ({"categories": ["likes"]}, "categories"),
        ({"kind": "partner"}, "kind"),
        ({"name": "overdue"}, "name"),
        ({"name": "no spaces"}, "name"),
    ],
)
def test_invalid_partners_are_refused_naming_the_field_and_nothing_changes(
    client: TestClient, admin_token: str, database: Database, changes: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/admin/partners", json=body(**changes), headers=auth(admin_token))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field
    assert recipients(database) == []


def test_secrets_of_24_and_64_bytes_are_accepted() -> None:
    assert service.check_webhook_secret(SECRET_24) == SECRET_24
    assert service.check_webhook_secret(SECRET_64) == SECRET_64


def test_a_duplicate_name_is_a_conflict(client: TestClient, admin_token: str) -> None:
    assert client.post("/v1/admin/partners", json=body(), headers=auth(admin_token)).status_code == 201
    again = client.post("/v1/admin/partners", json=body(), headers=auth(admin_token))
    assert again.status_code == 409 and again.json()["field"] == "name"


def test_the_webhook_is_set_changed_rotated_and_removed(
    client: TestClient, admin_token: str, database: Database
) -> None:
    headers = auth(admin_token)
    assert client.post("/v1/admin/partners", json=body(), headers=headers).status_code == 201

    set_ = client.patch("/v1/admin/partners/acme", json={"webhook_url": URL}, headers=headers).json()
    first = set_["webhook_secret"]
    assert first.startswith("whsec_") and set_["webhook_url"] == URL
    moved = client.patch(
        "/v1/admin/partners/acme", json={"webhook_url": URL + "/v2", "deadline_hours": 24}, headers=headers
    ).json()
    assert moved["webhook_secret"] is None and moved["deadline_hours"] == 24
    assert recipients(database) == [("acme", "active", 24, URL + "/v2", first)]
    rotated = client.patch("/v1/admin/partners/acme", json={"rotate_secret": True}, headers=headers).json()
    assert rotated["webhook_secret"] not in (None, first)
    given = client.patch(
        "/v1/admin/partners/acme", json={"webhook_secret": SECRET_24}, headers=headers
    ).json()
    assert given["webhook_secret"] is None
    assert recipients(database) == [("acme", "active", 24, URL + "/v2", SECRET_24)]

    before = recipients(database)
    for change, field in [
        ({"webhook_url": "mailto:x@partner.example"}, "webhook_url"),
        ({"webhook_secret": "whsec_short"}, "webhook_secret"),
        ({"webhook_secret": SECRET_64, "rotate_secret": True}, "rotate_secret"),
        ({"deadline_hours": 0, "webhook_url": URL}, "deadline_hours"),
        ({"webhook_url": None, "rotate_secret": True}, "webhook_url"),
    ]:
        refused = client.patch("/v1/admin/partners/acme", json=change, headers=headers)
        assert refused.status_code == 422 and refused.json()["field"] == field, (change, refused.text)
    assert recipients(database) == before

    removed = client.patch("/v1/admin/partners/acme", json={"webhook_url": None}, headers=headers).json()
    assert removed["webhook_url"] is None and removed["webhook_secret_set"] is False
    assert recipients(database) == [("acme", "active", 24, None, None)]
    no_url = client.patch("/v1/admin/partners/acme", json={"rotate_secret": True}, headers=headers)
    assert no_url.status_code == 422 and no_url.json()["field"] == "webhook_url"
    assert client.patch("/v1/admin/partners/nobody", json={}, headers=headers).status_code == 404


def test_the_registry_is_for_admins_only(client: TestClient, database: Database) -> None:
    assert client.get("/v1/admin/partners").status_code == 401
    with database.write() as session:
        service.add_partner(session, name="acme", purposes=["train-ai"], categories=["posts"])
        _, key = service.create_key(session, partner="acme")
    # a partner's key is no admin token
    assert client.get("/v1/admin/partners", headers=auth(key)).status_code == 401


# --- API keys ---------------------------------------------------------------------------------------


def test_keys_are_shown_once_stored_hashed_listed_by_prefix_and_revocable(
    client: TestClient, admin_token: str, database: Database
) -> None:
    headers = auth(admin_token)
    assert client.post("/v1/admin/partners", json=body(), headers=headers).status_code == 201
    issued = client.post("/v1/admin/partners/acme/keys", json={"label": "prod"}, headers=headers)
    assert issued.status_code == 201
    key = issued.json()["key"]
    assert key.startswith("cpk_") and len(key) >= 4 + 43
    with database.read() as session:
        row = session.scalars(select(PartnerKey)).one()
        assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert row.prefix == key[:12] and row.label == "prod" and row.last_used_at is None
        stored = [str(v) for v in (row.prefix, row.key_hash, row.label)]
    assert all(key not in value for value in stored)
    listed = client.get("/v1/admin/partners/acme/keys", headers=headers).json()
    assert [k["prefix"] for k in listed] == [key[:12]] and key not in json.dumps(listed)

    used = client.get("/v1/partner/releases", headers=auth(key))
    assert used.status_code == 200 and used.json() == []
    shown = client.get("/v1/admin/partners/acme", headers=headers).json()
    assert shown["keys"][0]["last_used_at"] is not None

    revoked = client.post(f"/v1/admin/partners/acme/keys/{key[:12]}/revoke", headers=headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    again = client.post(f"/v1/admin/partners/acme/keys/{revoked.json()['id']}/revoke", headers=headers)
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    refused = client.get("/v1/partner/releases", headers=auth(key))
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert client.post("/v1/admin/partners/acme/keys/999/revoke", headers=headers).status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer cpk_unknown"},
        {"Authorization": "Basic Y3BrX3g6"},
        {"Authorization": "Bearer "},
    ],
)
def test_requests_without_a_valid_key_get_401_problems(client: TestClient, headers: dict[str, str]) -> None:
    for path in ("/v1/partner/releases", "/v1/partner/revocations"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_an_admin_or_account_token_is_no_partner_key(client: TestClient, admin_token: str) -> None:
    assert client.get("/v1/partner/releases", headers=auth(admin_token)).status_code == 401


def test_another_partners_key_cannot_be_revoked_through_this_partner(
    client: TestClient, admin_token: str, database: Database
) -> None:
    with database.write() as session:
        for name in ("acme", "other"):
            service.add_partner(session, name=name, purposes=["train-ai"], categories=["posts"])
        other_key, _ = service.create_key(session, partner="other")
        other_id = other_key.id
    response = client.post(f"/v1/admin/partners/acme/keys/{other_id}/revoke", headers=auth(admin_token))
    assert response.status_code == 404
    with database.read() as session:
        assert session.get(PartnerKey, other_id).revoked_at is None  # type: ignore[union-attr]


def test_a_suspended_partner_gets_403_on_releases_but_still_reads_and_acknowledges_revocations(
    client: TestClient, admin_token: str, database: Database
) -> None:
    with database.write() as session:
        service.add_partner(session, name="acme", purposes=["train-ai"], categories=["posts"])
        _, key = service.create_key(session, partner="acme")
    suspended = client.post("/v1/admin/partners/acme/suspend", headers=auth(admin_token))
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    refused = client.get("/v1/partner/releases", headers=auth(key))
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/partner/revocations", headers=auth(key)).status_code == 200
    resumed = client.post("/v1/admin/partners/acme/resume", headers=auth(admin_token))
    assert resumed.json()["status"] == "active"
    assert client.get("/v1/partner/releases", headers=auth(key)).status_code == 200


# --- CLI --------------------------------------------------------------------------------------------


def test_the_partner_commands(cli_env: Database) -> None:
    added = runner.invoke(
        cli,
        [
            "partner",
            "add",
            "acme",
            "--kind",
            "third_party",
            "--purpose",
            "train-ai",
            "--purpose",
            "ai-input",
            "--category",
            "posts",
            "--deadline-hours",
            "48",
            "--webhook-url",
            URL,
        ],
    )
    assert added.exit_code == 0, added.output
    secret = recipients(cli_env)[0][4]
    assert secret and secret in added.output and "shown once" in added.output
    shown = runner.invoke(cli, ["partner", "show", "acme", "--json"])
    assert shown.exit_code == 0 and secret not in shown.output
    out = json.loads(shown.output)
    assert out["purposes"] == ["train-ai", "ai-input"] and out["deadline_hours"] == 48

    key = runner.invoke(cli, ["partner", "key", "create", "acme", "--label", "ci"])
    assert key.exit_code == 0 and key.output.strip().startswith("cpk_")
    listed = runner.invoke(cli, ["partner", "key", "list", "acme"])
    assert key.output.strip()[:12] in listed.output and key.output.strip() not in listed.output
    assert "acme" in runner.invoke(cli, ["partner", "list"]).output
    assert json.loads(runner.invoke(cli, ["partner", "list", "--json"]).output)[0]["name"] == "acme"

    updated = runner.invoke(cli, ["partner", "update", "acme", "--rotate-secret"])
    assert updated.exit_code == 0 and recipients(cli_env)[0][4] in updated.output
    assert recipients(cli_env)[0][4] != secret
    removed = runner.invoke(cli, ["partner", "update", "acme", "--remove-webhook"])
    assert removed.exit_code == 0 and recipients(cli_env)[0][3:] == (None, None)

    assert runner.invoke(cli, ["partner", "suspend", "acme"]).exit_code == 0
    assert recipients(cli_env)[0][1] == "suspended"
    assert runner.invoke(cli, ["partner", "resume", "acme"]).exit_code == 0
    assert recipients(cli_env)[0][1] == "active"

    revoked = runner.invoke(cli, ["partner", "key", "revoke", "acme", key.output.strip()[:12]])
    assert revoked.exit_code == 0, revoked.output
    with cli_env.read() as session:
        assert session.scalars(select(PartnerKey)).one().revoked_at is not None
    assert runner.invoke(cli, ["partner", "show", "nobody"]).exit_code == 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (["--webhook-url", "ftp://partner.example"], "webhook_url"),
        (["--webhook-url", URL, "--webhook-secret", "whsec_c2hvcnQ="], "webhook_secret"),
        (["--webhook-secret", SECRET_24], "webhook_url"),
        (["--deadline-hours", "0"], "deadline_hours"),
        (["--purpose", "sell"], "purposes"),
        (["--category", "posts,likes"], "categories"),
    ],
)
def test_invalid_partners_exit_2_from_the_cli_and_nothing_changes(
    cli_env: Database, options: list[str], field: str
) -> None:
    result = runner.invoke(cli, ["partner", "add", "acme", *options])
    assert result.exit_code == 2, result.output
    assert f"({field})" in result.output
    assert recipients(cli_env) == []


def test_an_invalid_update_exits_2_from_the_cli_and_nothing_changes(cli_env: Database) -> None:
    assert runner.invoke(cli, ["partner", "add", "acme", "--webhook-url", URL]).exit_code == 0
    before = recipients(cli_env)
    for options in (["--webhook-url", "https://"], ["--webhook-secret", "nope"], ["--deadline-hours", "-1"]):
        result = runner.invoke(cli, ["partner", "update", "acme", *options])
        assert result.exit_code == 2, (options, result.output)
    assert recipients(cli_env) == before
