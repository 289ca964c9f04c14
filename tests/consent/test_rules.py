"""Every form of the rule tables in consentry.consent.rules agrees, over the same generated histories.

Consent forms: ``effective_consent`` (Python, the reference), ``evaluate_many`` (NumPy over Arrow), the
dashboard's cohort counts (``cohorts.Evaluator``), the author facts of a release (``author_facts``) and the
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

import duckdb
import numpy as np
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
from consentry.datasets.eligibility import (
    DUCKDB,
    SPARK,
    SPECS,
    author_facts,
    combine_reasons,
    combined_reason_sql,
    covering_settings,
    eligible_sql,
    reason_of,
    reason_sql,
    record_code_sql,
)
from consentry.eligibility.state import valid_until
from consentry.web import cohorts
from consentry.web import snapshot as web

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
    state = cohorts.state_at(snapshot, at=at, policies=history.policies, jurisdictions=JURISDICTIONS)
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
    last = until - timedelta(microseconds=1)  # valid_until promises every instant *before* it
    for moment in (last, min(when + (min(until, day(30)) - when) * later, last)):
        forms[f"valid_until (reference at {moment.isoformat()})"] = {
            (f.account_id, key): history.decide(f, key, moment).allowed for f in history.facts for key in KEYS
        }
    problems = disagreeing(reference, forms)

    counts = reference_counts(history, when)
    if cohort_counts(history, when) != counts:
        problems.append("dashboard cohorts (cohorts.Evaluator)")
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


records_strategy = st.lists(
    st.tuples(
        st.integers(1, 9),  # author (8 and 9 are often missing from the accounts)
        st.sampled_from(["public", "public", "followers", None]),
        st.one_of(st.none(), moments),  # deleted
        moments,  # created
    ),
    max_size=16,
)


def sql_reasons(
    spec: Any, records: pa.Table, authors: pa.Table, at: datetime, cutoff: datetime | None, dialect: Any
) -> dict[str, list[int]]:
    """The SQL forms' reason per record, in record order: one statement, the two-step combination, and
    the eligibility filter (reason 0 exactly for the records it keeps)."""
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.register("records", records)
    connection.register("authors", authors)
    arguments: dict[str, Any] = {
        "record": "r",
        "author": "a",
        "as_of": at,
        "cutoff": cutoff,
        "dialect": dialect,
    }
    reason = reason_sql(spec, **arguments)
    code = record_code_sql(spec, record="r", as_of=at, cutoff=cutoff, dialect=dialect)
    combined = combined_reason_sql(spec, facts="x", author="a")
    eligible = eligible_sql(spec, **arguments)
    one = connection.execute(
        f"SELECT {reason} FROM records r LEFT JOIN authors a ON r.author_id = a.account_id ORDER BY r.n"
    ).fetchall()
    two = connection.execute(
        f"SELECT {combined} FROM (SELECT r.n, r.author_id, {code} AS code FROM records r) x "
        "LEFT JOIN authors a ON x.author_id = a.account_id ORDER BY x.n"
    ).fetchall()
    kept = {
        n
        for (n,) in connection.execute(
            f"SELECT r.n FROM records r JOIN authors a ON r.author_id = a.account_id WHERE {eligible}"
        ).fetchall()
    }
    codes = [c for (c,) in connection.execute(f"SELECT {code} FROM records r ORDER BY r.n").fetchall()]
    return {
        "reason_sql": [r for (r,) in one],
        "record_code_sql + combined_reason_sql": [r for (r,) in two],
        "eligible_sql (0: kept)": [0 if n in kept else -1 for n in range(records.num_rows)],
        "_codes": codes,
    }


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    accounts=accounts_strategy,
    events=events_strategy,
    policies=policies_strategy,
    records=records_strategy,
    protected=st.lists(st.sampled_from([False, False, True]), min_size=7, max_size=7),
    at=moments,
    retention=st.sampled_from([None, 3]),
    category=st.sampled_from(sorted(SPECS)),
    release=st.sampled_from([("first_party", "train-ai"), ("third_party", "train-ai")]),
)
def test_every_form_of_the_exclusion_rule_agrees(
    accounts: list[Any],
    events: list[Any],
    policies: list[Any],
    records: list[Any],
    protected: list[bool],
    at: tuple[int, int],
    retention: int | None,
    category: str,
    release: tuple[str, str],
) -> None:
    history = History(accounts, events, policies)
    when = day(*at)
    cutoff = None if retention is None else when - retention * DAY
    spec = SPECS[category]
    lake = history.account_table.append_column("protected", pa.array(protected[: len(history.facts)]))
    authors = author_facts(
        lake,
        history.event_table,
        kind=release[0],
        purpose=release[1],
        categories=[category],
        as_of=when,
        policies=history.policies,
        catalog=CATALOG,
        jurisdictions=JURISDICTIONS,
    ).table
    table = pa.table(
        {
            "n": pa.array(range(len(records)), pa.int64()),
            "author_id": pa.array([r[0] for r in records], pa.int64()),
            "visibility": pa.array([r[1] for r in records], pa.string()),
            "deleted_at": pa.array(
                [None if r[2] is None else day(*r[2]) for r in records], pa.timestamp("us", tz="UTC")
            ),
            "created_at": pa.array([day(*r[3]) for r in records], pa.timestamp("us", tz="UTC")),
        }
    )
    by_author = {row["account_id"]: row for row in authors.to_pylist()}
    reference = [
        reason_of(
            spec,
            record={
                "visibility": r[1],
                "deleted_at": None if r[2] is None else day(*r[2]),
                "created_at": day(*r[3]),
            },
            author=by_author.get(r[0]),
            as_of=when,
            cutoff=cutoff,
        )
        for r in records
    ]
    forms: dict[str, list[int]] = {}
    for dialect, label in ((DUCKDB, "DuckDB"), (SPARK, "Spark SQL, run in DuckDB")):
        answers = sql_reasons(spec, table, authors, when, cutoff, dialect)
        codes = answers.pop("_codes")
        for name, answer in answers.items():
            if name.startswith("eligible_sql"):
                answer = [0 if a == 0 else r for a, r in zip(answer, reference, strict=True)]
            forms[f"{name} ({label})"] = answer
        forms[f"combine_reasons (NumPy, codes of {label})"] = combine_reasons(
            spec,
            author_ids=table["author_id"].to_numpy(),
            codes=np.array(codes, dtype=np.int8),
            authors=authors,
        ).tolist()
    problems = disagreeing(reference, forms)
    assert not problems, f"forms disagreeing with reason_of ({category}, cutoff {cutoff}): {problems}"
