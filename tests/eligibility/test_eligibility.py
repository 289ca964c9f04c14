"""Real-time eligibility: agrees with the single-account evaluation, fails closed, sees every change."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from consentry.consent import ledger
from consentry.consent.models import PolicyVersion
from consentry.consent.service import ConsentContext, change_settings, decide, evaluate_accounts
from consentry.datasets.models import Recipient
from consentry.datasets.service import add_recipient
from consentry.db import Database, utcnow
from consentry.eligibility import cache as consent_cache
from consentry.eligibility import service
from consentry.errors import Conflict, InvalidInput, NotFound
from consentry.social import service as social
from consentry.social.changes import record_account_changes
from consentry.social.models import Account
from tests.conftest import make_account, reset

KEYS = (
    "assistant_training_posts",
    "assistant_training_interactions",
    "assistant_realtime",
    "third_party_sharing",
)
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


def check_all(database: Database, ctx: ConsentContext, ids: list[int]) -> None:
    """Every setting, and every purpose/recipient combination, against ``decide``."""
    asked = [*ids, max(ids, default=0) + 1000, -5]
    for key in KEYS:
        outcome = service.check_ids(
            database,
            ids=np.array(asked),
            settings=(key,),
            catalog=ctx.catalog,
            jurisdictions=ctx.jurisdictions,
        )
        assert outcome.error is None
        got = {a for a, ok in zip(asked, outcome.mask.tolist(), strict=True) if ok}
        assert got == reference(database, ctx, ids, (key,), outcome.as_of), key
    for kind in ("first_party", "third_party"):
        for purpose in ("train-ai", "ai-input"):
            with database.read() as session:
                keys = service.resolve_settings(
                    session, catalog=ctx.catalog, purpose=purpose, recipient=kind, category="posts"
                )
            got_ids = service.allowed_ids(database, ids=asked, purpose=purpose, recipient=kind, ctx=ctx)
            expected = reference(database, ctx, ids, keys, utcnow()) if keys else set()
            assert set(got_ids.tolist()) == expected, (kind, purpose)


account_specs = st.lists(
    st.tuples(
        st.sampled_from(COUNTRIES),
        st.sampled_from([None, 1950, 1990, utcnow().year - 18, utcnow().year - 19, utcnow().year - 5]),
        st.sampled_from(["active", "active", "active", "deactivated", "deleted"]),
        st.booleans(),  # created after policy 2 took effect
        st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(["allow", "deny"])), max_size=4),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=account_specs)
def test_agrees_with_single_account_evaluation(
    database: Database, ctx: ConsentContext, specs: list[tuple[Any, ...]]
) -> None:
    reset(database)
    now = utcnow()
    second = now - timedelta(days=30)
    with database.write() as session:
        session.add(
            PolicyVersion(
                version=2,
                effective_at=second,
                applies_to="new_accounts",
                defaults={"default": {"*": "deny"}, "CH": {"assistant_realtime": "allow", "*": "deny"}},
                title="new accounts opt in",
                summary="",
                created_at=now,
                created_by="test",
            )
        )
    ids = []
    for index, (country, birth_year, status, new, choices) in enumerate(specs):
        created = second + timedelta(days=1) if new else second - timedelta(days=400)
        with database.write() as session:
            account = social.create_account(
                session, handle=f"u{index}", country=country, birth_year=birth_year, created_at=created
            )
            ids.append(account.id)
            for key, value in choices:
                change_settings(session, account_id=account.id, changes={key: value}, client="web", ctx=ctx)
            if status == "deactivated":
                social.deactivate_account(session, account_id=account.id)
            elif status == "deleted":
                social.delete_account(session, account_id=account.id)
    check_all(database, ctx, ids)


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


def test_unknown_null_and_sparse_ids_and_input_types(database: Database, ctx: ConsentContext) -> None:
    low, _ = make_account(database, handle="low", country="US")
    with database.write() as session:
        far = social.create_account(
            session, handle="far", country="US", birth_year=1990, account_id=10**12
        ).id
        minor = social.create_account(session, handle="kid", country="US", birth_year=utcnow().year - 3).id
    asked = [far, 12345, low, -1, minor, low, 10**15]
    expected = [far, low, low]
    assert (
        service.allowed_ids(database, ids=asked, setting="assistant_realtime", ctx=ctx).tolist() == expected
    )
    state = cache(database, ctx).state()
    assert not state.dense  # binary search over sparse ids
    for kind in (
        np.array(asked, dtype=np.int64),
        pa.array(asked, pa.int64()),
        pa.chunked_array([asked[:3], asked[3:]], pa.int64()),
    ):
        got = service.allowed_ids(database, ids=kind, setting="assistant_realtime", ctx=ctx)
        assert got.dtype == np.int64 and got.tolist() == expected
    with_nulls = pa.array([low, None, far], pa.int64())
    assert service.allowed_mask(database, ids=with_nulls, setting="assistant_realtime", ctx=ctx).tolist() == [
        True,
        False,
        True,
    ]
    assert service.allowed_ids(database, ids=[], setting="assistant_realtime", ctx=ctx).size == 0
    with pytest.raises(InvalidInput):
        service.allowed_ids(database, ids=np.array([1.5]), setting="assistant_realtime", ctx=ctx)
    with pytest.raises(InvalidInput, match="unknown setting"):
        service.allowed_ids(database, ids=[low], setting="nope", ctx=ctx)
    with pytest.raises(InvalidInput):
        service.allowed_ids(database, ids=[low], ctx=ctx)
    with database.read() as session:  # any session of the database names the same cache
        assert (
            service.allowed_ids(session, ids=asked, setting="assistant_realtime", ctx=ctx).tolist()
            == expected
        )


def test_any_failure_denies(
    database: Database,
    ctx: ConsentContext,
    client: TestClient,
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ada, _ = make_account(database, handle="ada", country="US")
    assert service.allowed_ids(database, ids=[ada], setting="assistant_realtime", ctx=ctx).tolist() == [ada]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(consent_cache, "probe", broken)
    assert service.allowed_ids(database, ids=[ada], setting="assistant_realtime", ctx=ctx).tolist() == []
    answer = client.post(
        "/v1/eligibility",
        json={"setting": "assistant_realtime", "account_ids": [ada]},
        headers=auth(admin_token),
    )
    assert answer.status_code == 200
    assert answer.json()["allowed"] == [] and answer.json()["error"] == "RuntimeError"


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


def test_purpose_and_recipient(database: Database, ctx: ConsentContext) -> None:
    ada, _ = make_account(database, handle="ada", country="US")
    with database.write() as session:
        add_recipient(
            session, name="assistant", kind="first_party", purposes=["ai-input"], categories=["posts"]
        )
        add_recipient(session, name="lab", kind="third_party", purposes=["train-ai"], categories=["posts"])
        change_settings(
            session, account_id=ada, changes={"third_party_sharing": "deny"}, client="web", ctx=ctx
        )
    with database.read() as session:
        resolve = lambda **kw: service.resolve_settings(session, catalog=ctx.catalog, **kw)  # noqa: E731
        assert resolve(purpose="ai-input", recipient="assistant") == ("assistant_realtime",)
        assert resolve(purpose="train-ai", recipient="first_party", category="assistant_interactions") == (
            "assistant_training_interactions",
        )
        assert resolve(purpose="search", recipient="first_party") == ()  # nothing covers it: nothing allowed
        with pytest.raises(InvalidInput, match="may not receive data"):
            resolve(purpose="ai-input", recipient="lab")
        with pytest.raises(InvalidInput, match="may not receive"):
            resolve(purpose="ai-input", recipient="assistant", category="assistant_interactions")
        with pytest.raises(NotFound):
            resolve(purpose="ai-input", recipient="nobody")
        with pytest.raises(InvalidInput):
            resolve(purpose="sell", recipient="first_party")
        with pytest.raises(InvalidInput):
            resolve(setting="assistant_realtime", purpose="ai-input", recipient="first_party")
    assert service.allowed_ids(
        database, ids=[ada], purpose="ai-input", recipient="assistant", ctx=ctx
    ).tolist() == [ada]
    assert (
        service.allowed_ids(database, ids=[ada], purpose="train-ai", recipient="lab", ctx=ctx).tolist() == []
    )
    assert (
        service.allowed_ids(database, ids=[ada], purpose="search", recipient="first_party", ctx=ctx).size == 0
    )
    with database.write() as session:
        session.execute(update(Recipient).where(Recipient.name == "lab").values(status="suspended"))
    with pytest.raises(Conflict):
        service.allowed_ids(database, ids=[ada], purpose="train-ai", recipient="lab", ctx=ctx)


def test_http_limits_and_errors(
    database: Database, ctx: ConsentContext, client: TestClient, admin_token: str
) -> None:
    admin = auth(admin_token)
    ada, ada_token = make_account(database, handle="ada", country="US")
    big = [2**62 + i for i in range(9_999)] + [ada]  # the largest body: 10,000 ids of 19 digits
    answer = client.post(
        "/v1/eligibility", json={"setting": "assistant_realtime", "account_ids": big}, headers=admin
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["allowed"] == [ada] and answer.json()["asked"] == 10_000

    too_many = client.post(
        "/v1/eligibility",
        json={"setting": "assistant_realtime", "account_ids": list(range(10_001))},
        headers=admin,
    )
    assert too_many.status_code == 422 and too_many.json()["field"] == "account_ids"

    by_purpose = client.post(
        "/v1/eligibility",
        json={
            "purpose": "train-ai",
            "recipient": "third_party",
            "category": "posts",
            "account_ids": [ada, ada],
        },
        headers=admin,
    )
    assert by_purpose.json()["allowed"] == [ada] and by_purpose.json()["settings"] == ["third_party_sharing"]

    bad = {
        "unknown setting": ({"setting": "nope", "account_ids": [1]}, 422, "setting"),
        "neither form": ({"account_ids": [1]}, 422, None),
        "both forms": (
            {"setting": "assistant_realtime", "purpose": "ai-input", "account_ids": [1]},
            422,
            None,
        ),
        "no ids": ({"setting": "assistant_realtime"}, 422, "account_ids"),
        "not ids": ({"setting": "assistant_realtime", "account_ids": ["x"]}, 422, None),
        "beyond int64": ({"setting": "assistant_realtime", "account_ids": [2**63]}, 422, None),
        "unknown recipient": (
            {"purpose": "ai-input", "recipient": "who", "account_ids": [1]},
            404,
            "recipient",
        ),
        "unknown purpose": (
            {"purpose": "sell", "recipient": "first_party", "account_ids": [1]},
            422,
            "purpose",
        ),
    }
    for name, (body, status, field) in bad.items():
        answer = client.post("/v1/eligibility", json=body, headers=admin)
        assert answer.status_code == status, (name, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        if field:
            assert answer.json()["field"].startswith(field), name
    body = {"setting": "assistant_realtime", "account_ids": [ada]}
    assert client.post("/v1/eligibility", json=body).status_code == 401
    assert client.post("/v1/eligibility", json=body, headers=auth(ada_token)).status_code == 403
