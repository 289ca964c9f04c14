"""Effective consent: each rule, and the single and vectorised implementations agreeing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentry.consent.catalog import load_jurisdictions
from consentry.consent.evaluate import (
    ACCOUNT_SCHEMA,
    EVENT_SCHEMA,
    AccountFacts,
    ExplicitEvent,
    effective_consent,
    evaluate_many,
)
from consentry.consent.policy import Policy

J = load_jurisdictions()
KEYS = (
    "assistant_training_posts",
    "assistant_training_interactions",
    "assistant_realtime",
    "third_party_sharing",
)
START = Policy(
    1,
    datetime(2000, 1, 1, tzinfo=UTC),
    "all",
    {"default": {"*": "allow"}, "EEA": {"*": "deny"}, "UK": {"*": "deny"}, "CH": {"*": "deny"}},
)
AT = datetime(2026, 6, 1, tzinfo=UTC)


def account(**overrides: object) -> AccountFacts:
    base: dict[str, object] = {
        "account_id": 1,
        "created_at": datetime(2020, 1, 1, tzinfo=UTC),
        "country": "US",
        "birth_year": 1990,
        "status": "active",
        "status_changed_at": None,
    }
    base.update(overrides)
    return AccountFacts(**base)  # type: ignore[arg-type]


def decide(
    facts: AccountFacts,
    events: list[ExplicitEvent] | None = None,
    policies: list[Policy] | None = None,
    at: datetime = AT,
    setting: str = "assistant_training_posts",
) -> tuple[str, str]:
    d = effective_consent(
        account=facts,
        setting=setting,
        at=at,
        events=events or [],
        policies=[START] if policies is None else policies,
        jurisdictions=J,
    )
    return d.value, d.basis


def test_defaults_follow_the_jurisdiction_group() -> None:
    assert decide(account(country="US")) == ("allow", "default")
    assert decide(account(country="de")) == ("deny", "default")
    assert decide(account(country="GB")) == ("deny", "default")
    assert decide(account(country="CH")) == ("deny", "default")
    assert decide(account(country=None)) == ("allow", "default")


def test_minors_and_unknown_birth_years_are_denied_even_with_an_explicit_allow() -> None:
    allow = [ExplicitEvent("assistant_training_posts", "allow", AT - timedelta(days=1), 1)]
    assert decide(account(birth_year=AT.year - 18), allow) == ("deny", "minor")
    assert decide(account(birth_year=AT.year - 19), allow) == ("allow", "explicit")
    assert decide(account(birth_year=None), allow) == ("deny", "minor")


def test_inactive_from_the_moment_of_the_status_change() -> None:
    changed = AT - timedelta(hours=1)
    assert decide(account(status="deactivated", status_changed_at=changed)) == ("deny", "inactive")
    assert decide(
        account(status="deleted", status_changed_at=changed), at=changed - timedelta(seconds=1)
    ) == ("allow", "default")
    assert decide(account(status="deleted", status_changed_at=None)) == ("deny", "inactive")


def test_latest_explicit_event_at_or_before_t_wins() -> None:
    events = [
        ExplicitEvent("assistant_training_posts", "deny", AT - timedelta(days=2), 1),
        ExplicitEvent("assistant_training_posts", "allow", AT - timedelta(days=1), 2),
        ExplicitEvent("assistant_training_posts", "deny", AT + timedelta(days=1), 3),
        ExplicitEvent("third_party_sharing", "deny", AT - timedelta(days=3), 4),
    ]
    assert decide(account(), events) == ("allow", "explicit")
    assert decide(account(), events, at=AT - timedelta(days=1, seconds=1)) == ("deny", "explicit")
    # same instant: the later seq wins
    tie = [
        ExplicitEvent("assistant_training_posts", "allow", AT, 7),
        ExplicitEvent("assistant_training_posts", "deny", AT, 8),
    ]
    assert decide(account(), tie) == ("deny", "explicit")


def test_new_default_never_flips_existing_accounts() -> None:
    flip = Policy(
        2,
        datetime(2024, 6, 26, tzinfo=UTC),
        "new_accounts",
        {"default": {"*": "allow"}, "EEA": {"*": "allow"}},
    )
    old = account(country="FR", created_at=datetime(2023, 1, 1, tzinfo=UTC))
    new = account(country="FR", created_at=datetime(2025, 1, 1, tzinfo=UTC))
    assert decide(old, policies=[START, flip]) == ("deny", "default")
    assert decide(new, policies=[START, flip]) == ("allow", "default")
    assert decide(new, policies=[START, flip], at=datetime(2024, 6, 1, tzinfo=UTC)) == ("deny", "default")


def test_no_policy_denies() -> None:
    assert decide(account(), policies=[]) == ("deny", "no_policy")
    future = Policy(2, AT + timedelta(days=1), "all", {"default": {"*": "allow"}})
    assert decide(account(), policies=[future]) == ("deny", "no_policy")


def test_an_error_while_evaluating_denies() -> None:
    broken = Policy(3, datetime(2000, 1, 1, tzinfo=UTC), "all", None)  # type: ignore[arg-type]
    assert decide(account(), policies=[broken]) == ("deny", "error")


# --- agreement --------------------------------------------------------------------------------------

BASE = datetime(2019, 1, 1, tzinfo=UTC)
SPAN = 8 * 365 * 24 * 3600
times = st.integers(0, SPAN).map(lambda s: BASE + timedelta(seconds=s))
countries = st.sampled_from(["US", "DE", "FR", "GB", "CH", "JP", "NO", None, "xx", "gb"])


@st.composite
def accounts_strategy(draw: st.DrawFn, account_id: int) -> AccountFacts:
    status = draw(st.sampled_from(["active", "active", "deactivated", "deleted"]))
    return AccountFacts(
        account_id=account_id,
        created_at=draw(times),
        country=draw(countries),
        birth_year=draw(st.one_of(st.none(), st.integers(1950, 2015))),
        status=status,
        status_changed_at=None if status == "active" else draw(st.one_of(st.none(), times)),
    )


@st.composite
def policy_strategy(draw: st.DrawFn, version: int) -> Policy:
    groups = draw(st.lists(st.sampled_from(["EEA", "UK", "CH"]), unique=True))
    values = st.sampled_from(["allow", "deny"])

    def group_defaults() -> dict[str, str]:
        chosen = draw(st.lists(st.sampled_from(KEYS), unique=True))
        mapping = {k: draw(values) for k in chosen}
        if draw(st.booleans()):
            mapping["*"] = draw(values)
        return mapping

    defaults = {"default": group_defaults(), **{g: group_defaults() for g in groups}}
    return Policy(version, draw(times), draw(st.sampled_from(["all", "new_accounts"])), defaults)


@st.composite
def world(
    draw: st.DrawFn,
) -> tuple[list[AccountFacts], list[tuple[int, ExplicitEvent]], list[Policy], datetime]:
    n = draw(st.integers(1, 12))
    id_range = draw(st.sampled_from([30, 10**12]))  # dense ids take the lookup path, sparse ones the search
    ids = draw(st.lists(st.integers(1, id_range), min_size=n, max_size=n, unique=True))
    facts = [draw(accounts_strategy(i)) for i in ids]
    events = []
    for seq in range(1, draw(st.integers(0, 40)) + 1):
        owner = draw(st.sampled_from([*ids, 999_999_999_999_999, 31]))  # some events of unknown accounts
        at = draw(st.one_of(times, st.sampled_from([BASE, BASE + timedelta(seconds=SPAN // 2)])))
        events.append(
            (
                owner,
                ExplicitEvent(draw(st.sampled_from(KEYS)), draw(st.sampled_from(["allow", "deny"])), at, seq),
            )
        )
    policies = [draw(policy_strategy(v)) for v in range(1, draw(st.integers(0, 4)) + 1)]
    return facts, events, policies, draw(times)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world())
def test_vectorised_agrees_with_single_checks(
    case: tuple[list[AccountFacts], list[tuple[int, ExplicitEvent]], list[Policy], datetime],
) -> None:
    facts, events, policies, at = case
    accounts = pa.Table.from_pylist(
        [
            {
                "account_id": a.account_id,
                "created_at": a.created_at,
                "country": a.country,
                "birth_year": a.birth_year,
                "status": a.status,
                "status_changed_at": a.status_changed_at,
            }
            for a in facts
        ],
        schema=ACCOUNT_SCHEMA,
    )
    event_table = pa.Table.from_pylist(
        [
            {
                "account_id": owner,
                "setting": e.setting,
                "value": e.value,
                "recorded_at": e.recorded_at,
                "seq": e.seq,
            }
            for owner, e in events
        ],
        schema=EVENT_SCHEMA,
    )
    result = evaluate_many(accounts, event_table, settings=KEYS, at=at, policies=policies, jurisdictions=J)
    rows = {row["account_id"]: row for row in result.to_pylist()}
    for a in facts:
        own = [e for owner, e in events if owner == a.account_id]
        for key in KEYS:
            single = effective_consent(
                account=a, setting=key, at=at, events=own, policies=policies, jurisdictions=J
            )
            assert rows[a.account_id][key] == single.allowed, (a, key)


def test_no_accounts_gives_an_empty_table() -> None:
    empty = evaluate_many(
        ACCOUNT_SCHEMA.empty_table(),
        EVENT_SCHEMA.empty_table(),
        settings=KEYS,
        at=AT,
        policies=[START],
        jurisdictions=J,
    )
    assert empty.num_rows == 0 and empty.column_names == ["account_id", "reason", *KEYS]
