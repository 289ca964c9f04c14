"""Every form of the rule tables in consentry.consent.rules agrees, over the same generated histories.

Consent forms: ``effective_consent`` (Python, the reference), ``evaluate_many`` (NumPy over Arrow), the
dashboard's cohort counts (``web.Evaluator``), the author facts of a release (``author_facts``) and the
eligibility cache's ``valid_until`` (the answer is the same at every instant before it). Exclusion forms:
``reason_of`` (Python), ``reason_sql``, ``record_code_sql`` + ``combined_reason_sql`` and ``eligible_sql``
in DuckDB, the same three written for Spark (their SQL run in DuckDB with the session in UTC: a Spark
session costs more than the whole test), and ``combine_reasons`` (NumPy). A failure names the forms that
disagree with the reference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentry.consent import rules
from consentry.consent.catalog import load_catalog, load_jurisdictions
from consentry.consent.evaluate import (
    ACCOUNT_SCHEMA,
    EVENT_SCHEMA,
    AccountFacts,
    ExplicitEvent,
    effective_consent,
    evaluate_many,
)
from consentry.consent.policy import Policy
from consentry.datasets.eligibility import author_facts, covering_settings
from consentry.eligibility.service import valid_until
from consentry.web import service as web

CATALOG = load_catalog()
JURISDICTIONS = load_jurisdictions()
KEYS = tuple(sorted(s.key for s in CATALOG.settings))
START = datetime(2020, 12, 26, tzinfo=UTC)
"""Histories span New Year 2021, so the minor rule's calendar year changes inside them."""
DAY = timedelta(days=1)


def day(n: int, hour: int = 0) -> datetime:
    """Day ``n`` of the generated histories (day 6 is 1 January 2021)."""
    return START + n * DAY + timedelta(hours=hour)


moments = st.tuples(st.integers(0, 10), st.sampled_from([0, 0, 12]))  # midnight (ties) or noon
accounts_strategy = st.lists(
    st.tuples(
        moments,  # created
        st.sampled_from(["US", "FR", "GB", None]),
        st.sampled_from([None, 1980, 2002, 2003]),  # 2002: a minor in 2020, not in 2021
        st.sampled_from(["active", "active", "deactivated", "deleted"]),
        st.one_of(st.none(), moments),  # status change
    ),
    min_size=1,
    max_size=7,
)
events_strategy = st.lists(
    st.tuples(st.integers(0, 8), st.sampled_from(KEYS), st.sampled_from(["allow", "deny"]), moments),
    max_size=14,
)
policies_strategy = st.lists(
    st.tuples(
        moments,
        st.sampled_from(["all", "new_accounts"]),
        st.sampled_from(["allow", "deny"]),  # default group
        st.sampled_from(["allow", "deny"]),  # EEA
        st.sampled_from([None, *KEYS]),  # one setting the other way round in the default group
    ),
    max_size=3,
)


class History:
    """One generated history, in every shape the forms read."""

    def __init__(self, accounts: list[Any], events: list[Any], policies: list[Any]) -> None:
        self.facts = [
            AccountFacts(
                account_id=n + 1,
                created_at=day(*created),
                country=country,
                birth_year=birth,
                status=status,
                status_changed_at=None if changed is None else day(*changed),
            )
            for n, (created, country, birth, status, changed) in enumerate(accounts)
        ]
        self.events: dict[int, list[ExplicitEvent]] = defaultdict(list)
        rows = []
        for seq, (account, key, value, when) in enumerate(events, 1):
            rows.append((account, key, value, day(*when), seq))
            self.events[account].append(ExplicitEvent(key, value, day(*when), seq))
        self.event_table = pa.table(
            {name: [row[i] for row in rows] for i, name in enumerate(EVENT_SCHEMA.names)}, schema=EVENT_SCHEMA
        )
        self.policies = []
        for version, (when, applies, default, eea, flipped) in enumerate(policies, 1):
            values: dict[str, str] = {"*": default}
            if flipped is not None:
                values[flipped] = "deny" if default == "allow" else "allow"
            defaults = {"default": values, "EEA": {"*": eea}}
            self.policies.append(Policy(version, day(*when), applies, defaults))
        columns: dict[str, list[Any]] = {name: [] for name in ACCOUNT_SCHEMA.names}
        for f in self.facts:
            for name in ACCOUNT_SCHEMA.names:
                columns[name].append(getattr(f, name))
        self.account_table = pa.table(columns, schema=ACCOUNT_SCHEMA)

    def decide(self, f: AccountFacts, key: str, at: datetime) -> rules.Step | Any:
        """The reference: ``effective_consent``."""
        return effective_consent(
            account=f,
            setting=key,
            at=at,
            events=self.events[f.account_id],
            policies=self.policies,
            jurisdictions=JURISDICTIONS,
        )


def disagreeing(reference: Any, forms: Mapping[str, Any]) -> list[str]:
    """The names of the forms whose answer differs from the reference."""
    return [name for name, answer in forms.items() if answer != reference]


def numpy_answers(history: History, at: datetime) -> dict[tuple[int, str], bool]:
    table = evaluate_many(
        history.account_table,
        history.event_table,
        settings=KEYS,
        at=at,
        policies=history.policies,
        jurisdictions=JURISDICTIONS,
    ).to_pydict()
    return {(account, key): table[key][i] for i, account in enumerate(table["account_id"]) for key in KEYS}


def cohort_counts(history: History, at: datetime) -> dict[str, list[Any]]:
    held = web.Accounts.from_table(history.account_table, JURISDICTIONS)
    events = web.Events.build(history.event_table, KEYS, held)
    snapshot = web.Snapshot(KEYS, held, events, web.empty_events(KEYS, held), 0, START)
    state = web.state_at(snapshot, at=at, policies=history.policies, jurisdictions=JURISDICTIONS)
    return {"population": state.population.tolist(), "allow": state.allow.tolist()}


def reference_counts(history: History, at: datetime) -> dict[str, list[Any]]:
    """The dashboard's counts, from the reference: accounts that exist and are active at ``at``."""
    groups = len(JURISDICTIONS.names)
    population = [0] * groups
    allow = [[0] * len(KEYS) for _ in range(groups)]
    for f in history.facts:
        row = {("account", "status"): f.status, ("account", "status_changed_at"): f.status_changed_at}
        if f.created_at > at or rules.holds(rules.INACTIVE, row, now=at):
            continue
        g = JURISDICTIONS.names.index(JURISDICTIONS.group_of(f.country))
        population[g] += 1
        for k, key in enumerate(KEYS):
            allow[g][k] += history.decide(f, key, at).allowed
    return {"population": population, "allow": allow}


def release_facts(history: History, at: datetime, kind: str, purpose: str) -> dict[str, list[Any]]:
    accounts = history.account_table.append_column("protected", pa.array([False] * len(history.facts)))
    authors = author_facts(
        accounts,
        history.event_table,
        kind=kind,
        purpose=purpose,
        categories=["posts", "assistant_interactions"],
        as_of=at,
        policies=history.policies,
        catalog=CATALOG,
        jurisdictions=JURISDICTIONS,
    )
    table = authors.table.to_pydict()
    return {name: table[name] for name in ("blocked", "ok_posts", "ok_assistant_interactions")}


def reference_release_facts(history: History, at: datetime, kind: str, purpose: str) -> dict[str, list[Any]]:
    """The author facts from the reference: the first account exclusion that holds; every covering
    setting allows."""
    covering = covering_settings(
        CATALOG, kind=kind, purpose=purpose, categories=["posts", "assistant_interactions"]
    )
    result: dict[str, list[Any]] = {"blocked": [], "ok_posts": [], "ok_assistant_interactions": []}
    for f in history.facts:
        row = {("account", name): getattr(f, name) for name in ACCOUNT_SCHEMA.names}
        codes = [
            code for code, e in rules.ACCOUNT_EXCLUSIONS if e.account and rules.holds(e.account, row, now=at)
        ]
        result["blocked"].append(codes[0] if codes else 0)
        for category, keys in covering.items():
            result[f"ok_{category}"].append(
                bool(keys) and all(history.decide(f, k, at).allowed for k in keys)
            )
    return result


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    accounts=accounts_strategy,
    events=events_strategy,
    policies=policies_strategy,
    at=moments,
    later=st.floats(0, 1),
    release=st.sampled_from(
        [("first_party", "train-ai"), ("third_party", "train-ai"), ("first_party", "ai-input")]
    ),
)
def test_every_form_of_the_consent_rule_agrees(
    accounts: list[Any],
    events: list[Any],
    policies: list[Any],
    at: tuple[int, int],
    later: float,
    release: tuple[str, str],
) -> None:
    history = History(accounts, events, policies)
    when = day(*at)
    reference = {
        (f.account_id, key): history.decide(f, key, when).allowed for f in history.facts for key in KEYS
    }
    forms: dict[str, Any] = {"evaluate_many (NumPy)": numpy_answers(history, when)}

    # valid_until: the reference gives the same answers at every instant before it
    until = valid_until(
        when,
        accounts=history.account_table,
        events=history.event_table,
        policies=history.policies,
        upto_seq=10**9,
    )
    assert until > when
    for moment in (until - timedelta(microseconds=1), when + (min(until, day(30)) - when) * later):
        forms[f"valid_until (reference at {moment.isoformat()})"] = {
            (f.account_id, key): history.decide(f, key, moment).allowed for f in history.facts for key in KEYS
        }
    problems = disagreeing(reference, forms)

    counts = reference_counts(history, when)
    if cohort_counts(history, when) != counts:
        problems.append("dashboard cohorts (web.Evaluator)")
    if release_facts(history, when, *release) != reference_release_facts(history, when, *release):
        problems.append("release author facts (author_facts)")
    assert not problems, f"forms disagreeing with effective_consent at {when}: {problems}"


def test_valid_until_is_the_next_change_the_table_knows_of() -> None:
    """New Year for an account the minor rule counts years of, a future status change of an inactive
    account, a policy taking effect, a future event; an account without a birth year changes nothing."""
    history = History(
        [((0, 0), "US", 1980, "active", None), ((0, 0), "US", None, "deleted", (9, 0))],
        [(1, KEYS[0], "deny", (8, 12))],
        [((0, 0), "all", "allow", "deny", None), ((7, 12), "all", "deny", "deny", None)],
    )
    at = day(1)

    def until(**changes: Any) -> datetime:
        arguments: dict[str, Any] = {
            "accounts": history.account_table,
            "events": history.event_table,
            "policies": history.policies,
            "upto_seq": 10,
        }
        arguments.update(changes)
        return valid_until(at, **arguments)

    assert until() == datetime(2021, 1, 1, tzinfo=UTC)  # day 6
    assert until(accounts=history.account_table.slice(1)) == day(7, 12)  # the policy
    assert until(accounts=history.account_table.slice(1), policies=[]) == day(8, 12)  # the event
    assert until(accounts=history.account_table.slice(1), policies=[], upto_seq=0) == day(9)  # deletion
    empty = history.event_table.slice(0, 0)
    assert until(accounts=history.account_table.slice(0, 0), policies=[], events=empty).year == 9999
