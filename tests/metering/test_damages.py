"""Damages: breach windows per DESIGN.md, amounts, periods, and rendering."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.errors import InvalidInput
from consentry.metering import damages
from consentry.metering.damages import WINDOW_MINUTES, Terms, amount_cents, find_windows, prepare
from consentry.metering.schemas import BreachWindow, HourEvidence, Statement, TermsIn


def reference_windows(minutes: list[int], posts: list[int], *, threshold: int) -> list[tuple[int, int]]:
    """A slow, literal implementation of the rule (minute by minute): [(start, posts)]."""
    by_minute: dict[int, int] = {}
    for minute, count in zip(minutes, posts, strict=True):
        by_minute[minute] = by_minute.get(minute, 0) + count
    served = sorted(minute for minute, count in by_minute.items() if count > 0)
    result: list[tuple[int, int]] = []
    not_before = None
    for start in served:
        if not_before is not None and start < not_before:
            continue
        total = sum(by_minute.get(minute, 0) for minute in range(start, start + WINDOW_MINUTES))
        if total > threshold:
            result.append((start, total))
            not_before = start + WINDOW_MINUTES
    return result


def minute(text: str) -> int:
    return damages.epoch_minute(datetime.fromisoformat(text).replace(tzinfo=UTC))


# The hand-computed example (threshold 1,000,000 posts, USD 15,000 per 1,000,000 posts):
#   window 1 starts 2026-11-01 08:00: 400,000 + 500,000 + 200,000 = 1,100,000 -> USD 16,500.00
#   window 2 may start at 2026-11-02 08:00 at the earliest, and does: 300,000 + 800,000 + 50,000
#            = 1,150,000 -> USD 17,250.00
#   2026-11-03 09:00 holds 999,999 + 1 = 1,000,000 posts in its 24 hours: not more than the threshold.
EXAMPLE = [
    ("2026-11-01T08:00", 400_000),
    ("2026-11-01T14:30", 500_000),
    ("2026-11-02T07:59", 200_000),
    ("2026-11-02T08:00", 300_000),
    ("2026-11-02T20:00", 800_000),
    ("2026-11-03T07:00", 50_000),
    ("2026-11-03T09:00", 999_999),
    ("2026-11-04T08:59", 1),
]


def test_hand_computed_example() -> None:
    buckets = prepare(
        np.zeros(len(EXAMPLE)), [minute(at) for at, _ in EXAMPLE], [posts for _, posts in EXAMPLE]
    )
    windows = find_windows(buckets, threshold=1_000_000)
    assert [damages.from_minute(int(s)).isoformat() for s in windows.start] == [
        "2026-11-01T08:00:00+00:00",
        "2026-11-02T08:00:00+00:00",
    ]
    assert windows.posts.tolist() == [1_100_000, 1_150_000]
    assert damages.amounts(windows.posts, Terms()) == [1_650_000, 1_725_000]
    per_million = Terms(rounding="per_started_million")
    assert damages.amounts(windows.posts, per_million) == [3_000_000, 3_000_000]
    hours, _ = damages.hourly_evidence(buckets, windows)
    assert {h: int(p) for h, p in enumerate(hours[0]) if p} == {0: 400_000, 6: 500_000, 23: 200_000}
    assert {h: int(p) for h, p in enumerate(hours[1]) if p} == {0: 300_000, 12: 800_000, 23: 50_000}


def test_midnight_crossing_breach_without_any_calendar_day_over_the_threshold() -> None:
    # 600,000 posts between 22:00 and 23:59, 600,000 between 00:00 and 01:59 the next day
    at = [minute("2026-11-20T22:00") + 20 * i for i in range(6)] + [
        minute("2026-11-21T00:00") + 20 * i for i in range(6)
    ]
    posts = [100_000] * 12
    days: dict[str, int] = {}
    for m, p in zip(at, posts, strict=True):
        day = damages.from_minute(m).date().isoformat()
        days[day] = days.get(day, 0) + p
    assert max(days.values()) == 600_000
    windows = find_windows(prepare(np.zeros(12), at, posts), threshold=1_000_000)
    assert windows.posts.tolist() == [1_200_000]
    assert damages.amounts(windows.posts, Terms()) == [1_800_000]


@pytest.mark.parametrize(
    ("posts", "rounding", "cents"),
    [
        (1_200_000, "pro_rata", 1_800_000),
        (1_200_000, "per_started_million", 3_000_000),
        (2_000_000, "per_started_million", 3_000_000),
        (1_000_001, "pro_rata", 1_500_002),  # 1,500,001.5 cents rounds half up
        (1_000_001, "per_started_million", 3_000_000),
        (0, "pro_rata", 0),
        (1, "pro_rata", 2),  # 1.5 cents
    ],
)
def test_amounts_are_integer_cents(posts: int, rounding: damages.Rounding, cents: int) -> None:
    assert amount_cents(posts, Terms(rounding=rounding)) == cents


def test_threshold_is_exclusive() -> None:
    at = [minute("2026-11-01T00:00"), minute("2026-11-01T23:59")]
    assert len(find_windows(prepare([0, 0], at, [500_000, 500_000]), threshold=1_000_000)) == 0
    assert len(find_windows(prepare([0, 0], at, [500_000, 500_001]), threshold=1_000_000)) == 1
    # 24 hours later the first minute has left the window
    late = [minute("2026-11-01T00:00"), minute("2026-11-02T00:00")]
    assert len(find_windows(prepare([0, 0], late, [600_000, 600_000]), threshold=1_000_000)) == 0


events = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 7000), st.integers(0, 60)), min_size=0, max_size=80
)


@settings(max_examples=300, deadline=None)
@given(events=events, threshold=st.integers(0, 400))
def test_windowing_matches_a_minute_by_minute_reference(
    events: list[tuple[int, int, int]], threshold: int
) -> None:
    groups = [g for g, _, _ in events]
    buckets = prepare(groups, [m for _, m, _ in events], [p for _, _, p in events])
    windows = find_windows(buckets, threshold=threshold)
    got: dict[int, list[tuple[int, int]]] = {}
    for group, start, posts in zip(windows.group, windows.start, windows.posts, strict=True):
        got.setdefault(int(group), []).append((int(start), int(posts)))
    for group in set(groups):
        mine = [(m, p) for g, m, p in events if g == group]
        expected = reference_windows([m for m, _ in mine], [p for _, p in mine], threshold=threshold)
        assert got.get(group, []) == expected
    hours, _ = damages.hourly_evidence(buckets, windows)
    assert hours.sum(axis=1).tolist() == windows.posts.tolist()


@settings(max_examples=300, deadline=None)
@given(events=events, threshold=st.integers(0, 400))
def test_the_search_with_and_without_the_pruned_buckets_finds_the_same_windows(
    events: list[tuple[int, int, int]], threshold: int
) -> None:
    """Pruning is exact: dropping the idle buckets (a gather) or keeping them gives the same windows,
    to the bucket."""
    buckets = prepare([g for g, _, _ in events], [m for _, m, _ in events], [p for _, _, p in events])
    found = []
    saved = damages.PRUNE_GATHER
    try:
        for share in (0.0, 1.01):  # never drop the pruned buckets; always drop them
            damages.PRUNE_GATHER = share
            found.append(find_windows(buckets, threshold=threshold))
    finally:
        damages.PRUNE_GATHER = saved
    kept, dropped = found
    for name in ("group", "start", "posts", "first", "stop"):
        assert getattr(kept, name).tolist() == getattr(dropped, name).tolist(), name


def test_bad_input() -> None:
    with pytest.raises(InvalidInput):
        prepare([0], [1], [-5])
    with pytest.raises(InvalidInput):
        prepare([0, 1], [1], [5])
    with pytest.raises(InvalidInput):
        Terms(threshold=-1)
    with pytest.raises(InvalidInput):
        Terms(rate_cents=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Terms(rounding="round")  # type: ignore[arg-type]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="after"):
        damages.check_period(start, start)
    with pytest.raises(InvalidInput, match="after"):
        damages.check_period(start, start - timedelta(days=1))
    with pytest.raises(InvalidInput, match="year"):
        damages.check_period(start, start + timedelta(days=367))
    with pytest.raises(InvalidInput, match="timezone"):
        damages.check_period(start.replace(tzinfo=None), start + timedelta(days=1))
    damages.check_period(start, start + timedelta(days=366))


def _statement() -> Statement:
    start = datetime(2026, 11, 1, 8, tzinfo=UTC)
    hours = [
        HourEvidence(
            start=start + timedelta(hours=h), end=start + timedelta(hours=h + 1), posts=p, requests=1
        )
        for h, p in enumerate([1_100_000] + [0] * 23)
    ]
    window = BreachWindow(
        number=1,
        start=start,
        end=start + timedelta(days=1),
        posts=1_100_000,
        amount_cents=1_650_000,
        amount_usd="16,500.00",
        hours=hours,
    )
    return Statement(
        organisation="Example <Labs>",
        organisation_id=1,
        subject="org:1",
        period_from=start,
        period_to=start + timedelta(days=2),
        terms=TermsIn(),
        posts_in_period=1_100_000,
        posts_in_windows=1_100_000,
        windows=[window],
        total_amount_cents=1_650_000,
        total_amount_usd="16,500.00",
        generated_at=start,
        method="test",
    )


def test_rendering() -> None:
    statement = _statement()
    text, media = damages.render_statement(statement, "json")
    assert media == "application/json" and json.loads(text)["total_amount_cents"] == 1_650_000
    text, media = damages.render_statement(statement, "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert media == "text/csv" and len(rows) == 24
    assert rows[0]["window_amount_cents"] == "1650000" and rows[0]["hour_posts"] == "1100000"
    text, media = damages.render_statement(statement, "html")
    assert media == "text/html"
    assert "Example &lt;Labs&gt;" in text and "16,500.00" in text
    with pytest.raises(InvalidInput):
        damages.render_statement(statement, "pdf")
    assert damages.format_usd(1_234_567) == "12,345.67"


def test_batch_statements_match_single_statements() -> None:
    groups = [0] * len(EXAMPLE) + [1] * len(EXAMPLE)
    at = [minute(a) for a, _ in EXAMPLE] * 2
    posts = [p for _, p in EXAMPLE] + [2 * p for _, p in EXAMPLE]
    batch = damages.batch_statements(prepare(groups, at, posts), Terms())
    assert batch.totals()[0] == 3_375_000
    assert batch.amount_cents.tolist() == damages.amounts(batch.windows.posts, Terms())
    assert batch.hour_posts.sum(axis=1).tolist() == batch.windows.posts.tolist()
    for rounding in ("pro_rata", "per_started_million"):
        terms = Terms(rounding=rounding)
        values = np.array([0, 1, 999_999, 1_000_000, 1_000_001, 123_456_789], dtype=np.int64)
        assert damages.amounts_array(values, terms).tolist() == damages.amounts(values, terms)
    huge = np.array([2**61], dtype=np.int64)
    assert damages.amounts_array(huge, Terms()).tolist() == [amount_cents(2**61, Terms())]


def test_prepare_merges_rows_of_the_same_minute_in_sorted_and_unsorted_input() -> None:
    sorted_rows = prepare([1, 1, 1, 2, 2], [10, 10, 11, 5, 5], [3, 4, 5, 1, 0], [1, 1, 1, 1, 1])
    assert sorted_rows.group.tolist() == [1, 1, 2]
    assert sorted_rows.minute.tolist() == [10, 11, 5]
    assert sorted_rows.posts.tolist() == [7, 5, 1]
    assert sorted_rows.requests.tolist() == [2, 1, 1]
    shuffled = prepare([2, 1, 1, 2, 1], [5, 11, 10, 5, 10], [1, 5, 4, 0, 3], [1, 1, 1, 1, 1])
    assert shuffled.posts.tolist() == sorted_rows.posts.tolist()
    assert shuffled.requests.tolist() == sorted_rows.requests.tolist()


def test_every_default_of_the_clause_is_the_design_one() -> None:
    """DESIGN.md: more than 1,000,000 posts in 24 hours, USD 15,000 per 1,000,000 posts; the setting, the
    terms, the API schema, the routes, the CLI and the middleware all take it from one place."""
    import inspect

    from consentry.config import Settings
    from consentry.metering import cli, router
    from consentry.metering.middleware import MeteringMiddleware

    assert Settings().damages_threshold_posts == Terms().threshold == TermsIn().threshold == 1_000_000
    assert Terms().rate_cents == TermsIn().rate_cents == 1_500_000
    for function in (router.damages_top, router.damages_statement, cli.damages_statement, cli.damages_top):
        assert inspect.signature(function).parameters["threshold"].default == 1_000_000
    assert inspect.signature(router.damages_statement).parameters["rate_cents"].default == 1_500_000
    assert inspect.signature(cli.damages_statement).parameters["rate_usd"].default == "15000"
    assert inspect.signature(MeteringMiddleware).parameters["threshold"].default == 1_000_000
