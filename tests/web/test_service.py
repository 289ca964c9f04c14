"""The dashboard's counts agree with the single-check evaluation, and the cache follows the database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentry.config import Settings
from consentry.consent.catalog import load_catalog, load_jurisdictions
from consentry.consent.evaluate import (
    ACCOUNT_SCHEMA,
    EVENT_SCHEMA,
    AccountFacts,
    ExplicitEvent,
    effective_consent,
)
from consentry.consent.policy import Policy
from consentry.consent.service import ConsentContext, change_settings
from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.social.service import create_account, deactivate_account
from consentry.web import service as web
from tests.conftest import make_account

KEYS = list(load_catalog().keys)
JURISDICTIONS = load_jurisdictions()
START = datetime(2020, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
COUNTRIES = ["US", "DE", "GB", "CH", "JP", None]


def day(n: int) -> datetime:
    return START + n * DAY


accounts_strategy = st.lists(
    st.tuples(
        st.integers(0, 60),  # created day
        st.sampled_from(COUNTRIES),
        st.one_of(st.none(), st.integers(1995, 2010)),  # birth year
        st.sampled_from(["active", "active", "deactivated", "deleted"]),
        st.integers(0, 60),  # status change day
    ),
    min_size=1,
    max_size=12,
)
events_strategy = st.lists(
    st.tuples(
        st.integers(0, 11),  # account (modulo the number of accounts)
        st.sampled_from(KEYS),
        st.sampled_from(["allow", "deny"]),
        st.integers(0, 80),  # recorded day (ties are common: seq decides)
    ),
    max_size=30,
)
policies_strategy = st.lists(
    st.tuples(
        st.integers(-5, 70),  # effective day
        st.sampled_from(["all", "new_accounts"]),
        st.sampled_from(["allow", "deny"]),
        st.sampled_from(["allow", "deny"]),
    ),
    min_size=0,
    max_size=3,
)


def build(
    accounts: list[Any], events: list[Any], policies: list[Any], split: int
) -> tuple[web.Snapshot, list[AccountFacts], dict[int, list[ExplicitEvent]], list[Policy]]:
    facts = [
        AccountFacts(
            i + 1,
            day(created),
            country,
            birth,
            status,
            day(created + changed) if status != "active" else None,
        )
        for i, (created, country, birth, status, changed) in enumerate(accounts)
    ]
    grouped: dict[int, list[ExplicitEvent]] = {f.account_id: [] for f in facts}
    rows = []
    for seq, (owner, key, value, when) in enumerate(events, start=1):
        account_id = owner % len(facts) + 1
        grouped[account_id].append(ExplicitEvent(key, value, day(when), seq))
        rows.append((account_id, key, value, day(when), seq))
    policy_list = [
        Policy(v + 1, day(at), applies, {"default": {"*": base}, "EEA": {"*": eea}})
        for v, (at, applies, base, eea) in enumerate(policies)
    ]
    table = pa.table(
        {
            "account_id": [f.account_id for f in facts],
            "created_at": [f.created_at for f in facts],
            "country": [f.country for f in facts],
            "birth_year": [f.birth_year for f in facts],
            "status": [f.status for f in facts],
            "status_changed_at": [f.status_changed_at for f in facts],
        },
        schema=ACCOUNT_SCHEMA,
    )
    held = web.Accounts.from_table(table, JURISDICTIONS)

    def events_table(part: list[Any]) -> pa.Table:
        columns = list(zip(*part, strict=True)) if part else [[], [], [], [], []]
        return pa.table(dict(zip(EVENT_SCHEMA.names, columns, strict=True)), schema=EVENT_SCHEMA)

    base = web.Events.build(events_table(rows[:split]), KEYS, held)
    delta = web.Events.build(events_table(rows[split:]), KEYS, held)
    snapshot = web.Snapshot(tuple(KEYS), held, base, delta, len(rows), START)
    return snapshot, facts, grouped, policy_list


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    accounts=accounts_strategy,
    events=events_strategy,
    policies=policies_strategy,
    at=st.integers(-2, 90),
    split=st.integers(0, 30),
)
def test_counts_agree_with_single_checks(
    accounts: list[Any], events: list[Any], policies: list[Any], at: int, split: int
) -> None:
    snapshot, facts, grouped, policy_list = build(accounts, events, policies, split)
    when = day(at) + timedelta(hours=12)
    state = web.state_at(snapshot, at=when, policies=policy_list, jurisdictions=JURISDICTIONS)
    groups, n = len(JURISDICTIONS.names), len(KEYS)
    population = np.zeros(groups, dtype=np.int64)
    minors = np.zeros(groups, dtype=np.int64)
    allow = np.zeros((groups, n), dtype=np.int64)
    explicit_deny = np.zeros((groups, n), dtype=np.int64)
    for f in facts:
        inactive = f.status != "active" and f.status_changed_at is not None and f.status_changed_at <= when
        if f.created_at > when or inactive:
            continue
        g = JURISDICTIONS.names.index(JURISDICTIONS.group_of(f.country))
        population[g] += 1
        for s, key in enumerate(KEYS):
            decision = effective_consent(
                account=f,
                setting=key,
                at=when,
                events=grouped[f.account_id],
                policies=policy_list,
                jurisdictions=JURISDICTIONS,
            )
            if s == 0 and decision.basis == "minor":
                minors[g] += 1
            allow[g, s] += decision.allowed
            explicit_deny[g, s] += decision.basis == "explicit" and not decision.allowed
    assert state.population.tolist() == population.tolist()
    assert state.minors.tolist() == minors.tolist()
    assert state.allow.tolist() == allow.tolist()
    assert state.explicit_deny.tolist() == explicit_deny.tolist()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    accounts=accounts_strategy, events=events_strategy, policies=policies_strategy, split=st.integers(0, 30)
)
def test_policy_effects_agree_with_single_checks(
    accounts: list[Any], events: list[Any], policies: list[Any], split: int
) -> None:
    snapshot, facts, grouped, policy_list = build(accounts, events, policies, split)
    effects = web.policy_effects(snapshot, policies=policy_list, jurisdictions=JURISDICTIONS, now=day(100))
    for policy in policy_list:
        others = [p for p in policy_list if p.version != policy.version]
        at = policy.effective_at
        changed = 0
        for f in facts:
            inactive = f.status != "active" and f.status_changed_at is not None and f.status_changed_at <= at
            if f.created_at > at or inactive:
                continue
            common = {"account": f, "at": at, "events": grouped[f.account_id], "jurisdictions": JURISDICTIONS}
            changed += any(
                effective_consent(setting=k, policies=policy_list, **common).value  # type: ignore[arg-type]
                != effective_consent(setting=k, policies=others, **common).value  # type: ignore[arg-type]
                for k in KEYS
            )
        assert effects[policy.version].changed_accounts == changed


def test_timeline_ends_now_and_refuses_unknown_ranges() -> None:
    now = datetime(2026, 11, 22, 5, 30, tzinfo=UTC)
    months = web.timeline(now, "12m")
    assert months[-1] == now and months[0] == datetime(2025, 12, 1, tzinfo=UTC) and len(months) == 13
    assert all(a < b for a, b in itertools.pairwise(months))
    assert len(web.timeline(now, "90d")) == 14
    quarters = web.timeline(now, "5y")
    assert quarters[0] == datetime(2022, 1, 1, tzinfo=UTC) and len(quarters) == 21
    with pytest.raises(InvalidInput) as error:
        web.timeline(now, "forever")
    assert error.value.field == "range"


def test_cache_follows_new_events_accounts_and_status_changes(
    database: Database, settings: Settings, ctx: ConsentContext
) -> None:
    ada, _ = make_account(database, handle="ada", country="US")
    make_account(database, handle="bruno", country="DE")
    cache = web.ConsentStateCache(settings=KEYS, jurisdictions=ctx.jurisdictions, accounts_ttl=3600)

    def explicit_denies() -> int:
        with database.read() as session:
            overview = web.consent_overview(session, cache=cache, ctx=ctx)
        return sum(s.total.explicit_deny for s in overview.shares)

    def population() -> int:
        with database.read() as session:
            return web.consent_overview(session, cache=cache, ctx=ctx).population

    assert explicit_denies() == 0 and population() == 2
    with database.write() as session:
        change_settings(
            session, account_id=ada, changes={"assistant_realtime": "deny"}, client="web", ctx=ctx
        )
        chloe = create_account(session, handle="chloe", country="US", birth_year=1980)
        session.flush()
        change_settings(
            session,
            account_id=chloe.id,
            changes={"assistant_realtime": "deny", "third_party_sharing": "deny"},
            client="ios",
            ctx=ctx,
        )
    assert explicit_denies() == 3 and population() == 3
    with database.write() as session:
        change_settings(
            session, account_id=ada, changes={"assistant_realtime": "allow"}, client="web", ctx=ctx
        )
        deactivate_account(session, account_id=chloe.id)
    assert explicit_denies() == 2  # the new event is seen at once ...
    assert population() == 3  # ... a status change when the accounts are read again
    cache.accounts_ttl = 0
    assert population() == 2 and explicit_denies() == 0
    with database.read() as session:
        fresh = web.ConsentStateCache(settings=KEYS, jurisdictions=ctx.jurisdictions).current(session)
        kept = cache.current(session)
    at = datetime.now(UTC)
    policies = [Policy(1, datetime(2000, 1, 1, tzinfo=UTC), "all", {"default": {"*": "allow"}})]
    a = web.state_at(fresh, at=at, policies=policies, jurisdictions=ctx.jurisdictions)
    b = web.state_at(kept, at=at, policies=policies, jurisdictions=ctx.jurisdictions)
    assert a.allow.tolist() == b.allow.tolist() and a.population.tolist() == b.population.tolist()


def test_read_accounts_keeps_every_column(database: Database) -> None:
    with database.write() as session:
        created = datetime(2021, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
        create_account(session, handle="x1", country="FR", birth_year=None, created_at=created)
        second = create_account(session, handle="x2", country=None, birth_year=1980, created_at=created)
        session.flush()
        deactivate_account(session, account_id=second.id, at=created + DAY)
    with database.read() as session:
        table = web.read_accounts(session)
        later = web.read_accounts(session, after_id=int(table["account_id"][0].as_py()))
    rows = table.to_pylist()
    assert table.schema == ACCOUNT_SCHEMA
    assert [r["country"] for r in rows] == ["FR", None]
    assert [r["birth_year"] for r in rows] == [None, 1980]
    assert rows[0]["created_at"] == created and rows[1]["status"] == "deactivated"
    assert rows[1]["status_changed_at"] == created + DAY and rows[0]["status_changed_at"] is None
    assert later.num_rows == 1
