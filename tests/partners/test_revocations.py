"""Revocations follow released records: opt-outs, deletions, deactivation; found through lineage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from consentry.auth.service import create_token
from consentry.consent.importer import import_events
from consentry.consent.service import ConsentContext, change_settings
from consentry.datasets import lineage
from consentry.datasets import service as datasets
from consentry.datasets.models import Recipient, Release
from consentry.db import Database
from consentry.links.service import import_links, request_link
from consentry.partners import revocations
from consentry.partners.models import OutboxMessage, Revocation
from consentry.partners.usage import data_usage
from consentry.social import service as social
from consentry.social.seed import seed_from_lake
from tests.datasets.conftest import CATEGORIES, build
from tests.datasets.scenario import write_scenario

NOW = datetime(2026, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def scenario_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The datasets tests' hand-made lake, in which every exclusion reason occurs."""
    return write_scenario(tmp_path_factory.mktemp("scenario") / "lake")


@pytest.fixture
def platform(
    database: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> dict[str, Release]:
    """The scenario lake seeded into the platform, with one release to a first party and one to a partner."""
    revocations.CACHE.clear()
    seed_from_lake(database, scenario_lake, ctx=ctx)
    with database.write() as session:
        datasets.add_recipient(
            session, name="assistant", kind="first_party", purposes=["train-ai"], categories=CATEGORIES
        )
        datasets.add_recipient(
            session, name="partner", kind="third_party", purposes=["train-ai"], categories=CATEGORIES
        )
        partner = session.scalars(select(Recipient).where(Recipient.name == "partner")).one()
        partner.webhook_url = "http://127.0.0.1:9/hooks"
        partner.webhook_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
        partner.deletion_deadline_hours = 48
    first = build(database, ctx, scenario_lake, tmp_path / "first", categories=CATEGORIES)
    third = build(
        database, ctx, scenario_lake, tmp_path / "third", recipient="partner", categories=CATEGORIES
    )
    return {"first": first, "third": third}


def lake_posts_by(lake: Path, author: int) -> set[int]:
    """Post ids of ``author`` in the lake (independent of lineage)."""
    posts = pq.read_table(lake / "posts").to_pylist()
    return {row["post_id"] for row in posts if row["author_id"] == author}


def held(release: Release, category: str) -> set[int]:
    """Record ids a release delivered, read from its Parquet shards (independent of the lineage index)."""
    return set(pq.read_table(Path(release.path) / "data" / category).column("id").to_pylist())


def all_revocations(database: Database) -> list[Revocation]:
    with database.read() as session:
        found = list(session.scalars(select(Revocation).order_by(Revocation.id)))
        session.expunge_all()
        return found


def test_an_opt_out_revokes_exactly_the_authors_released_records_where_the_setting_covers_them(
    database: Database, ctx: ConsentContext, scenario_lake: Path, platform: dict[str, Release]
) -> None:
    with database.write() as session:
        change_settings(
            session, account_id=1, changes={"third_party_sharing": "deny"}, client="ios", ctx=ctx, at=NOW
        )
    found = all_revocations(database)
    third = platform["third"]
    expected = {
        category: held(third, category) & (lake_posts_by(scenario_lake, 1) if category == "posts" else {1, 2})
        for category in CATEGORIES
    }
    by_category = {r.category: r for r in found}
    assert {r.release_id for r in found} == {third.id}  # the first party's release is not covered
    for category, ids in expected.items():
        if ids:
            revocation = by_category[category]
            assert set(revocation.record_ids) == ids
            assert revocation.records == len(ids)
            assert revocation.reason == "opt_out"
            assert revocation.setting == "third_party_sharing"
            assert revocation.account_id == 1
            assert revocation.deadline_at == datetime(2026, 7, 3, tzinfo=UTC)
    assert expected["posts"]
    with database.read() as session:
        messages = list(session.scalars(select(OutboxMessage)))
        session.expunge_all()
    assert sorted(m.payload["data"]["id"] for m in messages) == sorted(r.id for r in found)
    assert all(
        m.event_type == "revocation.created" and "account_id" not in m.payload["data"] for m in messages
    )


def test_an_allow_or_a_repeated_opt_out_revokes_nothing_new(
    database: Database, ctx: ConsentContext, platform: dict[str, Release]
) -> None:
    with database.write() as session:
        change_settings(
            session, account_id=1, changes={"third_party_sharing": "allow"}, client="web", ctx=ctx
        )
    assert all_revocations(database) == []
    for _ in range(2):
        with database.write() as session:
            change_settings(
                session, account_id=1, changes={"third_party_sharing": "deny"}, client="web", ctx=ctx
            )
    assert len({(r.release_id, r.category) for r in all_revocations(database)}) == len(
        all_revocations(database)
    )


def test_deleting_a_released_post_revokes_it_from_every_release_holding_it(
    database: Database, platform: dict[str, Release]
) -> None:
    assert 101 in held(platform["first"], "posts") and 101 in held(platform["third"], "posts")
    with database.write() as session:
        social.delete_post(session, account_id=1, post_id=101, at=NOW)
    found = all_revocations(database)
    assert sorted(r.release_id for r in found) == sorted([platform["first"].id, platform["third"].id])
    assert all(r.record_ids == [101] and r.reason == "post_deleted" and r.account_id == 1 for r in found)


def test_deleting_an_unreleased_post_revokes_nothing(
    database: Database, platform: dict[str, Release]
) -> None:
    assert 102 not in held(platform["first"], "posts")
    with database.write() as session:
        social.delete_post(session, account_id=1, post_id=102, at=NOW)
    assert all_revocations(database) == []


def test_account_deletion_revokes_everything_not_already_revoked(
    database: Database, ctx: ConsentContext, scenario_lake: Path, platform: dict[str, Release]
) -> None:
    with database.write() as session:
        social.delete_post(session, account_id=1, post_id=101, at=NOW)
    with database.write() as session:
        social.delete_account(session, account_id=1, at=NOW)
    found = all_revocations(database)
    for release in platform.values():
        for category in CATEGORIES:
            mine = lake_posts_by(scenario_lake, 1) if category == "posts" else {1, 2}
            revoked = [
                i
                for r in found
                if r.release_id == release.id and r.category == category
                for i in r.record_ids
            ]
            assert sorted(revoked) == sorted(held(release, category) & mine)  # each once, none missing
    assert {r.reason for r in found} == {"post_deleted", "account_deleted"}


def test_deactivation_revokes_and_a_failed_transaction_leaves_nothing(
    database: Database, platform: dict[str, Release]
) -> None:
    inside: list[int] = []

    def deactivate_then_fail() -> None:
        with database.write() as session:
            social.deactivate_account(session, account_id=8, at=NOW)
            inside.append(len(list(session.scalars(select(Revocation)))))
            raise RuntimeError("the caller fails after the event")

    with pytest.raises(RuntimeError):
        deactivate_then_fail()
    assert inside[0] > 0  # the revocations existed inside the transaction...
    assert all_revocations(database) == []  # ...and vanish with it
    with database.write() as session:
        social.deactivate_account(session, account_id=8, at=NOW)
    found = all_revocations(database)
    assert found and {r.reason for r in found} == {"account_deactivated"}
    assert {r.account_id for r in found} == {8}


def test_lineage_index_names_the_same_records_as_the_shards(platform: dict[str, Release]) -> None:
    for release in platform.values():
        for category in CATEGORIES:
            pairs = lineage.read_by_author(lineage.by_author_path(Path(release.path), category))
            assert set(pairs[:, 1].tolist()) == held(release, category)
            authors, records = lineage.records_of(pairs, pairs[:, 0])
            assert sorted(records.tolist()) == sorted(pairs[:, 1].tolist())
            assert list(authors) == sorted(authors)


def test_data_usage_lists_the_releases_holding_the_account_and_the_state_of_each_revocation(
    database: Database,
    ctx: ConsentContext,
    scenario_lake: Path,
    platform: dict[str, Release],
    client: TestClient,
) -> None:
    mine = {"posts": lake_posts_by(scenario_lake, 1), "assistant_interactions": {1, 2}}
    expected = {
        release.id: {c: len(held(release, c) & mine[c]) for c in CATEGORIES if held(release, c) & mine[c]}
        for release in platform.values()
    }
    with database.write() as session:
        token = create_token(session, kind="account", account_id=1)
        assert {u.release_id: u.records for u in data_usage(session, account_id=1)} == expected
        assert data_usage(session, account_id=7) == []  # EEA default deny: never released
        change_settings(
            session, account_id=1, changes={"third_party_sharing": "deny"}, client="web", ctx=ctx, at=NOW
        )
    with database.read() as session:
        usage = {u.release_id: u for u in data_usage(session, account_id=1, now=NOW)}
        late = {u.release_id: u for u in data_usage(session, account_id=1, now=NOW + timedelta(days=3))}
    assert usage[platform["first"].id].revocations == []
    assert {r.state for r in usage[platform["third"].id].revocations} == {"pending"}
    assert {r.state for r in late[platform["third"].id].revocations} == {"overdue"}
    with database.write() as session:
        for revocation in session.scalars(select(Revocation)):
            revocation.acknowledged_at = revocation.deleted_at = NOW
    response = client.get("/v1/me/data-usage", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    body = response.json()
    assert body["records"] == sum(sum(counts.values()) for counts in expected.values())
    third = next(r for r in body["releases"] if r["release_id"] == platform["third"].id)
    assert third["recipient"] == "partner" and third["recipient_kind"] == "third_party"
    assert {r["state"] for r in third["revocations"]} == {"acknowledged"}
    with database.read() as session:  # the report cites the ledger's latest checkpoint
        size, root = session.execute(
            text("SELECT size, root FROM tlog_checkpoints ORDER BY size DESC")
        ).first()
    assert (body["checkpoint"]["size"], body["checkpoint"]["root"]) == (size, root)
    assert body["checkpoint"]["log_key"] == client.get("/.well-known/consentry/checkpoint-key").text.strip()
    assert client.get("/v1/me/data-usage").status_code == 401


def test_data_usage_of_linked_accounts_is_each_accounts_own_report(
    database: Database, platform: dict[str, Release], client: TestClient
) -> None:
    """``scope=linked`` adds, per confirmed linked account, exactly the report that account would get."""
    with database.write() as session:
        token = create_token(session, kind="account", account_id=1)
        active = session.scalars(
            select(social.Account.id).where(social.Account.status == "active", social.Account.id != 1)
        ).all()
        used = [a for a in active if data_usage(session, account_id=a)]
        unused = [a for a in active if a not in used]
        chosen = sorted([*used[:2], *unused[:1]])
        import_links(session, [(1, a) for a in chosen])
        asked = next(a for a in active if a not in chosen)
        request_link(session, account_id=1, other_id=asked)  # asked, never confirmed: not covered
        expected = {a: {u.release_id: u.records for u in data_usage(session, account_id=a)} for a in chosen}
    assert any(expected.values())  # some linked account has released records
    headers = {"Authorization": f"Bearer {token}"}
    alone = client.get("/v1/me/data-usage", headers=headers).json()
    assert alone["linked"] == []
    body = client.get("/v1/me/data-usage", headers=headers, params={"scope": "linked"}).json()
    assert {k: v for k, v in body.items() if k != "linked"} == {
        k: v for k, v in alone.items() if k != "linked"
    }
    assert [item["account_id"] for item in body["linked"]] == chosen
    for item in body["linked"]:
        assert {r["release_id"]: r["records"] for r in item["releases"]} == expected[item["account_id"]]
        assert item["records"] == sum(sum(c.values()) for c in expected[item["account_id"]].values())
    bad = client.get("/v1/me/data-usage", headers=headers, params={"scope": "everyone"})
    assert bad.status_code == 422 and bad.json()["field"] == "scope"


def test_a_bulk_import_revokes_where_an_accounts_last_imported_choice_is_a_deny(
    database: Database, ctx: ConsentContext, scenario_lake: Path, platform: dict[str, Release], tmp_path: Path
) -> None:
    lake = tmp_path / "import"
    (lake / "consent_events").mkdir(parents=True)
    (lake / "accounts").symlink_to(scenario_lake / "accounts", target_is_directory=True)
    later = NOW + timedelta(hours=1)
    rows = [(1, "deny", NOW), (8, "deny", NOW), (8, "allow", later)]  # 8 changed their mind again
    pq.write_table(
        pa.table(
            {
                "account_id": pa.array([r[0] for r in rows], pa.int64()),
                "setting": ["third_party_sharing"] * len(rows),
                "value": [r[1] for r in rows],
                "source": ["web"] * len(rows),
                "recorded_at": pa.array([r[2] for r in rows], pa.timestamp("us", tz="UTC")),
            }
        ),
        lake / "consent_events" / "part-0.parquet",
    )
    with database.write() as session:
        import_events(session, lake, ctx=ctx)
    found = all_revocations(database)
    assert found and {r.account_id for r in found} == {1}
    assert {r.release_id for r in found} == {platform["third"].id}


def test_warming_loads_every_published_releases_lineage(
    database: Database, platform: dict[str, Release]
) -> None:
    revocations.CACHE.clear()
    assert revocations.warm(database) == len(platform) * len(CATEGORIES)
    with database.write() as session:
        first = session.get(Release, platform["first"].id)
        assert first is not None
        first.status = "withdrawn"
    assert revocations.warm(database) == len(CATEGORIES)
