"""Global Privacy Control: recorded once, only where allowed, never over a later explicit choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentry.consent import service
from consentry.consent.service import ConsentContext
from consentry.db import Database
from tests.conftest import make_account, reset

GPC = {"Sec-GPC": "1"}


def third_party(client: TestClient, token: str, extra: dict[str, str] | None = None) -> str:
    response = client.get("/v1/me/settings", headers={"Authorization": f"Bearer {token}", **(extra or {})})
    assert response.status_code == 200
    return {s["key"]: s["value"] for s in response.json()["settings"]}["third_party_sharing"]


def history(client: TestClient, token: str) -> list[tuple[str, str, str]]:
    events = client.get("/v1/me/consent-history", headers={"Authorization": f"Bearer {token}"}).json()[
        "events"
    ]
    return [(e["setting"], e["value"], e["source"]) for e in reversed(events)]


def test_gpc_records_one_deny_and_an_explicit_allow_after_it_stands(
    client: TestClient, database: Database
) -> None:
    _, token = make_account(database, country="US")
    assert third_party(client, token) == "allow"
    assert third_party(client, token, GPC) == "deny"
    assert third_party(client, token, GPC) == "deny"  # repeated GPC records nothing new
    assert history(client, token) == [("third_party_sharing", "deny", "gpc")]
    client.put(
        "/v1/me/settings",
        headers={"Authorization": f"Bearer {token}"},
        json={"settings": {"third_party_sharing": "allow"}},
    )
    assert third_party(client, token, GPC) == "allow"  # the explicit allow after GPC stands
    assert history(client, token)[-1] == ("third_party_sharing", "allow", "user")
    assert len(history(client, token)) == 2


def test_gpc_records_nothing_where_sharing_is_already_denied(client: TestClient, database: Database) -> None:
    _, token = make_account(database, handle="eu", country="DE")  # opt-in jurisdiction: default deny
    assert third_party(client, token, GPC) == "deny"
    assert history(client, token) == []
    assert client.get("/.well-known/gpc.json").json()["gpc"] is True


actions = st.lists(st.sampled_from(["gpc", "allow", "deny"]), max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=actions)
def test_gpc_rule_over_random_histories(database: Database, ctx: ConsentContext, steps: list[str]) -> None:
    """A GPC signal records a deny only where sharing is allowed and no GPC was ever recorded before
    (so a later explicit choice stands); checked against a plain model of the rule."""
    reset(database)
    account_id, _ = make_account(database, country="US")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    model: list[tuple[str, str]] = []  # (value, source) the rule should have recorded
    for step in [*steps, "gpc"]:
        at += timedelta(seconds=1)
        if step == "gpc":
            effective = model[-1][0] if model else "allow"  # US default: allow
            if effective == "allow" and all(source != "gpc" for _, source in model):
                model.append(("deny", "gpc"))
            request = service.gpc_request(account_id, ctx=ctx)
        else:
            model.append((step, "user"))
            request = service.ChangeRequest(account_id, {"third_party_sharing": step}, "web")
        with database.write() as session:
            [result] = service.change_settings_many(session, [request], ctx=ctx, at=at)
        assert not isinstance(result, Exception)
    with database.read() as session:
        events = [(e.value, e.source) for e in reversed(service.history(session, account_id=account_id))]
        [state] = [
            s
            for s in service.settings_view(session, account_id=account_id, ctx=ctx, at=at)
            if s.key == "third_party_sharing"
        ]
    assert events == model
    assert state.value == (model[-1][0] if model else "allow")
