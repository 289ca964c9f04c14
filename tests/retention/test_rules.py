"""Durations, configuration and the window edge of the retention rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from tests.conftest import reset

from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.retention import service
from consentry.retention.rules import DEFAULT_RULES, Duration, Rules, load_rules, parse_duration
from consentry.social.models import Account, Post


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P30D", Duration(days=30)),
        ("p30d", Duration(days=30)),
        ("P18M", Duration(months=18)),
        ("P1Y6M", Duration(years=1, months=6)),
        ("P6W", Duration(days=42)),
        ("P2W3D", Duration(days=17)),
        ("P0D", Duration()),
        ("30", Duration(days=30)),
        (30, Duration(days=30)),
        (0, Duration()),
        (" P30D ", Duration(days=30)),
    ],
)
def test_durations_parse(text: object, expected: Duration) -> None:
    assert parse_duration(text, field="x") == expected


@pytest.mark.parametrize(
    "text", ["-P30D", "-30", -1, "P", "PT5H", "30d", "18mo", "P1.5D", "thirty", "", True, 2.5, [30], "P-3D"]
)
def test_bad_durations_name_the_field(text: object) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_duration(text, field="retention.posts.after_deletion")
    assert error.value.field == "retention.posts.after_deletion"


def test_negative_durations_say_so() -> None:
    with pytest.raises(InvalidInput, match="negative"):
        parse_duration("-P30D", field="f")
    with pytest.raises(InvalidInput, match="negative"):
        parse_duration(-3, field="f")


def test_durations_print_as_iso_8601() -> None:
    assert [str(d) for d in (Duration(days=30), Duration(months=18), Duration(1, 6, 2), Duration())] == [
        "P30D",
        "P18M",
        "P1Y6M2D",
        "P0D",
    ]


def test_months_are_calendar_months_clamped_to_the_month_end() -> None:
    assert Duration(months=18).before(datetime(2026, 6, 1, 12, tzinfo=UTC)) == datetime(
        2024, 12, 1, 12, tzinfo=UTC
    )
    assert Duration(months=18).before(datetime(2026, 8, 31, tzinfo=UTC)) == datetime(2025, 2, 28, tzinfo=UTC)
    assert Duration(years=1).before(datetime(2028, 2, 29, tzinfo=UTC)) == datetime(2027, 2, 28, tzinfo=UTC)
    assert Duration(days=30).before(datetime(2026, 3, 1, tzinfo=UTC)) == datetime(2026, 1, 30, tzinfo=UTC)


def test_defaults_are_the_issue_s() -> None:
    assert DEFAULT_RULES.describe() == {
        "posts": {"after_deletion": "P30D", "max_age": None},
        "assistant_interactions": {"after_deletion": "P30D", "max_age": None},
        "deactivated_accounts": {"after_deactivation": "P30D"},
        "access_log": {"max_age": "P18M"},
        "subject_mappings": {"after_deletion": "P0D"},
        "consent_events": {"max_age": None},
    }
    assert load_rules(None) is DEFAULT_RULES


def test_a_rules_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "retention.json"
    path.write_text(json.dumps({"access_log": {"max_age": "P2Y"}, "posts": {"max_age": 3650}}))
    rules = load_rules(path)
    assert rules.access_log_max_age == Duration(years=2)
    assert rules.posts_max_age == Duration(days=3650)
    assert rules.posts_after_deletion == Duration(days=30)
    assert rules.source == str(path)
    shown = {k: v for k, v in rules.describe().items() if k not in ("subject_mappings", "consent_events")}
    assert Rules.from_mapping(shown) == rules  # describe() reads back


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([1, 2], "retention"),
        ({"photos": {"max_age": "P1D"}}, "retention.photos"),
        ({"posts": "P30D"}, "retention.posts"),
        ({"posts": {"keep": "P30D"}}, "retention.posts.keep"),
        ({"consent_events": {"max_age": "P10Y"}}, "retention.consent_events"),
        ({"subject_mappings": {"after_deletion": "P1D"}}, "retention.subject_mappings"),
        ({"access_log": {"max_age": "-P18M"}}, "retention.access_log.max_age"),
    ],
)
def test_bad_configuration_names_the_field(data: object, field: str) -> None:
    with pytest.raises(InvalidInput) as error:
        Rules.from_mapping(data)
    assert error.value.field == field


def test_unreadable_files_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as missing:
        load_rules(tmp_path / "missing.json")
    assert missing.value.field == "retention_file"
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(InvalidInput) as error:
        load_rules(broken)
    assert error.value.field == "retention_file"


AT = datetime(2026, 6, 1, 12, tzinfo=UTC)
OFFSETS = st.lists(
    st.integers(min_value=-5_000_000, max_value=5_000_000), min_size=1, max_size=12, unique=True
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    days=st.integers(min_value=0, max_value=800),
    months=st.integers(min_value=0, max_value=30),
    offsets=OFFSETS,
)
def test_a_post_is_removed_exactly_when_its_window_has_passed(
    sqlite_database: Database, days: int, months: int, offsets: list[int]
) -> None:
    """A post deleted at ``cutoff + offset`` microseconds stays when ``offset >= 0`` (the edge is inside
    the window) and is removed when ``offset < 0``; the plan says the same."""
    database = sqlite_database
    window = Duration(months=months, days=days)
    rules = Rules(posts_after_deletion=window)
    cutoff = window.before(AT)
    reset(database)
    with database.write() as session:
        session.execute(
            insert(Account).values(
                id=1,
                handle="a",
                created_at=AT,
                country="US",
                birth_year=1990,
                protected=False,
                status="active",
            )
        )
        session.execute(
            insert(Post),
            [
                {
                    "id": i + 1,
                    "author_id": 1,
                    "created_at": cutoff,
                    "text": "t",
                    "deleted_at": cutoff + timedelta(microseconds=offset),
                    "visibility": "public",
                    "media": "none",
                }
                for i, offset in enumerate(offsets)
            ],
        )
    expected = {i + 1 for i, offset in enumerate(offsets) if offset >= 0}
    with database.read() as session:
        planned = service.plan(session, rules=rules, at=AT).outcome("posts").removed["posts"]
    report = service.apply(database, rules=rules, at=AT)
    with database.read() as session:
        left = set(session.scalars(select(Post.id)))
    assert left == expected
    assert planned == report.outcome("posts").removed["posts"] == len(offsets) - len(expected)
