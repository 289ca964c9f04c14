"""Statement queries on SQLite and PostgreSQL: damages statements and the 24-hour ranking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consentry.db import Database
from consentry.errors import InvalidInput, NotFound
from consentry.metering import damages, service
from consentry.metering.service import AccessEvent

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _log(database: Database, org_id: int, rows: list[tuple[str, int]]) -> None:
    with database.write() as session:
        service.append_access_log(
            session,
            events=[
                AccessEvent(
                    f"org:{org_id}",
                    datetime.fromisoformat(at).replace(tzinfo=UTC),
                    posts,
                    org_id,
                    "/v1/posts" if i % 2 else "/v1/search",
                    f"192.0.2.{i % 3}",
                )
                for i, (at, posts) in enumerate(rows)
            ],
        )


def test_statement_of_the_hand_computed_example(database: Database) -> None:
    from tests.metering.test_damages import EXAMPLE

    with database.write() as session:
        org_id = service.create_organisation(session, name="Scraper Inc").id
    _log(database, org_id, EXAMPLE)
    with database.read() as session:
        result = service.statement(
            session,
            organisation="Scraper Inc",
            start=datetime(2026, 11, 1, tzinfo=UTC),
            end=datetime(2026, 12, 1, tzinfo=UTC),
        )
        per_million = service.statement(
            session,
            organisation=str(org_id),
            start=datetime(2026, 11, 1, tzinfo=UTC),
            end=datetime(2026, 12, 1, tzinfo=UTC),
            terms=damages.Terms(rounding="per_started_million"),
        )
    assert [(w.start.isoformat(), w.posts, w.amount_cents) for w in result.windows] == [
        ("2026-11-01T08:00:00+00:00", 1_100_000, 1_650_000),
        ("2026-11-02T08:00:00+00:00", 1_150_000, 1_725_000),
    ]
    assert result.total_amount_cents == 3_375_000 and result.total_amount_usd == "33,750.00"
    assert result.posts_in_period == sum(p for _, p in EXAMPLE)
    first = result.windows[0]
    assert len(first.hours) == 24 and sum(h.posts for h in first.hours) == first.posts
    assert first.hours[6].posts == 500_000 and first.hours[6].start.isoformat() == "2026-11-01T14:00:00+00:00"
    assert sum(r.posts for r in first.routes) == first.posts
    assert {c.name for c in first.clients} <= {"192.0.2.0", "192.0.2.1", "192.0.2.2"}
    assert per_million.total_amount_cents == 6_000_000


def test_statement_bad_input(database: Database) -> None:
    with database.write() as session:
        service.create_organisation(session, name="Known")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with database.read() as session:
        with pytest.raises(NotFound):
            service.statement(session, organisation="Unknown", start=start, end=start + timedelta(days=1))
        with pytest.raises(NotFound):
            service.statement(
                session, organisation="crawler:nobody", start=start, end=start + timedelta(days=1)
            )
        with pytest.raises(InvalidInput):
            service.statement(session, organisation="Known", start=start, end=start - timedelta(days=1))
        with pytest.raises(InvalidInput):
            service.statement(session, organisation="Known", start=start, end=start + timedelta(days=400))
        empty = service.statement(session, organisation="Known", start=start, end=start + timedelta(days=30))
    assert empty.windows == [] and empty.total_amount_cents == 0


def test_top_ranks_by_posts_in_the_last_24_hours(database: Database) -> None:
    with database.write() as session:
        big = service.create_organisation(session, name="Big", mode="throttle").id
        small = service.create_organisation(session, name="Small").id
        service.append_access_log(
            session,
            events=[
                AccessEvent(f"org:{big}", T0 - timedelta(hours=2), 900_000, big),
                AccessEvent(f"org:{big}", T0 - timedelta(hours=1), 300_000, big),
                AccessEvent(f"org:{big}", T0 - timedelta(hours=30), 5_000_000, big),  # older than 24 h
                AccessEvent(f"org:{small}", T0 - timedelta(minutes=5), 10, small),
                AccessEvent("crawler:openai", T0 - timedelta(minutes=5), 500),
            ],
        )
    with database.read() as session:
        top = service.top(session, now=T0, limit=10)
        with pytest.raises(InvalidInput):
            service.top(session, now=T0, limit=0)
    assert [(e.organisation, e.posts_24h) for e in top.entries] == [
        ("Big", 1_200_000),
        ("crawler:openai", 500),
        ("Small", 10),
    ]
    assert top.entries[0].projected_cents == 1_800_000 and top.entries[0].mode == "throttle"
    assert top.entries[1].projected_cents == 0 and top.entries[1].organisation_id is None
