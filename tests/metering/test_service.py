"""The metering service on SQLite and PostgreSQL: organisations, keys, networks, log, statements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consentry.db import Database
from consentry.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from consentry.metering import damages, service
from consentry.metering.attribution import hash_key
from consentry.metering.schemas import OrganisationUpdate
from consentry.metering.service import AccessEvent, AccessLogWriter

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def test_organisation_crud(database: Database) -> None:
    with database.write() as session:
        org = service.create_organisation(session, name="Example Labs", mode="throttle", quota=5000)
        org_id = org.id
    with database.write() as session:
        assert service.get_organisation(session, ref="example labs").id == org_id
        assert service.get_organisation(session, ref=str(org_id)).name == "Example Labs"
        assert service.get_organisation(session, ref=f"org:{org_id}").id == org_id
        updated = service.update_organisation(
            session, ref=org_id, changes=OrganisationUpdate(mode="pay", price_micro_usd=1500)
        )
        assert (updated.mode, updated.quota, updated.price_micro_usd) == ("pay", 5000, 1500)
        cleared = service.update_organisation(session, ref=org_id, changes=OrganisationUpdate(quota=None))
        assert cleared.quota is None and cleared.mode == "pay"
        out = service.organisation_out(session, cleared)
        assert out.price_usd == "0.0015" and out.subject == f"org:{org_id}"
    with database.read() as session:
        assert [o.name for o in service.list_organisations(session)] == ["Example Labs"]
    with database.write() as session:
        service.delete_organisation(session, ref=org_id)
    with database.read() as session, pytest.raises(NotFound):
        service.get_organisation(session, ref=org_id)


def test_organisation_bad_input(database: Database) -> None:
    with database.write() as session:
        service.create_organisation(session, name="Taken")
    cases = [
        ({"name": "taken"}, Conflict),
        ({"name": "  "}, InvalidInput),
        ({"name": "12345"}, InvalidInput),
        ({"name": "a:b"}, InvalidInput),
        ({"name": "X", "mode": "free"}, InvalidInput),
        ({"name": "X", "mode": "pay"}, InvalidInput),
        ({"name": "X", "quota": -1}, InvalidInput),
        ({"name": "X", "quota": 2.5}, InvalidInput),
        ({"name": "X", "price_micro_usd": -3}, InvalidInput),
    ]
    for kwargs, error in cases:
        with database.write() as session, pytest.raises(error):
            service.create_organisation(session, **kwargs)  # type: ignore[arg-type]
    with database.read() as session, pytest.raises(NotFound):
        service.get_organisation(session, ref="nobody")


def test_keys_issue_resolve_revoke(database: Database) -> None:
    with database.write() as session:
        org = service.create_organisation(session, name="Keyed")
        row, key = service.issue_key(session, ref="Keyed", label="crawler fleet")
        key_id, org_id = row.id, org.id
        assert key.startswith("cso_") and row.key_hash == hash_key(key) and key not in row.key_hash
    with database.read() as session:
        assert service.resolve_key(session, key=key).id == org_id
        directory = service.load_directory(session)
        assert directory.attribute(api_key=key, client_ip="192.0.2.1").subject == f"org:{org_id}"
    with database.write() as session:
        service.revoke_key(session, key_id=key_id)
    with database.read() as session:
        with pytest.raises(Unauthenticated):
            service.resolve_key(session, key=key)
        assert service.load_directory(session).attribute(api_key=key, client_ip="192.0.2.1").kind == "client"
    with database.write() as session, pytest.raises(NotFound):
        service.revoke_key(session, key_id=999_999)


def test_networks(database: Database) -> None:
    with database.write() as session:
        service.create_organisation(session, name="Netted")
        network = service.add_network(session, ref="Netted", cidr=" 198.51.100.0/24 ")
        assert network.cidr == "198.51.100.0/24"
        service.add_network(session, ref="Netted", cidr="2001:db8::/48")
    with database.write() as session, pytest.raises(Conflict):
        service.add_network(session, ref="Netted", cidr="198.51.100.0/24")
    with database.write() as session, pytest.raises(InvalidInput):
        service.add_network(session, ref="Netted", cidr="198.51.100.0/33")
    with database.write() as session, pytest.raises(NotFound):
        service.add_network(session, ref="Nobody", cidr="192.0.2.0/24")
    with database.read() as session:
        directory = service.load_directory(session)
    assert directory.attribute(client_ip="198.51.100.9").label == "Netted"
    assert directory.attribute(client_ip="2001:db8:0:1::5").label == "Netted"
    with database.write() as session:
        service.remove_network(session, network_id=network.id)
    with database.read() as session:
        assert service.load_directory(session).attribute(client_ip="198.51.100.9").kind == "client"


def test_access_log_append_validates_and_merges(database: Database) -> None:
    with database.write() as session:
        org_id = service.create_organisation(session, name="Logged").id
    bad = [
        AccessEvent("org:1", T0, -1),
        AccessEvent("org:1", T0, 2.5),  # type: ignore[arg-type]
        AccessEvent("org:1", T0.replace(tzinfo=None), 1),
        AccessEvent("someone", T0, 1),
    ]
    for event in bad:
        with database.write() as session, pytest.raises(InvalidInput):
            service.append_access_log(session, events=[event])
    with database.write() as session:
        written = service.append_access_log(
            session,
            events=[
                AccessEvent(f"org:{org_id}", T0 + timedelta(seconds=5), 10, org_id, "/posts", "192.0.2.1"),
                AccessEvent(f"org:{org_id}", T0 + timedelta(seconds=50), 15, org_id, "/posts", "192.0.2.1"),
                AccessEvent(f"org:{org_id}", T0 + timedelta(minutes=1), 1, org_id, "/posts", "192.0.2.1"),
                AccessEvent("org:99999", T0, 4, 99_999, "/posts", "192.0.2.1"),  # unknown id: kept, unlinked
            ],
        )
        assert written == 3
    with database.write() as session, pytest.raises(Conflict):
        service.delete_organisation(session, ref=org_id)


def test_access_log_writer_batches(database: Database) -> None:
    writer = AccessLogWriter(database, interval=0)
    for second in range(30):
        writer.record(
            subject="net:192.0.2.0/24", at=T0 + timedelta(seconds=second * 3), posts=2, client="192.0.2.7"
        )
    assert writer.pending() == 60
    assert writer.flush() == 2  # two minutes
    assert writer.flush() == 0 and writer.pending() == 0
    with database.read() as session:
        statement = service.statement(
            session,
            organisation="net:192.0.2.0/24",
            start=T0,
            end=T0 + timedelta(hours=1),
            terms=damages.Terms(threshold=10),
        )
    assert statement.posts_in_period == 60 and statement.windows[0].posts == 60
    with pytest.raises(InvalidInput):
        writer.record(subject="org:1", at=T0, posts=-2)
    writer.close()


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
