"""The rule's two SQL forms agree, author facts follow DESIGN.md, retention is validated."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.consent.catalog import load_catalog, load_jurisdictions
from consentry.consent.evaluate import EVENT_SCHEMA
from consentry.consent.policy import Policy
from consentry.datasets.eligibility import (
    DUCKDB,
    REASONS,
    SPECS,
    Retention,
    author_facts,
    combine_reasons,
    combined_reason_sql,
    covering_settings,
    eligible_sql,
    reason_sql,
    record_code_sql,
    with_database_status,
    with_pseudonyms,
)
from consentry.datasets.snapshot import CLOSED_ACCOUNTS
from consentry.datasets.transforms import pseudonym
from consentry.errors import IntegrityFailure, InvalidInput

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
CUTOFF = datetime(2025, 6, 1, tzinfo=UTC)
POLICY = Policy(
    version=1,
    effective_at=datetime(2000, 1, 1, tzinfo=UTC),
    applies_to="all",
    defaults={"default": {"*": "allow"}, "EEA": {"*": "deny"}},
)


def test_the_three_forms_of_the_rule_agree_on_every_combination() -> None:
    blocked, protected, ok = [0, 1, 2], [False, True], [False, True]
    visibility = ["public", "followers", None]
    deleted = [None, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)]
    created = [datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)]
    rows = list(itertools.product(blocked, protected, ok, visibility, deleted, created))
    authors = pa.table(
        {
            "account_id": list(range(len(rows))),
            "blocked": pa.array([r[0] for r in rows], pa.int8()),
            "protected": [r[1] for r in rows],
            "ok_posts": [r[2] for r in rows],
        }
    )
    posts = pa.table(
        {
            "author_id": list(range(len(rows))),
            "visibility": [r[3] for r in rows],
            "deleted_at": pa.array([r[4] for r in rows], pa.timestamp("us", tz="UTC")),
            "created_at": pa.array([r[5] for r in rows], pa.timestamp("us", tz="UTC")),
        }
    )
    connection = duckdb.connect()
    connection.register("a_table", authors)
    connection.register("r_table", posts)
    for cutoff in (None, CUTOFF):
        arguments = {"record": "r", "author": "a", "as_of": AS_OF, "cutoff": cutoff, "dialect": DUCKDB}
        reason = reason_sql(SPECS["posts"], **arguments)  # type: ignore[arg-type]
        eligible = eligible_sql(SPECS["posts"], **arguments)  # type: ignore[arg-type]
        code = record_code_sql(SPECS["posts"], record="r", as_of=AS_OF, cutoff=cutoff, dialect=DUCKDB)
        combined = combined_reason_sql(SPECS["posts"], facts="x", author="a")
        result = connection.execute(
            f"SELECT {reason}, coalesce({eligible}, FALSE), {combined} FROM r_table r "
            f"JOIN a_table a ON r.author_id = a.account_id, LATERAL (SELECT {code} AS code) x "
            "ORDER BY r.author_id"
        ).fetchall()
        assert len(result) == len(rows)
        assert all((code == 0) == bool(ok_) for code, ok_, _ in result)
        assert all(code == two_step for code, _, two_step in result)
        codes = connection.execute(f"SELECT {code} FROM r_table r ORDER BY r.author_id").fetchall()
        in_memory = combine_reasons(
            SPECS["posts"],
            author_ids=np.arange(len(rows)),
            codes=np.array([c for (c,) in codes]),
            authors=authors,
        )
        assert in_memory.tolist() == [c for c, _, _ in result]
        codes = {code for code, _, _ in result}
        assert codes == set(range(len(REASONS) + (1 if cutoff else 0)))  # every reason occurs
    # the first case that applies wins: inactive over minor, minor over deleted, deleted over not public
    by_row = dict(zip(rows, (code for code, _, _ in result), strict=True))
    assert by_row[(1, True, False, "followers", deleted[1], created[0])] == 1
    assert by_row[(2, True, False, "followers", deleted[1], created[0])] == 2
    assert by_row[(0, True, False, "followers", deleted[1], created[0])] == 3
    assert by_row[(0, False, False, "followers", None, created[0])] == 4
    assert by_row[(0, False, False, None, None, created[1])] == 4  # unknown visibility: not public
    assert by_row[(0, False, False, "public", deleted[2], created[0])] == 5  # deleted only later
    assert by_row[(0, False, True, "public", None, created[0])] == 6


author_rows = st.lists(
    st.tuples(
        st.integers(0, 2),  # blocked: none, inactive, minor
        st.sampled_from([True, False, None]),  # protected
        st.sampled_from([True, False, None]),  # ok (null: no answer, fails closed)
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(
    category=st.sampled_from(sorted(SPECS)),
    rows=author_rows,
    sparse=st.booleans(),
    records=st.lists(st.tuples(st.integers(0, 14), st.sampled_from([0, 3, 4, 6])), max_size=40),
)
def test_the_in_memory_combination_equals_the_sql_form(
    category: str,
    rows: list[tuple[int, bool | None, bool | None]],
    sparse: bool,
    records: list[tuple[int, int]],
) -> None:
    spec = SPECS[category]
    step = 10**9 if sparse else 1  # far-apart ids take the sorted look-up instead of the dense one
    authors = pa.table(
        {
            "account_id": pa.array([(n + 1) * step for n in range(len(rows))], pa.int64()),
            "blocked": pa.array([r[0] for r in rows], pa.int8()),
            "protected": pa.array([r[1] for r in rows], pa.bool_()),
            f"ok_{spec.name}": pa.array([r[2] for r in rows], pa.bool_()),
        }
    )
    facts = pa.table(
        {
            "author_id": pa.array([(a + 1) * step for a, _ in records], pa.int64()),  # some are unknown
            "code": pa.array([c for _, c in records], pa.int8()),
            "n": pa.array(range(len(records)), pa.int64()),
        }
    )
    connection = duckdb.connect()
    connection.register("authors", authors)
    connection.register("facts", facts)
    combined = combined_reason_sql(spec, facts="x", author="a")
    in_sql = connection.execute(
        f"SELECT {combined} FROM facts x LEFT JOIN authors a ON x.author_id = a.account_id ORDER BY x.n"
    ).fetchall()
    in_memory = combine_reasons(
        spec,
        author_ids=facts["author_id"].to_numpy(),
        codes=facts["code"].to_numpy(),
        authors=authors,
    ).tolist()
    assert in_memory == [reason for (reason,) in in_sql]
    for (author, _), reason in zip(records, in_memory, strict=True):
        if reason == 0:  # eligible only with every fact known and allowing
            blocked, protected, ok = rows[author]
            assert blocked == 0 and ok is True and (protected is False or not spec.has_audience)


def test_record_codes_outside_the_known_range_are_refused() -> None:
    authors = pa.table(
        {"account_id": [1], "blocked": pa.array([0], pa.int8()), "protected": [False], "ok_posts": [True]}
    )
    with pytest.raises(IntegrityFailure):
        combine_reasons(SPECS["posts"], author_ids=np.array([1]), codes=np.array([9]), authors=authors)


def test_in_memory_combination_fails_closed_and_ignores_audience_for_chats() -> None:
    authors = pa.table(
        {
            "account_id": pa.array([10, 20], pa.int64()),
            "blocked": pa.array([0, 0], pa.int8()),
            "protected": [True, False],
            "ok_assistant_interactions": [True, False],
        }
    )
    reasons = combine_reasons(
        SPECS["assistant_interactions"],
        author_ids=np.array([10, 20, 30, 10]),
        codes=np.array([0, 0, 0, 3]),
        authors=authors,
    )
    assert reasons.tolist() == [0, 5, 1, 3]  # protected does not matter; unknown author: inactive


def test_author_facts() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    accounts = pa.table(
        {
            "account_id": pa.array([1, 2, 3, 4, 5], pa.int64()),
            "created_at": pa.array([t] * 5, pa.timestamp("us", tz="UTC")),
            "country": ["US", "DE", "US", "US", "US"],
            "birth_year": pa.array([1990, 1990, 2015, 2015, 1990], pa.int16()),
            "status": ["active", "active", "active", "deleted", "deactivated"],
            "status_changed_at": pa.array(
                [None, None, None, t, datetime(2026, 9, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")
            ),
            "protected": [False, False, False, False, True],
        }
    )
    events = pa.table(
        {
            "account_id": [1],
            "setting": ["assistant_training_posts"],
            "value": ["deny"],
            "recorded_at": pa.array([t], pa.timestamp("us", tz="UTC")),
            "seq": [1],
        },
        schema=EVENT_SCHEMA,
    )
    secret = bytes(32)
    authors = author_facts(
        accounts,
        events,
        kind="first_party",
        purpose="train-ai",
        categories=["posts", "assistant_interactions"],
        as_of=AS_OF,
        policies=[POLICY],
        catalog=load_catalog(),
        jurisdictions=load_jurisdictions(),
    )
    facts = with_pseudonyms(authors, secret).to_pydict()
    assert facts["blocked"] == [0, 0, 2, 1, 0]  # a deleted minor is inactive first; 5 deactivates later
    assert facts["ok_posts"] == [False, False, False, False, True]
    assert facts["ok_assistant_interactions"] == [True, False, False, False, True]
    assert facts["protected"] == [False, False, False, False, True]
    assert facts["pseudonym"] == [pseudonym(1, secret), None, None, None, pseudonym(5, secret)]


def test_no_covering_setting_means_nothing_is_eligible() -> None:
    covering = covering_settings(load_catalog(), kind="first_party", purpose="search", categories=["posts"])
    assert covering == {"posts": ()}


def test_retention_is_validated() -> None:
    assert Retention({"posts": 30}).cutoff("posts", AS_OF) == datetime(2026, 5, 2, tzinfo=UTC)
    assert Retention().cutoff("posts", AS_OF) is None
    with pytest.raises(InvalidInput):
        Retention({"profile": 30})
    with pytest.raises(InvalidInput):
        Retention({"posts": -1})


def _status_case(
    lake: tuple[str, datetime | None], db: tuple[str, datetime | None, bool] | None
) -> tuple[str, datetime | None]:
    stamp = pa.timestamp("us", tz="UTC")
    accounts = pa.table(
        {
            "account_id": pa.array([1, 2], pa.int64()),
            "status": ["active", lake[0]],
            "status_changed_at": pa.array([None, lake[1]], stamp),
        }
    )
    rows = (
        []
        if db is None
        else [{"account_id": 2, "status": db[0], "status_changed_at": db[1], "mapped": db[2]}]
    )
    out = with_database_status(accounts, pa.Table.from_pylist(rows, schema=CLOSED_ACCOUNTS)).to_pylist()
    assert out[0] == {"account_id": 1, "status": "active", "status_changed_at": None}  # untouched
    return out[1]["status"], out[1]["status_changed_at"]


MAY, JUNE = datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("lake", "db", "expected"),
    [
        (("active", None), None, ("active", None)),
        (("active", None), ("deactivated", JUNE, True), ("deactivated", JUNE)),
        # deleted, mapping gone: its choices are unrecoverable, so closed at every moment
        (("active", None), ("deleted", JUNE, False), ("deleted", None)),
        (("deactivated", MAY), ("deleted", JUNE, True), ("deactivated", MAY)),
        (("deactivated", JUNE), ("deleted", MAY, True), ("deactivated", MAY)),
        (("deleted", None), ("deactivated", MAY, True), ("deleted", None)),
        (("deactivated", MAY), ("deleted", JUNE, False), ("deactivated", None)),
    ],
)
def test_the_database_status_is_laid_over_the_lake_most_restrictive_first(
    lake: tuple[str, datetime | None],
    db: tuple[str, datetime | None, bool] | None,
    expected: tuple[str, datetime | None],
) -> None:
    assert _status_case(lake, db) == expected
