"""A retention purge of released records creates revocations (reason ``retention_purge``) for exactly
the released records it removed, in the purge's transaction."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select, update
from tests.datasets.conftest import CATEGORIES, build
from tests.datasets.scenario import write_scenario

from consentry.consent.service import ConsentContext
from consentry.datasets import service as datasets
from consentry.datasets.models import Release
from consentry.db import Database, utcnow
from consentry.partners import revocations
from consentry.partners.models import OutboxMessage, Revocation
from consentry.retention import service
from consentry.retention.rules import DEFAULT_RULES
from consentry.social.models import AssistantInteraction, Post
from consentry.social.seed import seed_from_lake


@pytest.fixture(scope="module")
def scenario_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scenario(tmp_path_factory.mktemp("scenario") / "lake")


@pytest.fixture
def released(database: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path) -> Release:
    """The datasets scenario seeded into the platform, with a published release to a partner."""
    revocations.CACHE.clear()
    seed_from_lake(database, scenario_lake, ctx=ctx)
    with database.write() as session:
        partner = datasets.add_recipient(
            session, name="partner", kind="third_party", purposes=["train-ai"], categories=CATEGORIES
        )
        partner.webhook_url = "http://127.0.0.1:9/hooks"  # revocations queue a webhook for it
        partner.webhook_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    return build(
        database, ctx, scenario_lake, tmp_path / "release", recipient="partner", categories=CATEGORIES
    )


def shard_ids(release: Release, category: str) -> set[int]:
    return set(pq.read_table(Path(release.path) / "data" / category).column("id").to_pylist())


def ids(database: Database, model: type[Post] | type[AssistantInteraction]) -> set[int]:
    with database.read() as session:
        return set(session.scalars(select(model.id)))


def test_purged_released_records_are_revoked(database: Database, released: Release) -> None:
    posts, chats = shard_ids(released, "posts"), shard_ids(released, "assistant_interactions")
    assert posts and chats
    post, chat = min(posts), min(chats)
    long_ago = utcnow() - timedelta(days=60)
    with database.write() as session:  # deleted long ago, before revocations were kept
        session.execute(update(Post).where(Post.id == post).values(deleted_at=long_ago))
        session.execute(
            update(AssistantInteraction).where(AssistantInteraction.id == chat).values(deleted_at=long_ago)
        )
    before_posts, before_chats = ids(database, Post), ids(database, AssistantInteraction)
    report = service.apply(database, rules=DEFAULT_RULES)
    purged_posts = before_posts - ids(database, Post)
    purged_chats = before_chats - ids(database, AssistantInteraction)
    assert post in purged_posts and chat in purged_chats

    with database.read() as session:
        found = list(session.scalars(select(Revocation).where(Revocation.reason == "retention_purge")))
        revoked = {
            category: {i for r in found if r.category == category for i in r.record_ids}
            for category in CATEGORIES
        }
        assert {r.release_id for r in found} == {released.id}
        assert all(r.account_id is not None for r in found)
        messages = session.scalars(
            select(OutboxMessage).where(OutboxMessage.event_type == "revocation.created")
        )
        assert {m.payload["data"]["id"] for m in messages} >= {r.id for r in found}
    assert revoked["posts"] == purged_posts & posts
    assert revoked["assistant_interactions"] == purged_chats & chats
    assert report.revocations == len(found)
    # nothing left to purge, nothing revoked twice
    again = service.apply(database, rules=DEFAULT_RULES)
    assert again.revocations == 0 and again.rows_removed == 0
