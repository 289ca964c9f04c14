"""Policy-change impact: matches a brute-force count; silent opt-ins and short notice are refused."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from consentry.consent import service
from consentry.consent.evaluate import ExplicitEvent, effective_consent
from consentry.consent.service import ConsentContext
from consentry.consent.state import facts
from consentry.db import Database, utcnow
from consentry.errors import Conflict, InvalidInput
from consentry.social.service import get_account
from tests.conftest import make_account

PEOPLE = [
    ("a", "US", 1990),
    ("b", "DE", 1985),
    ("c", "FR", 1970),
    ("d", "GB", 2000),
    ("e", "CH", 1960),
    ("f", "JP", 2015),
    ("g", "DE", None),
]
START = {"default": {"*": "allow"}, "EEA": {"*": "deny"}, "UK": {"*": "deny"}, "CH": {"*": "deny"}}
OPEN_EEA = {
    "default": {"*": "allow"},
    "EEA": {"*": "allow", "third_party_sharing": "deny"},
    "UK": {"*": "deny"},
    "CH": {"*": "deny"},
}


def populate(database: Database, ctx: ConsentContext) -> list[int]:
    ids = [make_account(database, handle=h, country=c, birth_year=y)[0] for h, c, y in PEOPLE]
    with database.write() as session:
        service.change_settings(
            session, account_id=ids[1], changes={"assistant_training_posts": "deny"}, client="ios", ctx=ctx
        )
        service.change_settings(
            session, account_id=ids[0], changes={"assistant_realtime": "deny"}, client="web", ctx=ctx
        )
    return ids


def brute_force(
    database: Database, ctx: ConsentContext, ids: list[int], candidate: service.Policy
) -> Counter[tuple[str, str, str, str]]:
    counts: Counter[tuple[str, str, str, str]] = Counter()
    with database.read() as session:
        policies = service.load_policies(session)
        for account_id in ids:
            account = facts(get_account(session, account_id))
            events = [
                ExplicitEvent(e.setting, e.value, e.recorded_at, e.seq)
                for e in service.history(session, account_id=account_id)
            ]
            for key in ctx.catalog.keys:
                args = {
                    "account": account,
                    "setting": key,
                    "at": candidate.effective_at,
                    "events": events,
                    "jurisdictions": ctx.jurisdictions,
                }
                before = effective_consent(policies=policies, **args).value  # type: ignore[arg-type]
                after = effective_consent(policies=[*policies, candidate], **args).value  # type: ignore[arg-type]
                if before != after:
                    counts[(key, ctx.jurisdictions.group_of(account.country), before, after)] += 1
    return counts


@pytest.mark.parametrize("applies_to", ["all", "new_accounts"])
def test_impact_matches_a_brute_force_count(database: Database, ctx: ConsentContext, applies_to: str) -> None:
    ids = populate(database, ctx)
    with database.read() as session:
        candidate = service.candidate_policy(
            session,
            effective_at=utcnow() + timedelta(days=45),
            applies_to=applies_to,
            defaults=OPEN_EEA,
            title="Open EEA",
            ctx=ctx,
        )
        impact = service.policy_impact(session, candidate=candidate, ctx=ctx)
    expected = brute_force(database, ctx, ids, candidate)
    got = Counter({(r.setting, r.group, r.before, r.after): r.accounts for r in impact.rows})
    assert got == expected
    assert impact.changes_defaults
    if applies_to == "all":
        # DE (one explicit deny kept) and FR flip to allow; minors and unknown ages never do
        assert got[("assistant_realtime", "EEA", "deny", "allow")] == 2
        assert got[("assistant_training_posts", "EEA", "deny", "allow")] == 1
        assert impact.silent_opt_ins == 2 and sorted(impact.changed_account_ids) == sorted(ids[1:3])
    else:
        assert got == Counter() and impact.silent_opt_ins == 0  # no silent opt-in of existing accounts


def test_silent_opt_in_and_short_notice_are_refused(database: Database, ctx: ConsentContext) -> None:
    populate(database, ctx)
    later = utcnow() + timedelta(days=45)
    args = {"defaults": OPEN_EEA, "title": "Open EEA", "summary": "", "created_by": "test", "ctx": ctx}
    with pytest.raises(Conflict) as refused, database.write() as session:
        service.add_policy(session, effective_at=later, applies_to="all", **args)  # type: ignore[arg-type]
    assert refused.value.field == "applies_to" and "2 existing accounts" in refused.value.detail
    with pytest.raises(InvalidInput) as early, database.write() as session:
        service.add_policy(
            session, effective_at=utcnow() + timedelta(days=10), applies_to="new_accounts", **args
        )  # type: ignore[arg-type]
    assert early.value.field == "effective_at"
    with database.read() as session:
        assert session.execute(sa.text("SELECT count(*) FROM policy_versions")).scalar_one() == 1
    with database.write() as session:  # knowingly, and a version that changes no default needs no notice
        row, impact = service.add_policy(
            session, effective_at=later, applies_to="all", allow_opt_in=True, **args
        )  # type: ignore[arg-type]
        same, _ = service.add_policy(
            session,
            effective_at=utcnow() + timedelta(days=1),
            applies_to="all",
            defaults=START,
            title="Reworded",
            summary="",
            created_by="test",
            ctx=ctx,
        )
    assert (row.version, same.version, impact.silent_opt_ins) == (2, 3, 2)


def test_impact_api(client: TestClient, database: Database, ctx: ConsentContext, admin_token: str) -> None:
    populate(database, ctx)
    body = {
        "effective_at": (utcnow() + timedelta(days=60)).isoformat(),
        "applies_to": "all",
        "defaults": OPEN_EEA,
        "title": "Open EEA",
    }
    response = client.post(
        "/v1/policies/impact", json=body, headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert response.status_code == 200
    assert response.json()["silent_opt_ins"] == 2 and response.json()["accounts"] == len(PEOPLE)
    refused = client.post("/v1/policies", json=body, headers={"Authorization": f"Bearer {admin_token}"})
    assert refused.status_code == 409 and refused.json()["field"] == "applies_to"
    accepted = client.post(
        "/v1/policies",
        json={**body, "allow_opt_in": True},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert accepted.status_code == 201 and accepted.json()["impact"]["changed_accounts"] == 2


def test_accounts_whose_consent_changes_are_notified(
    client: TestClient, database: Database, ctx: ConsentContext
) -> None:
    ids = populate(database, ctx)
    with database.write() as session:
        row, _ = service.add_policy(
            session,
            effective_at=utcnow() + timedelta(days=45),
            applies_to="all",
            defaults=OPEN_EEA,
            title="Open EEA",
            summary="",
            created_by="test",
            ctx=ctx,
            allow_opt_in=True,
        )
    with database.read() as session:
        notified = {n.account_id for n in session.execute(sa.text("SELECT account_id FROM notifications"))}
    assert notified == set(ids[1:3])
    with database.write() as session:
        from consentry.auth.service import create_token

        token = create_token(session, kind="account", account_id=ids[2])
    [notice] = client.get("/v1/me/notifications", headers={"Authorization": f"Bearer {token}"}).json()
    assert notice["kind"] == "policy_change" and notice["payload"]["policy_version"] == row.version
