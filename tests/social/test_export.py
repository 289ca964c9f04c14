"""``consentry platform export``: the database written in the data contract, exactly, or not at all."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from consentry.config import Settings, get_settings
from consentry.consent import service as consent
from consentry.consent.service import ConsentContext
from consentry.db import Database
from consentry.errors import Conflict, InvalidInput
from consentry.lake import schema
from consentry.lake.check import check_lake
from consentry.social import service
from consentry.social.cli import platform_app
from consentry.social.models import Account, AssistantInteraction, Block, Follow, Post
from consentry.social.seed import export_lake, lake_source

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def everyone(author_ids: Sequence[int]) -> set[int]:
    """A consent check that lets every author through (the service tests look at the other rules)."""
    return set(author_ids)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes, microseconds=7)


def read(lake: Path, folder: schema.Folder) -> list[dict[str, Any]]:
    table = pq.read_table(lake / folder.name)
    assert table.schema.equals(folder.schema), (folder.name, table.schema)
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def platform(database: Database, ctx: ConsentContext) -> None:
    """A small platform touching every exported case: statuses, protection, replies, quotes, deletions,
    pending follows, blocks, chats, and consent events from a client, GPC, an admin and a deleted account."""
    with database.write() as session:
        ada = service.create_account(session, handle="ada", country="US", birth_year=1990, created_at=at(0))
        bruno = service.create_account(
            session, handle="bruno", country="de", birth_year=None, created_at=at(1)
        )
        bruno.protected = True
        chloe = service.create_account(
            session, handle="chloe", country="GB", birth_year=2001, created_at=at(2)
        )
        dario = service.create_account(
            session, handle="dario", country="CH", birth_year=1978, created_at=at(3)
        )
        first = service.create_post(session, author_id=ada.id, text="Hello, world 👋", at=at(10))
        service.create_post(session, author_id=ada.id, text="for friends", visibility="followers", at=at(11))
        gone = service.create_post(session, author_id=ada.id, text="oops", media="video", at=at(12))
        service.delete_post(session, account_id=ada.id, post_id=gone.id, at=at(13))
        service.follow(session, follower_id=bruno.id, followee_id=ada.id, at=at(14))
        service.follow(session, follower_id=chloe.id, followee_id=ada.id, at=at(15))
        service.follow(session, follower_id=ada.id, followee_id=bruno.id, at=at(16))  # pending: not exported
        service.create_post(session, author_id=bruno.id, text="reply", reply_to=first.id, at=at(17))
        service.create_post(
            session, author_id=chloe.id, text="quote", quote_of=first.id, media="image", at=at(18)
        )
        service.block(session, blocker_id=bruno.id, blocked_id=chloe.id, at=at(19))
        service.chat(
            session, allowed=everyone, account_id=ada.id, prompt="Tell me about the world", at=at(20)
        )
        old = service.chat(session, allowed=everyone, account_id=chloe.id, prompt="forget me", at=at(21))
        service.delete_interaction(session, account_id=chloe.id, interaction_id=old.interaction.id, at=at(22))
        service.create_post(session, author_id=dario.id, text="bye", at=at(23))
        ids = ada.id, chloe.id, dario.id
    ada_id, chloe_id, dario_id = ids
    with database.write() as session:
        consent.change_settings(
            session,
            account_id=ada_id,
            changes={"assistant_realtime": "deny"},
            client="ios",
            ctx=ctx,
            at=at(30),
        )
        consent.change_settings(
            session,
            account_id=ada_id,
            changes={"third_party_sharing": "deny"},
            client="web",
            source="gpc",
            ctx=ctx,
            at=at(31),
        )
        consent.change_settings(
            session,
            account_id=chloe_id,
            changes={"assistant_training_posts": "allow"},
            client="admin",
            source="admin",
            ctx=ctx,
            at=at(32),
        )
        consent.change_settings(
            session,
            account_id=dario_id,
            changes={"assistant_realtime": "deny"},
            client="web",
            ctx=ctx,
            at=at(33),
        )
        service.deactivate_account(session, account_id=chloe_id, at=at(40))
        service.delete_account(session, account_id=dario_id, at=at(41))


def test_export_holds_exactly_the_database_and_passes_the_contract(
    database: Database, ctx: ConsentContext, tmp_path: Path
) -> None:
    platform(database, ctx)
    report = export_lake(database, tmp_path / "lake")
    lake = tmp_path / "lake"
    assert check_lake(lake).violations == ()

    with database.read() as session:
        accounts = session.scalars(sa.select(Account).order_by(Account.id)).all()
        posts = session.scalars(sa.select(Post).order_by(Post.id)).all()
        chats = session.scalars(sa.select(AssistantInteraction).order_by(AssistantInteraction.id)).all()
        blocks = session.scalars(sa.select(Block)).all()
        follows = session.scalars(
            sa.select(Follow).where(Follow.pending.is_(False)).order_by(Follow.follower_id)
        ).all()
        session.expunge_all()  # keep the loaded rows after the read session ends
    assert read(lake, schema.ACCOUNTS) == [
        {
            "account_id": a.id,
            "handle": a.handle,
            "created_at": a.created_at,
            "country": a.country,
            "birth_year": a.birth_year,
            "protected": a.protected,
            "status": a.status,
            "status_changed_at": a.status_changed_at,
        }
        for a in accounts
    ]
    assert [a["status"] for a in read(lake, schema.ACCOUNTS)] == [
        "active",
        "active",
        "deactivated",
        "deleted",
    ]
    assert read(lake, schema.POSTS) == [
        {
            "post_id": p.id,
            "author_id": p.author_id,
            "created_at": p.created_at,
            "text": p.text,
            "visibility": p.visibility,
            "reply_to": p.reply_to,
            "quote_of": p.quote_of,
            "media": p.media,
            "deleted_at": p.deleted_at,
        }
        for p in posts
    ]
    assert read(lake, schema.POSTS)[0]["text"] == "Hello, world 👋"
    assert read(lake, schema.POSTS)[-1]["deleted_at"] == at(41)  # the deleted account's post
    assert read(lake, schema.ASSISTANT_INTERACTIONS) == [
        {
            "interaction_id": c.id,
            "account_id": c.account_id,
            "created_at": c.created_at,
            "prompt": c.prompt,
            "response": c.response,
            "deleted_at": c.deleted_at,
        }
        for c in chats
    ]
    assert read(lake, schema.BLOCKS) == [
        {"blocker_id": b.blocker_id, "blocked_id": b.blocked_id, "created_at": b.created_at} for b in blocks
    ]
    assert read(lake, schema.FOLLOWS) == [
        {"follower_id": f.follower_id, "followee_id": f.followee_id, "created_at": f.created_at}
        for f in follows
    ]
    assert len(follows) == 2
    ada, chloe = accounts[0].id, accounts[2].id
    assert read(lake, schema.CONSENT_EVENTS) == [  # the deleted account's event is anonymous: left out
        {
            "account_id": ada,
            "setting": "assistant_realtime",
            "value": "deny",
            "source": "ios",
            "recorded_at": at(30),
        },
        {
            "account_id": ada,
            "setting": "third_party_sharing",
            "value": "deny",
            "source": "gpc",
            "recorded_at": at(31),
        },
        {
            "account_id": chloe,
            "setting": "assistant_training_posts",
            "value": "allow",
            "source": "admin",
            "recorded_at": at(32),
        },
    ]
    assert report.rows == {
        "accounts": 4,
        "posts": 6,
        "assistant_interactions": 2,
        "blocks": 1,
        "follows": 2,
        "consent_events": 3,
    }


def test_an_empty_platform_exports_an_empty_valid_lake(database: Database, tmp_path: Path) -> None:
    report = export_lake(database, tmp_path / "lake")
    assert set(report.rows.values()) == {0}
    assert check_lake(tmp_path / "lake").ok


def test_nothing_is_written_when_the_export_cannot_be_complete(database: Database, tmp_path: Path) -> None:
    with database.write() as session:
        service.create_account(session, handle="nowhere", country=None, birth_year=1990)
    with pytest.raises(Conflict) as error:
        export_lake(database, tmp_path / "lake")
    assert error.value.field == "country" and "1 account(s)" in error.value.detail
    assert list(tmp_path.iterdir()) == []  # neither the lake nor a partial folder
    with pytest.raises(InvalidInput):
        export_lake(database, tmp_path / "lake", default_country="XX")
    export_lake(database, tmp_path / "lake", default_country="fr")
    assert [a["country"] for a in read(tmp_path / "lake", schema.ACCOUNTS)] == ["FR"]
    with pytest.raises(Conflict):  # the folder is not empty now
        export_lake(database, tmp_path / "lake", default_country="FR")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]


@pytest.mark.parametrize(
    ("source", "client", "expected"),
    [
        ("user", "android", "android"),
        ("user", "admin", "api"),
        ("gpc", "web", "gpc"),
        ("import", "import", "admin"),
    ],
)
def test_ledger_sources_map_to_the_contract(source: str, client: str, expected: str) -> None:
    assert lake_source(source, client) == expected


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("CONSENTRY_HOME", str(settings.home))
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", settings.database_url or "")
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_cli_export(env: Settings, database: Database, ctx: ConsentContext, tmp_path: Path) -> None:
    platform(database, ctx)
    runner = CliRunner()
    result = runner.invoke(platform_app, ["export", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "posts/" in result.output and check_lake(tmp_path / "out").ok
    again = runner.invoke(platform_app, ["export", str(tmp_path / "out")])
    assert again.exit_code == 1 and "not empty" in again.output + again.stderr
    bad = runner.invoke(platform_app, ["export", str(tmp_path / "other"), "--default-country", "ZZ"])
    assert bad.exit_code == 2 and not (tmp_path / "other").exists()
