"""The dashboard's cohort counts agree with the single-check evaluation, at every time and in every figure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consentry.consent.catalog import load_catalog, load_jurisdictions
from consentry.consent.evaluate import (
    ACCOUNT_SCHEMA,
    EVENT_SCHEMA,
    AccountFacts,
    ExplicitEvent,
    effective_consent,
    is_inactive,
    is_minor,
    latest_event,
    to_micros,
)
from consentry.consent.policy import Policy, applicable, ordered
from consentry.web import cohorts
from consentry.web import snapshot as state

KEYS = list(load_catalog().keys)
JURISDICTIONS = load_jurisdictions()
START = datetime(2020, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
COUNTRIES = ["US", "DE", "GB", "CH", "JP", None]
NOT_HELD = 10_000


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


def event_lists(accounts: int, last_day: int) -> st.SearchStrategy[list[tuple[int, str, str, int]]]:
    """Explicit events: (account modulo the number of accounts, setting, value, recorded day); ties of
    days are common, so ``seq`` decides."""
    return st.lists(
        st.tuples(
            st.integers(0, accounts - 1),
            st.sampled_from(KEYS),
            st.sampled_from(["allow", "deny"]),
            st.integers(0, last_day),
        ),
        max_size=30,
    )


def policy_lists(first_day: int, last_day: int) -> st.SearchStrategy[list[tuple[int, str, str, str]]]:
    """Policy versions: (effective day, applies to, two defaults)."""
    return st.lists(
        st.tuples(
            st.integers(first_day, last_day),
            st.sampled_from(["all", "new_accounts"]),
            st.sampled_from(["allow", "deny"]),
            st.sampled_from(["allow", "deny"]),
        ),
        max_size=3,
    )


events_strategy = event_lists(12, 80)
policies_strategy = policy_lists(-5, 70)


def build(
    accounts: list[Any],
    events: list[Any],
    policies: list[Any],
    split: int,
    *,
    start: datetime = START,
    strangers: int = 0,
) -> tuple[state.Snapshot, list[AccountFacts], dict[int, list[ExplicitEvent]], list[Policy]]:
    """A snapshot of the given accounts, events (the first ``split`` in the base, the rest in the delta)
    and policies, with days counted from ``start``; every ``strangers``-th event belongs to an account
    that is not held (its mapping was deleted), which every count must leave out."""

    def on(n: int) -> datetime:
        return start + n * DAY

    facts = [
        AccountFacts(
            i + 1,
            on(created),
            country,
            birth,
            status,
            on(created + changed) if status != "active" else None,
        )
        for i, (created, country, birth, status, changed) in enumerate(accounts)
    ]
    grouped: dict[int, list[ExplicitEvent]] = {f.account_id: [] for f in facts}
    rows = []
    for seq, (owner, key, value, when) in enumerate(events, start=1):
        account_id = owner % len(facts) + 1
        if strangers and seq % strangers == 0:
            account_id = NOT_HELD
        else:
            grouped[account_id].append(ExplicitEvent(key, value, on(when), seq))
        rows.append((account_id, key, value, on(when), seq))
    policy_list = [
        Policy(v + 1, on(at), applies, {"default": {"*": base}, "EEA": {"*": eea}})
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
    held = state.Accounts.from_table(table, JURISDICTIONS)

    def events_table(part: list[Any]) -> pa.Table:
        columns = list(zip(*part, strict=True)) if part else [[], [], [], [], []]
        return pa.table(dict(zip(EVENT_SCHEMA.names, columns, strict=True)), schema=EVENT_SCHEMA)

    base = state.Events.build(events_table(rows[:split]), KEYS, held)
    delta = state.Events.build(events_table(rows[split:]), KEYS, held)
    snapshot = state.Snapshot(tuple(KEYS), held, base, delta, len(rows), START)
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
    state = cohorts.state_at(snapshot, at=when, policies=policy_list, jurisdictions=JURISDICTIONS)
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
    effects = cohorts.policy_effects(
        snapshot, policies=policy_list, jurisdictions=JURISDICTIONS, now=day(100)
    )
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


# Dense ledgers for the one-pass evaluation: a few days either side of New Year (day 5), so times often
# coincide with events, creations, status changes and policy versions, and someone born in 2002 is a
# minor on the first days (2020 - 2002 = 18) and not after New Year.
YEAR_END = datetime(2020, 12, 27, tzinfo=UTC)
dense_accounts = st.lists(
    st.tuples(
        st.integers(0, 8),  # created day
        st.sampled_from(COUNTRIES),
        st.sampled_from([None, 1980, 1990, 2001, 2002, 2003]),  # birth year
        st.sampled_from(["active", "active", "deactivated", "deleted"]),
        st.integers(0, 8),  # status change, days after creation
    ),
    min_size=1,
    max_size=8,
)
dense_events = event_lists(8, 10)
dense_policies = policy_lists(-1, 10)
times_strategy = st.lists(
    st.tuples(st.integers(-1, 12), st.sampled_from([0, 0, 12])),  # on the day (ties) or at noon
    min_size=1,
    max_size=8,
    unique=True,
)


def single_check_state(
    facts: list[AccountFacts],
    grouped: dict[int, list[ExplicitEvent]],
    policies: list[Policy],
    when: datetime,
) -> dict[str, list[Any]]:
    """The counts of ``cohorts.StateAt`` at ``when``, one account and setting at a time."""
    groups, n = len(JURISDICTIONS.names), len(KEYS)
    population = [0] * groups
    minors = [0] * groups
    allow = [[0] * n for _ in range(groups)]
    explicit_deny = [[0] * n for _ in range(groups)]
    governs = [0] * (len(policies) + 1)
    versions = [p.version for p in ordered(policies)]
    for f in facts:
        if f.created_at > when or is_inactive(f.status, f.status_changed_at, when):
            continue
        g = JURISDICTIONS.names.index(JURISDICTIONS.group_of(f.country))
        population[g] += 1
        minors[g] += is_minor(f.birth_year, when)
        policy = applicable(policies, created_at=f.created_at, at=when)
        governs[versions.index(policy.version) + 1 if policy else 0] += 1
        for s, key in enumerate(KEYS):
            decision = effective_consent(
                account=f,
                setting=key,
                at=when,
                events=grouped[f.account_id],
                policies=policies,
                jurisdictions=JURISDICTIONS,
            )
            allow[g][s] += decision.allowed
            explicit_deny[g][s] += decision.basis == "explicit" and not decision.allowed
    return {
        "population": population,
        "minors": minors,
        "allow": allow,
        "explicit_deny": explicit_deny,
        "governs": governs,
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    accounts=dense_accounts,
    events=dense_events,
    policies=dense_policies,
    times=times_strategy,
    in_delta=st.integers(0, 8),
    strangers=st.sampled_from([0, 4]),
)
def test_every_chart_time_agrees_with_single_checks(
    accounts: list[Any],
    events: list[Any],
    policies: list[Any],
    times: list[tuple[int, int]],
    in_delta: int,
    strangers: int,
) -> None:
    """All the chart's times are counted in one pass over the events; each time's counts must equal a
    plain loop over every account and setting at that time (defaults per jurisdiction and version,
    minors across New Year, deactivations and deletions, explicit choices in base and delta, ties of
    times with events, creations, status changes and policy versions, events of accounts not held)."""
    split = max(len(events) - in_delta, 0)  # the latest events are in the delta
    snapshot, facts, grouped, policy_list = build(
        accounts, events, policies, split, start=YEAR_END, strangers=strangers
    )
    moments = sorted(YEAR_END + n * DAY + timedelta(hours=h) for n, h in times)
    evaluator = cohorts.Evaluator(snapshot, policies=policy_list, jurisdictions=JURISDICTIONS, times=moments)
    for when in moments:
        state = evaluator.state(when)
        expected = single_check_state(facts, grouped, policy_list, when)
        assert {name: getattr(state, name).tolist() for name in expected} == expected, when
    with pytest.raises(ValueError, match="one of the times"):
        evaluator.state(moments[-1] + timedelta(microseconds=1))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(accounts=dense_accounts, events=dense_events, policies=dense_policies, in_delta=st.integers(0, 8))
def test_times_over_decades_agree_with_single_checks(
    accounts: list[Any], events: list[Any], policies: list[Any], in_delta: int
) -> None:
    """New Year's Day of 81 years: many times and birth-year classes make more possible cohorts than
    are counted directly, so the cohorts are found by sorting instead; the counts stay the same."""
    start = datetime(1950, 1, 1, tzinfo=UTC)
    split = max(len(events) - in_delta, 0)
    snapshot, facts, grouped, policy_list = build(accounts, events, policies, split, start=start)
    moments = [datetime(year, 1, 1, tzinfo=UTC) for year in range(1950, 2031)]
    evaluator = cohorts.Evaluator(snapshot, policies=policy_list, jurisdictions=JURISDICTIONS, times=moments)
    for when in moments:
        state = evaluator.state(when)
        expected = single_check_state(facts, grouped, policy_list, when)
        assert {name: getattr(state, name).tolist() for name in expected} == expected, when


@settings(max_examples=150, deadline=None)
@given(
    accounts=dense_accounts,
    events=dense_events,
    at=st.integers(-1, 11),
    in_delta=st.integers(0, 8),
    strangers=st.sampled_from([0, 3]),
)
def test_explicit_at_is_the_latest_event_of_each_pair(
    accounts: list[Any], events: list[Any], at: int, in_delta: int, strangers: int
) -> None:
    """The choices deciding each pair at a time (base and delta laid over each other) are the latest
    events at or before it, ties going to the higher ``seq``; accounts not held are left out."""
    split = max(len(events) - in_delta, 0)
    snapshot, facts, grouped, _ = build(accounts, events, [], split, start=YEAR_END, strangers=strangers)
    when = YEAR_END + at * DAY
    account, code, allow = snapshot.explicit_at(to_micros(when))
    found = sorted(zip(account.tolist(), code.tolist(), allow.tolist(), strict=True))
    expected = []
    for position, f in enumerate(facts):
        for s, key in enumerate(KEYS):
            event = latest_event(grouped[f.account_id], key, when)
            if event is not None:
                expected.append((position, s, event.value == "allow"))
    assert found == sorted(expected)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    accounts=dense_accounts,
    events=dense_events,
    policies=st.lists(
        st.tuples(
            st.integers(-1, 10),
            st.sampled_from(["all", "new_accounts"]),
            st.sampled_from(["allow", "deny"]),
            st.dictionaries(st.sampled_from(KEYS), st.sampled_from(["allow", "deny"]), max_size=2),
            st.dictionaries(st.sampled_from(KEYS), st.sampled_from(["allow", "deny"]), max_size=2),
        ),
        max_size=3,
    ),
    in_delta=st.integers(0, 8),
)
@example(  # the version flips only a setting the account chose before it: no change to count
    accounts=[(0, "US", 1980, "active", 0)],
    events=[(0, "assistant_realtime", "deny", 1), (0, "third_party_sharing", "allow", 2)],
    policies=[(3, "all", "deny", {"assistant_realtime": "allow"}, {}), (5, "all", "allow", {}, {})],
    in_delta=1,
)
def test_policy_effects_agree_with_single_checks_in_every_figure(
    accounts: list[Any], events: list[Any], policies: list[Any], in_delta: int
) -> None:
    """Each version's changed accounts, the directions of the changes, and whom it governs now, against
    plain loops. Versions set single settings apart, so a version may flip only the settings someone
    chose explicitly, and then that account has not changed."""
    split = max(len(events) - in_delta, 0)
    snapshot, facts, grouped, _ = build(accounts, events, [], split, start=YEAR_END)
    policy_list = [
        Policy(
            v + 1,
            YEAR_END + at * DAY,
            applies,
            {"default": {"*": base, **some}, "EEA": {"*": "deny", **eea}},
        )
        for v, (at, applies, base, some, eea) in enumerate(policies)
    ]
    now = YEAR_END + 12 * DAY
    effects = cohorts.policy_effects(snapshot, policies=policy_list, jurisdictions=JURISDICTIONS, now=now)
    assert sorted(effects) == sorted(p.version for p in policy_list)
    for policy in policy_list:
        others = [p for p in policy_list if p.version != policy.version]
        at = policy.effective_at
        changed = to_allow = to_deny = governs = 0
        for f in facts:
            if f.created_at <= now and not is_inactive(f.status, f.status_changed_at, now):
                current = applicable(policy_list, created_at=f.created_at, at=now)
                governs += current is not None and current.version == policy.version
            if f.created_at > at or is_inactive(f.status, f.status_changed_at, at):
                continue
            common: dict[str, Any] = {
                "account": f,
                "at": at,
                "events": grouped[f.account_id],
                "jurisdictions": JURISDICTIONS,
            }
            flips = [
                (after.value, before.value)
                for key in KEYS
                if (after := effective_consent(setting=key, policies=policy_list, **common)).value
                != (before := effective_consent(setting=key, policies=others, **common)).value
            ]
            changed += bool(flips)
            to_allow += any(after == "allow" for after, _ in flips)
            to_deny += any(after == "deny" for after, _ in flips)
        effect = effects[policy.version]
        assert (effect.changed_accounts, effect.to_allow, effect.to_deny) == (changed, to_allow, to_deny)
        assert effect.governs_now == governs
