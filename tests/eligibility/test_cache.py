"""The consent cache stays exact: every change is visible to the next call, a patched state equals a fresh
evaluation after any sequence of changes, and a state is not used past the time it may change by itself."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from consentry.consent import ledger
from consentry.consent.models import PolicyVersion
from consentry.consent.service import ConsentContext, change_settings, decide, evaluate_accounts
from consentry.db import Database, utcnow
from consentry.eligibility import cache as consent_cache
from consentry.eligibility import service
from consentry.social import service as social
from consentry.social.changes import record_account_changes
from consentry.social.models import Account
from tests.conftest import make_account

COUNTRIES = ("US", "DE", "GB", "CH", "BR", "FR", None)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cache(database: Database, ctx: ConsentContext) -> service.ConsentCache:
    return service.cache_for(database, catalog=ctx.catalog, jurisdictions=ctx.jurisdictions)


def reference(
    database: Database, ctx: ConsentContext, ids: list[int], keys: tuple[str, ...], at: datetime
) -> set[int]:
    """The single-check implementation: ids whose every one of ``keys`` is allow at ``at``."""
    allowed = set()
    with database.read() as session:
        for account_id in ids:
            account = session.get(Account, account_id)
            if account is None:
                continue
            if all(decide(session, account=account, setting=k, at=at, ctx=ctx).allowed for k in keys):
                allowed.add(account_id)
    return allowed


def test_every_change_is_visible_to_the_next_call(
    database: Database, ctx: ConsentContext, client: TestClient, admin_token: str
) -> None:
    admin = auth(admin_token)
    ada, ada_token = make_account(database, handle="ada", country="US")
    bob, _ = make_account(database, handle="bob", country="DE")  # EEA: opt-in
    cara, _ = make_account(database, handle="cara", country="US", birth_year=utcnow().year - 10)

    def ask(*ids: int) -> list[int]:
        answer = client.post(
            "/v1/eligibility", json={"setting": "assistant_realtime", "account_ids": list(ids)}, headers=admin
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["settings"] == ["assistant_realtime"] and body["error"] is None
        return list(body["allowed"])

    assert ask(ada, bob, cara, 999_999) == [ada]
    stats = cache(database, ctx).stats
    rebuilds = stats.rebuilds

    changed = client.put(
        "/v1/me/settings", json={"settings": {"assistant_realtime": "deny"}}, headers=auth(ada_token)
    )
    assert changed.status_code == 200
    assert ask(ada, bob, cara) == []
    with database.write() as session:
        change_settings(
            session, account_id=bob, changes={"assistant_realtime": "allow"}, client="web", ctx=ctx
        )
    assert ask(ada, bob, cara) == [bob]

    assert client.post(f"/v1/accounts/{bob}/deactivate", headers=admin).status_code == 200
    assert ask(ada, bob, cara) == []
    assert client.post(f"/v1/accounts/{bob}/reactivate", headers=admin).status_code == 200
    assert ask(bob) == [bob]

    created = client.post(
        "/v1/accounts", json={"handle": "dan", "country": "US", "birth_year": 1980}, headers=admin
    ).json()
    assert ask(ada, bob, created["id"]) == [bob, created["id"]]
    assert client.delete(f"/v1/accounts/{created['id']}", headers=admin).status_code == 200
    assert ask(created["id"], bob) == [bob]
    assert stats.rebuilds == rebuilds and stats.patches >= 6  # every change patched in, none rebuilt

    # a bulk statement over accounts, recorded as a change of any account (as the retention purge records
    # its own): it rebuilds
    with database.write() as session:
        session.execute(
            update(Account).where(Account.id == bob).values(status="deactivated", status_changed_at=utcnow())
        )
        record_account_changes(session.connection(), [None])
    assert ask(bob) == []
    assert stats.rebuilds == rebuilds + 1


@pytest.mark.parametrize("partitions", [1, 4])
def test_a_patch_equals_a_fresh_evaluation_after_any_sequence_of_changes(
    database: Database, ctx: ConsentContext, partitions: int
) -> None:
    with database.write() as session:  # a partitioned ledger patches from every partition's head
        ledger.set_partitions(session, partitions)
    rng = random.Random(11)
    ids = [make_account(database, handle=f"a{i}", country=rng.choice(COUNTRIES))[0] for i in range(12)]

    def agree() -> None:
        mask = service.allowed_mask(database, ids=np.array(ids), setting="third_party_sharing", ctx=ctx)
        with database.read() as session:
            table = evaluate_accounts(
                session, account_ids=ids, settings=["third_party_sharing"], at=utcnow(), ctx=ctx
            )
        fresh = dict(
            zip(table["account_id"].to_pylist(), table["third_party_sharing"].to_pylist(), strict=True)
        )
        assert mask.tolist() == [fresh.get(a, False) for a in ids]

    agree()
    for step in range(40):
        account_id = rng.choice(ids)
        with database.write() as session:
            status = session.get(Account, account_id).status  # type: ignore[union-attr]
            action = rng.choice(["allow", "deny", "deny", "deactivate", "reactivate", "create", "delete"])
            if action in ("allow", "deny") and status == "active":
                change_settings(
                    session,
                    account_id=account_id,
                    changes={"third_party_sharing": action},
                    client="web",
                    ctx=ctx,
                )
            elif action == "deactivate" and status == "active":
                social.deactivate_account(session, account_id=account_id)
            elif action == "reactivate" and status == "deactivated":
                social.reactivate_account(session, account_id=account_id)
            elif action == "create":
                ids.append(
                    social.create_account(session, handle=f"n{step}", country="US", birth_year=1990).id
                )
            elif action == "delete" and status != "deleted" and rng.random() < 0.3:
                social.delete_account(session, account_id=account_id)
        agree()
    assert cache(database, ctx).stats.patches > 10


def test_consent_that_changes_with_time(
    database: Database, ctx: ConsentContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = utcnow()
    eighteen = now.year - 18  # a minor this year, of age next year
    kid, _ = make_account(database, handle="kid", country="US", birth_year=eighteen)
    ada, _ = make_account(database, handle="ada", country="US")
    soon = now + timedelta(hours=1)
    with database.write() as session:
        session.add(
            PolicyVersion(
                version=2,
                effective_at=soon,
                applies_to="all",
                defaults={"default": {"assistant_realtime": "deny", "*": "allow"}},
                title="real-time becomes opt-in",
                summary="",
                created_at=now,
                created_by="test",
            )
        )
    ask = dict(ids=[kid, ada], setting="assistant_realtime", ctx=ctx)
    assert service.allowed_ids(database, **ask).tolist() == [ada]  # type: ignore[arg-type]
    state = cache(database, ctx).state()
    assert state.valid_until == soon

    later = soon + timedelta(seconds=1)
    monkeypatch.setattr(service, "utcnow", lambda: later)
    monkeypatch.setattr(consent_cache, "utcnow", lambda: later)
    assert service.allowed_ids(database, **ask).tolist() == []  # type: ignore[arg-type]
    assert reference(database, ctx, [kid, ada], ("assistant_realtime",), later) == set()
    new_year = datetime(now.year + 1, 1, 1, tzinfo=UTC)
    assert cache(database, ctx).state().valid_until == new_year
    monkeypatch.setattr(service, "utcnow", lambda: new_year)
    monkeypatch.setattr(consent_cache, "utcnow", lambda: new_year)
    allowed_training = service.allowed_ids(
        database, ids=[kid, ada], setting="assistant_training_posts", ctx=ctx
    )
    assert allowed_training.tolist() == [kid, ada]  # of age from 1 January
    assert reference(database, ctx, [kid], ("assistant_training_posts",), new_year) == {kid}
