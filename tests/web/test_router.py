"""The web routes without a browser: sign-in, redirects, CSRF, saving, receipts, the dashboard."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from consentry.auth.service import create_token
from consentry.db import Database, utcnow
from consentry.transparency.checkpoint import parse_proof
from consentry.transparency.service import make_checkpoint
from tests.conftest import make_account

TRAINING = "assistant_training_posts"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def signed_in(client: TestClient, token: str) -> str:
    """Sign in through the form; returns the page's CSRF token."""
    form = client.get("/signin")
    response = client.post(
        "/signin", data={"token": token, "csrf_token": csrf_of(form.text)}, follow_redirects=False
    )
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    return csrf_of(page.text)


def settings_of(client: TestClient, token: str) -> dict[str, dict[str, Any]]:
    response = client.get("/v1/me/settings", headers={"Authorization": f"Bearer {token}"})
    return {s["key"]: s for s in response.json()["settings"]}


def test_pages_without_a_session_go_to_sign_in(client: TestClient) -> None:
    for path in ("/settings", "/dashboard", "/settings/receipts/1.json"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith(f"/signin?next={path}")
    assert client.get("/", follow_redirects=False).headers["location"] == "/settings"
    response = client.post(
        "/settings", data={"setting": TRAINING, "value": "deny"}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 401 and response.json()["signin"].startswith("/signin")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "You are not signed in. Sign in to continue."


def test_a_wrong_or_expired_token_clears_the_cookie_and_says_why(
    client: TestClient, database: Database
) -> None:
    account_id, _ = make_account(database, handle="old")
    with database.write() as session:
        expired = create_token(session, kind="account", account_id=account_id, expires_at=utcnow())
    for token in ("cst_wrong", expired):
        client.cookies.set("consentry_token", token)
        response = client.get("/settings", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/signin?next=/settings&reason=expired"
        assert 'consentry_token=""' in response.headers["set-cookie"]
        page = client.get(response.headers["location"])
        assert "Your session has ended" in page.text


def test_sign_in_sets_a_strict_http_only_cookie_and_picks_the_page(
    client: TestClient, database: Database, admin_token: str
) -> None:
    _, token = make_account(database)
    form = client.get("/signin")
    assert "consentry_signin" in form.headers["set-cookie"]
    response = client.post(
        "/signin", data={"token": token, "csrf_token": csrf_of(form.text)}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/settings"
    cookie = response.headers["set-cookie"].lower()
    assert "consentry_token=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    client.cookies.clear()
    form = client.get("/signin?next=//evil.example/steal")
    response = client.post(
        "/signin",
        data={"token": admin_token, "csrf_token": csrf_of(form.text), "next": "//evil.example/steal"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/dashboard"


def test_sign_in_refuses_a_forged_form_and_a_bad_token(client: TestClient, database: Database) -> None:
    _, token = make_account(database)
    client.get("/signin")
    forged = client.post("/signin", data={"token": token, "csrf_token": "guess"}, follow_redirects=False)
    assert forged.status_code == 403 and "consentry_token=" not in forged.headers.get("set-cookie", "")
    form = client.get("/signin")
    wrong = client.post(
        "/signin", data={"token": "cst_nope", "csrf_token": csrf_of(form.text)}, follow_redirects=False
    )
    assert wrong.status_code == 401 and "not valid" in wrong.text


def test_settings_page_shows_every_setting_with_its_basis(client: TestClient, database: Database) -> None:
    _, token = make_account(database, country="DE")
    signed_in(client, token)
    page = client.get("/settings")
    assert page.status_code == 200
    for key in (
        "assistant_training_posts",
        "assistant_training_interactions",
        "assistant_realtime",
        "third_party_sharing",
    ):
        assert f'data-setting="{key}" aria-checked="false"' in page.text
    assert "Default for the European Economic Area (policy v1)" in page.text
    assert 'href="/policies/1#assistant_training_posts"' in page.text
    assert "No choices recorded yet" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', page.text)
    assert external == []


def test_a_change_needs_the_csrf_token_and_then_shows_the_receipt(
    client: TestClient, database: Database
) -> None:
    _, token = make_account(database)
    csrf = signed_in(client, token)
    refused = client.post("/settings", data={"setting": TRAINING, "value": "deny"}, follow_redirects=False)
    assert refused.status_code == 403 and "not saved" in refused.text
    assert settings_of(client, token)[TRAINING]["explicit"] is False
    saved = client.post(
        "/settings", data={"setting": TRAINING, "value": "deny", "csrf_token": csrf}, follow_redirects=False
    )
    assert saved.status_code == 303
    assert re.fullmatch(r"/settings\?receipt=\d+#receipt", saved.headers["location"])
    page = client.get(saved.headers["location"])
    assert (
        "Saved — here is your receipt" in page.text
        and f'data-setting="{TRAINING}" aria-checked="false"' in page.text
    )
    assert settings_of(client, token)[TRAINING]["value"] == "deny"


def test_a_change_from_the_script_answers_json(client: TestClient, database: Database) -> None:
    _, token = make_account(database)
    csrf = signed_in(client, token)
    response = client.post(
        "/settings",
        data={"setting": TRAINING, "value": "deny"},
        headers={"Accept": "application/json", "X-CSRF-Token": csrf},
    )
    body = response.json()
    assert response.status_code == 200 and body["ok"] is True
    state = {s["key"]: s for s in body["settings"]}[TRAINING]
    assert (
        state["checked"] is False and state["explicit"] is True and state["basis"].startswith("Your choice")
    )
    assert "Download receipt (JSON)" in body["receipt_html"] and "Turned off" in body["history_html"]


def test_bad_input_and_a_failed_save_leave_the_real_state(
    client: TestClient, app: FastAPI, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = make_account(database)
    csrf = signed_in(client, token)
    headers = {"Accept": "application/json", "X-CSRF-Token": csrf}
    unknown = client.post("/settings", data={"setting": "nope", "value": "deny"}, headers=headers)
    assert unknown.status_code == 422 and unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["ok"] is False and "unknown setting" in unknown.json()["detail"]
    assert unknown.json()["title"] == "Invalid input" and unknown.json()["status"] == 422
    bad_value = client.post("/settings", data={"setting": TRAINING, "value": "maybe"}, headers=headers)
    assert bad_value.status_code == 422

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(app.state.consent_writer, "change", broken)
    failed = client.post("/settings", data={"setting": TRAINING, "value": "deny"}, headers=headers)
    assert failed.status_code == 503 and "not saved" in failed.json()["detail"]
    assert failed.headers["content-type"] == "application/problem+json"
    state = {s["key"]: s for s in failed.json()["settings"]}[TRAINING]
    assert state["checked"] is True and state["explicit"] is False
    plain = client.post(
        "/settings", data={"setting": TRAINING, "value": "deny", "csrf_token": csrf}, follow_redirects=False
    )
    assert plain.status_code == 503 and f'data-setting="{TRAINING}" aria-checked="true"' in plain.text
    monkeypatch.undo()
    assert settings_of(client, token)[TRAINING]["explicit"] is False


def test_receipts_download_only_the_holders_own(client: TestClient, database: Database) -> None:
    _, ada = make_account(database, handle="ada")
    _, bruno = make_account(database, handle="bruno")
    saved = client.put(
        "/v1/me/settings", json={"settings": {TRAINING: "deny"}}, headers={"Authorization": f"Bearer {bruno}"}
    )
    bruno_seq = saved.json()["receipts"][0]["receipt"]["chain"]["seq"]
    csrf = signed_in(client, ada)
    mine = client.post(
        "/settings",
        data={"setting": TRAINING, "value": "deny"},
        headers={"Accept": "application/json", "X-CSRF-Token": csrf},
    )
    assert mine.status_code == 200
    seq = bruno_seq + 1
    download = client.get(f"/settings/receipts/{seq}.json")
    assert download.status_code == 200
    assert download.headers["content-disposition"] == f'attachment; filename="consentry-receipt-{seq}.json"'
    assert download.json()["receipt"]["chain"]["seq"] == seq
    assert client.get(f"/settings/receipts/{bruno_seq}.json").status_code == 404

    # the proof beside it: not ready until a checkpoint covers the event, then a tlog-proof file
    with database.write() as session:
        session.execute(text("DELETE FROM tlog_checkpoints"))
    early = client.get(f"/settings/receipts/{seq}.tlog-proof")
    assert early.status_code == 409 and "Proof not ready yet" in early.text
    with database.write() as session:
        make_checkpoint(session, log=client.app.state.tlog, force=True)  # type: ignore[attr-defined]
    proof = client.get(f"/settings/receipts/{seq}.tlog-proof")
    assert proof.status_code == 200
    assert (
        proof.headers["content-disposition"] == f'attachment; filename="consentry-receipt-{seq}.tlog-proof"'
    )
    assert parse_proof(proof.text).index == seq - 1
    assert client.get(f"/settings/receipts/{bruno_seq}.tlog-proof").status_code == 404


def test_the_json_api_refuses_cookie_requests_without_the_csrf_header(
    client: TestClient, database: Database
) -> None:
    _, token = make_account(database)
    csrf = signed_in(client, token)
    body = {"settings": {TRAINING: "deny"}}
    assert client.get("/v1/me/settings").status_code == 200  # reading with the cookie is fine
    forged = client.put("/v1/me/settings", json=body)
    assert forged.status_code == 403 and forged.json()["field"] == "X-CSRF-Token"
    assert client.put("/v1/me/settings", json=body, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    assert settings_of(client, token)[TRAINING]["explicit"] is False
    assert client.put("/v1/me/settings", json=body, headers={"X-CSRF-Token": csrf}).status_code == 200
    client.cookies.clear()
    bearer = client.put(
        "/v1/me/settings",
        json={"settings": {TRAINING: "allow"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert bearer.status_code == 200


def test_the_csrf_token_is_per_session(client: TestClient, database: Database) -> None:
    _, ada = make_account(database, handle="ada")
    _, bruno = make_account(database, handle="bruno")
    ada_csrf = signed_in(client, ada)
    bruno_csrf = signed_in(client, bruno)
    assert ada_csrf != bruno_csrf
    response = client.post(
        "/settings",
        data={"setting": TRAINING, "value": "deny", "csrf_token": ada_csrf},
        follow_redirects=False,
    )
    assert response.status_code == 403


def test_sign_out_needs_the_csrf_token(client: TestClient, database: Database) -> None:
    _, token = make_account(database)
    csrf = signed_in(client, token)
    assert client.post("/signout", follow_redirects=False).status_code == 403
    out = client.post("/signout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/signin?reason=signed-out"
    assert client.get("/settings", follow_redirects=False).status_code == 303


def test_gpc_on_the_page_records_the_third_party_opt_out(client: TestClient, database: Database) -> None:
    _, token = make_account(database)
    signed_in(client, token)
    page = client.get("/settings", headers={"Sec-GPC": "1"})
    assert "Global Privacy Control" in page.text
    assert settings_of(client, token)["third_party_sharing"]["value"] == "deny"


def test_dashboard_is_for_admins(client: TestClient, database: Database, admin_token: str) -> None:
    _account_id, token = make_account(database)
    signed_in(client, token)
    assert client.get("/dashboard").status_code == 403
    client.put(
        "/v1/me/settings", json={"settings": {TRAINING: "deny"}}, headers={"Authorization": f"Bearer {token}"}
    )
    signed_in(client, admin_token)
    assert client.get("/settings", follow_redirects=False).headers["location"] == "/dashboard"
    page = client.get("/dashboard?range=90d")
    assert page.status_code == 200
    for heading in (
        "Consent over time",
        "Opt-outs now",
        "Policy versions",
        "Partners and revocations",
        "Recent releases",
        "Scraping leaderboard",
    ):
        assert heading in page.text
    row = re.search(rf'<tr data-setting="{TRAINING}">.*?data-col="explicit">(\d+)<', page.text, re.S)
    assert row is not None and row.group(1) == "1"
    assert page.text.count('<svg class="chart"') == 4
    assert client.get("/dashboard?range=forever").status_code == 422


def test_policy_page(client: TestClient) -> None:
    page = client.get("/policies/1")
    assert page.status_code == 200 and "Policy version 1" in page.text
    assert 'id="assistant_training_posts"' in page.text
    assert client.get("/policies/99").status_code == 404


def test_static_assets_are_served_locally(client: TestClient) -> None:
    for path, kind in (("/static/consentry.css", "text/css"), ("/static/settings.js", "javascript")):
        response = client.get(path)
        assert response.status_code == 200 and kind in response.headers["content-type"]


def test_link_forms_need_the_csrf_token_and_refuse_bad_links(client: TestClient, database: Database) -> None:
    """Asking, confirming and removing links from the page: a forged form or a bad link stores nothing;
    a linked-scope toggle reaches the linked account."""
    me, token = make_account(database, handle="me")
    other, other_token = make_account(database, handle="other")

    def links() -> list[Any]:
        response = client.get("/v1/me/links", headers={"Authorization": f"Bearer {token}"})
        return list(response.json())

    csrf = signed_in(client, token)
    forged = client.post("/settings/links", data={"handle": "other", "csrf_token": "guess"})
    assert forged.status_code == 403 and "page has expired" in forged.text
    assert links() == []
    for handle, reason in (("me", "cannot be linked with itself"), ("ghost", "there is no account @ghost")):
        refused = client.post("/settings/links", data={"handle": handle, "csrf_token": csrf})
        assert refused.status_code in (404, 422) and reason in refused.text
    assert links() == []
    asked = client.post(
        "/settings/links", data={"handle": "@other", "csrf_token": csrf}, follow_redirects=False
    )
    assert asked.status_code == 303 and asked.headers["location"] == "/settings#links"
    own = client.post(f"/settings/links/{other}/confirm", data={"csrf_token": csrf})
    assert own.status_code == 409 and "only account" in own.text  # the asking side cannot confirm
    assert [link["status"] for link in links()] == ["pending"]

    other_csrf = signed_in(client, other_token)
    assert client.post(f"/settings/links/{me}/confirm", data={"csrf_token": "guess"}).status_code == 403
    done = client.post(
        f"/settings/links/{me}/confirm", data={"csrf_token": other_csrf}, follow_redirects=False
    )
    assert done.status_code == 303
    page = client.get("/settings")
    assert 'name="scope" value="linked"' in page.text and "@me" in page.text

    saved = client.post(
        "/settings",
        data={"setting": TRAINING, "value": "deny", "scope": "linked"},
        headers={"Accept": "application/json", "X-CSRF-Token": other_csrf},
    )
    assert saved.status_code == 200 and "Recorded for 2 accounts" in saved.json()["message"]
    assert settings_of(client, token)[TRAINING]["value"] == "deny"
    removed = client.post(
        f"/settings/links/{me}/remove", data={"csrf_token": other_csrf}, follow_redirects=False
    )
    assert removed.status_code == 303 and links() == []
    assert settings_of(client, token)[TRAINING]["value"] == "deny"  # unlinking keeps the choice
