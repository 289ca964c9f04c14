"""Seeding the platform from a generated lake, and ``consentry demo``'s small generated platform."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from consentry.config import Settings, get_settings
from consentry.consent import ledger
from consentry.consent.service import ConsentContext
from consentry.db import Database
from consentry.demo import DEMO_ACCOUNTS, DEMO_PROMPT, seed_demo
from consentry.errors import Conflict, InvalidInput
from consentry.lake import schema
from consentry.lake.generate import generate_lake
from consentry.social import service
from consentry.social.cli import platform_app
from consentry.social.models import Post
from consentry.social.seed import export_lake, seed_from_lake

KEYS = {
    "accounts": ["account_id"],
    "posts": ["post_id"],
    "assistant_interactions": ["interaction_id"],
    "blocks": ["blocker_id", "blocked_id"],
    "follows": ["follower_id", "followee_id"],
    "consent_events": ["recorded_at", "account_id", "setting"],
}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lakes") / "lake"
    generate_lake(path, accounts=300, posts=3_000, seed=11)
    return path


def table(lake: Path, folder: str) -> pa.Table:
    data = pq.read_table(lake / folder).cast(schema.FOLDERS_BY_NAME[folder].schema)
    return data.sort_by([(key, "ascending") for key in KEYS[folder]])


def rows(database: Database, name: str) -> int:
    with database.read() as session:
        return int(session.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one())


def test_seed_then_export_gives_back_the_lake(
    database: Database, ctx: ConsentContext, lake: Path, tmp_path: Path
) -> None:
    report = seed_from_lake(database, lake, ctx=ctx)
    assert report.account_offset == report.post_offset == 0
    assert report.rows == {folder: table(lake, folder).num_rows for folder in KEYS}
    with database.read() as session:
        assert ledger.verify(session).ok
    export_lake(database, tmp_path / "out")
    for folder in KEYS:
        assert table(tmp_path / "out", folder).equals(table(lake, folder)), folder


def test_seeding_a_used_database_shifts_ids_and_sequences_go_on(
    database: Database, ctx: ConsentContext, lake: Path
) -> None:
    with database.write() as session:
        first = service.create_account(session, handle="first", country="US", birth_year=1990)
        before = service.create_post(session, author_id=first.id, text="the very first post")
    report = seed_from_lake(database, lake, ctx=ctx)
    assert (report.account_offset, report.post_offset) == (first.id, before.id)
    posts = table(lake, "posts")
    reply = posts.filter(pc.is_valid(posts["reply_to"])).slice(0, 1).to_pylist()[0]
    events = table(lake, "consent_events")
    owners = set(events["account_id"].to_pylist())
    with database.read() as session:
        stored = session.get(Post, reply["post_id"] + report.post_offset)
        assert stored is not None
        shifted = (reply["author_id"] + first.id, reply["reply_to"] + before.id)
        assert (stored.author_id, stored.reply_to) == shifted
        mapped = session.execute(sa.text("SELECT account_id FROM consent_subjects")).scalars().all()
        assert set(mapped) == {owner + first.id for owner in owners}
    with database.write() as session:  # new rows get ids after the seeded ones (PostgreSQL sequences too)
        post = service.create_post(session, author_id=first.id, text="after the seed")
        account = service.create_account(session, handle="last", country="US", birth_year=1990)
    assert post.id == before.id + posts.num_rows + 1 and account.id == first.id + 301


def test_a_failed_seed_writes_nothing(
    database: Database, ctx: ConsentContext, lake: Path, tmp_path: Path
) -> None:
    seed_from_lake(database, lake, ctx=ctx)
    before = {name: rows(database, name) for name in ("accounts", "posts", "consent_events")}
    with pytest.raises(Conflict) as error:
        seed_from_lake(database, lake, ctx=ctx)  # every handle is taken now
    assert error.value.field == "handle" and "300 handle(s)" in error.value.detail

    broken = tmp_path / "broken"
    shutil.copytree(lake, broken)
    posts = pq.read_table(broken / "posts")
    for path in (broken / "posts").iterdir():
        path.unlink()
    dangling = pc.add(posts["author_id"], pa.scalar(10_000, pa.int64()))
    pq.write_table(posts.set_column(1, "author_id", dangling), broken / "posts" / "part-0.parquet")
    with pytest.raises(InvalidInput) as invalid:
        seed_from_lake(database, broken, ctx=ctx)
    assert "posts.author_id" in invalid.value.detail
    assert {name: rows(database, name) for name in before} == before


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("CONSENTRY_HOME", str(settings.home))
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", settings.database_url or "")
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_cli_seed(env: Settings, database: Database, lake: Path) -> None:
    result = CliRunner().invoke(platform_app, ["seed", str(lake)])
    assert result.exit_code == 0, result.output
    assert "posts/" in result.output and rows(database, "posts") == 3_000


def test_demo_seeds_a_platform_once_and_it_can_be_used(
    database: Database, settings: Settings, client: TestClient
) -> None:
    info = seed_demo(database, settings=settings, accounts=200, posts=1_500)
    assert info.seeded is not None and info.seeded.rows["accounts"] == 200
    assert list(info.account_tokens) == [handle for handle, _, _ in DEMO_ACCOUNTS]
    assert info.sample_post_id is not None and info.sample_author is not None
    commands = "\n".join(info.try_commands("http://127.0.0.1:8000"))
    assert "/v1/platform/posts" in commands and "/v1/platform/assistant/chat" in commands

    again = seed_demo(database, settings=settings, accounts=200, posts=1_500)
    assert again.seeded is None and rows(database, "accounts") == 205
    assert again.account_tokens["ada"][0] == info.account_tokens["ada"][0]

    headers = {"Authorization": f"Bearer {again.account_tokens['ada'][1]}"}
    assert (
        client.post("/v1/platform/posts", headers=headers, json={"text": "Hello from the demo"}).status_code
        == 201
    )
    assert client.get(f"/v1/platform/posts/{info.sample_post_id}", headers=headers).status_code == 200
    author_id, author = info.sample_author
    assert client.post(f"/v1/platform/accounts/{author_id}/block", headers=headers).status_code == 200
    refused = client.post(f"/v1/platform/posts/{info.sample_post_id}/like", headers=headers)
    assert refused.status_code == 403 and f"@{author}" in refused.json()["detail"]
    chat = client.post("/v1/platform/assistant/chat", headers=headers, json={"prompt": DEMO_PROMPT})
    assert chat.status_code == 201 and chat.json()["response"]
