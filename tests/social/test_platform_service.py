"""Platform services beyond HTTP: the block switch, account deletion, the assistant's source seam."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import ValidationError

from consentry.api import create_app
from consentry.config import Settings
from consentry.consent.models import Subject
from consentry.consent.service import ConsentContext, change_settings
from consentry.db import Database
from consentry.errors import Forbidden, Gone, InvalidInput, NotFound
from consentry.retention.rules import DEFAULT_RULES
from consentry.retention.service import add_hold, apply, release_hold
from consentry.social import service
from consentry.social.models import AssistantInteraction, Post


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, True),
        ("1", True),
        ("on", True),
        ("TRUE", True),
        ("yes", True),
        ("0", False),
        ("off", False),
        ("No", False),
        ("false", False),
    ],
)
def test_blocked_can_read_is_a_setting_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: bool
) -> None:
    if raw is None:
        monkeypatch.delenv("CONSENTRY_BLOCKED_CAN_READ", raising=False)
    else:
        monkeypatch.setenv("CONSENTRY_BLOCKED_CAN_READ", raw)
    assert Settings().blocked_can_read is expected


def everyone(author_ids: Sequence[int]) -> set[int]:
    """A consent check that lets every author through (the service tests look at the other rules)."""
    return set(author_ids)


def test_blocked_can_read_rejects_nonsense_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSENTRY_BLOCKED_CAN_READ", "maybe")
    with pytest.raises(ValidationError) as error:
        Settings()
    assert [e["loc"] for e in error.value.errors()] == [("blocked_can_read",)]


def _pair(database: Database) -> tuple[int, int]:
    with database.write() as session:
        a = service.create_account(session, handle="a", country="US", birth_year=1990)
        b = service.create_account(session, handle="b", country="FR", birth_year=1980)
        return a.id, b.id


def test_the_switch_applies_to_the_running_service(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from consentry.auth.service import create_token

    monkeypatch.setenv("CONSENTRY_BLOCKED_CAN_READ", "off")
    settings = Settings(home=tmp_path / "home", database_url=database.url)
    a, b = _pair(database)
    with database.write() as session:
        post = service.create_post(session, author_id=a, text="hello")
        service.block(session, blocker_id=a, blocked_id=b)
        token = create_token(session, kind="account", account_id=b)
    with TestClient(create_app(settings, database=database, migrate=False)) as client:
        response = client.get(f"/v1/platform/posts/{post.id}", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 403 and "@a has blocked you" in response.json()["detail"]
        assert client.get(f"/v1/platform/posts/{post.id}").status_code == 200


def test_deleting_an_account_deletes_its_posts_and_relations(database: Database) -> None:
    a, b = _pair(database)
    with database.write() as session:
        own = service.create_post(session, author_id=a, text="mine")
        theirs = service.create_post(session, author_id=b, text="theirs")
        service.like_post(session, account_id=a, post_id=theirs.id)
        service.repost_post(session, account_id=a, post_id=theirs.id)
        service.follow(session, follower_id=a, followee_id=b)
        service.follow(session, follower_id=b, followee_id=a)
        service.chat(session, allowed=everyone, account_id=a, prompt="hello there")
    with database.write() as session:
        service.block(session, blocker_id=b, blocked_id=a)
        deleted = service.delete_account(session, account_id=a)
    with database.read() as session:
        assert session.get(Post, own.id).deleted_at == deleted.status_changed_at  # type: ignore[union-attr]
        assert session.get(Post, theirs.id).deleted_at is None  # type: ignore[union-attr]
        chats = session.scalars(sa.select(AssistantInteraction)).all()
        assert [c.deleted_at for c in chats] == [deleted.status_changed_at]
        for table in ("likes", "reposts", "follows", "blocks"):
            assert session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 0, table
        with pytest.raises(Gone):
            service.get_post(session, post_id=own.id, viewer_id=b)


def test_a_held_account_keeps_its_subject_mapping_until_retention_runs_after_the_release(
    database: Database, ctx: ConsentContext
) -> None:
    a, b = _pair(database)
    with database.write() as session:
        for account in (a, b):  # a choice each, so the ledger names both
            change_settings(
                session, account_id=account, changes={"assistant_realtime": "deny"}, client="web", ctx=ctx
            )
    with database.write() as session:
        add_hold(session, account_id=a, reason="litigation 2026-31", by="legal")
        service.delete_account(session, account_id=a)
        service.delete_account(session, account_id=b)
    with database.read() as session:
        named = set(session.scalars(sa.select(Subject.account_id)))
    assert a in named and b not in named  # the held account's history still names it
    apply(database, rules=DEFAULT_RULES)
    with database.read() as session:
        assert a in set(session.scalars(sa.select(Subject.account_id)))  # held: retention keeps it too
    with database.write() as session:
        release_hold(session, account_id=a, by="legal")
    apply(database, rules=DEFAULT_RULES)
    with database.read() as session:
        assert a not in set(session.scalars(sa.select(Subject.account_id)))


def test_accounts_need_an_iso_country(database: Database) -> None:
    with pytest.raises(InvalidInput) as error, database.write() as session:
        service.create_account(session, handle="uk", country="UK", birth_year=1990)
    assert error.value.field == "country"


def test_inactive_accounts_cannot_act(database: Database) -> None:
    a, b = _pair(database)
    with database.write() as session:
        post = service.create_post(session, author_id=b, text="hi")
        service.deactivate_account(session, account_id=a)
    for act in (
        lambda s: service.create_post(s, author_id=a, text="x"),
        lambda s: service.like_post(s, account_id=a, post_id=post.id),
        lambda s: service.follow(s, follower_id=a, followee_id=b),
        lambda s: service.block(s, blocker_id=a, blocked_id=b),
        lambda s: service.chat(s, allowed=everyone, account_id=a, prompt="hello"),
    ):
        with pytest.raises(Forbidden, match="deactivated"), database.write() as session:
            act(session)
    with database.write() as session, pytest.raises(NotFound):
        service.follow(session, follower_id=b, followee_id=a)  # a deactivated account is hidden


def test_realtime_sources_is_the_eligibility_seam(database: Database) -> None:
    a, b = _pair(database)
    with database.write() as session:
        old = service.create_post(session, author_id=b, text="Pizza night")
        service.create_post(session, author_id=b, text="Pasta night")
        new = service.create_post(session, author_id=b, text="More PIZZA_100% please")
        mine = service.create_post(session, author_id=a, text="pizza for me")
    with database.read() as session:
        found = service.realtime_sources(
            session, allowed=everyone, prompt="Any pizza tips?", viewer_id=a, limit=5
        )
        assert [p.id for p in found] == [mine.id, new.id, old.id]
        assert service.realtime_sources(session, allowed=everyone, prompt="100% ?", viewer_id=a) == []
        one = service.realtime_sources(session, allowed=everyone, prompt="pizza", viewer_id=a, limit=1)
        assert [p.id for p in one] == [mine.id]
    with database.write() as session:
        service.deactivate_account(session, account_id=b)
    with database.read() as session:
        assert [
            p.id for p in service.realtime_sources(session, allowed=everyone, prompt="pizza", viewer_id=a)
        ] == [mine.id]


def test_prompt_keywords() -> None:
    assert service.prompt_keywords("What are people saying about Sourdough and ramen?") == [
        "sourdough",
        "ramen",
    ]
    assert service.prompt_keywords("hi, 2024!") == []


def test_reply_counts_leave_out_deleted_replies(database: Database) -> None:
    a, b = _pair(database)
    with database.write() as session:
        post = service.create_post(session, author_id=a, text="question")
        service.create_post(session, author_id=b, text="answer", reply_to=post.id)
        gone = service.create_post(session, author_id=b, text="oops", reply_to=post.id)
        service.delete_post(session, account_id=b, post_id=gone.id)
    with database.read() as session:
        assert service.get_post(session, post_id=post.id, viewer_id=None).replies == 1


def test_the_switch_is_the_applications_setting(database: Database, tmp_path: Path) -> None:
    """The API takes the switch from the settings it was created with, not from the environment."""
    from consentry.auth.service import create_token

    a, b = _pair(database)
    with database.write() as session:
        post = service.create_post(session, author_id=a, text="hello")
        service.block(session, blocker_id=a, blocked_id=b)
        token = create_token(session, kind="account", account_id=b)
    for can_read, status in ((False, 403), (True, 200)):
        settings = Settings(home=tmp_path / "home", database_url=database.url, blocked_can_read=can_read)
        with TestClient(create_app(settings, database=database, migrate=False)) as client:
            response = client.get(
                f"/v1/platform/posts/{post.id}", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == status
