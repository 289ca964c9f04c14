"""Real-time eligibility: agrees with the single-account evaluation, fails closed, asked well or badly."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from consentry.consent.models import PolicyVersion
from consentry.consent.service import ConsentContext, change_settings, decide
from consentry.datasets.models import Recipient
from consentry.datasets.service import add_recipient
from consentry.db import Database, utcnow
from consentry.eligibility import cache as consent_cache
from consentry.eligibility import service
from consentry.errors import Conflict, InvalidInput, NotFound
from consentry.social import service as social
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
