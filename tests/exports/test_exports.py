"""Account data exports: exactly the account's own data, a job lifecycle, isolation between accounts."""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from consentry.config import Settings, get_settings
from consentry.consent import ledger
from consentry.consent.models import Notification
from consentry.consent.receipts import verify_receipt
from consentry.consent.service import ConsentContext, change_settings, settings_view
from consentry.db import Database, utcnow
from consentry.errors import Gone, NotFound
from consentry.exports import sections, service
from consentry.exports.models import ExportJob
from consentry.links.service import import_links, request_link
from consentry.social import service as social
from consentry.transparency.service import latest_checkpoint
from tests.conftest import make_account

FILES = {
    "manifest.json",
    "README.txt",
    "account.json",
    "settings.json",
    "consent_history.jsonl",
    "receipts.jsonl",
    "receipt-key.json",
    "posts.jsonl",
    "assistant_interactions.jsonl",
    "follows.jsonl",
    "blocks.jsonl",
    "likes.jsonl",
    "reposts.jsonl",
    "notifications.jsonl",
    "data_usage.json",
}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def no_sources(ids: Any) -> set[int]:
    return set()


def build_world(database: Database, ctx: ConsentContext) -> dict[str, Any]:
    """Two accounts, ada and bob, that know each other: posts, chats, follows, blocks, likes, choices."""
    ada, ada_token = make_account(database, handle="ada", country="US")
    bob, bob_token = make_account(database, handle="bob", country="DE")
    eve, _ = make_account(database, handle="eve", country="FR")
    with database.write() as session:
        ada_posts = [
            social.create_post(session, author_id=ada, text=f"ada secret-ada-post-{i}").id for i in range(3)
        ]
        followers_only = social.create_post(
            session, author_id=ada, text="ada followers only", visibility="followers"
        ).id
        bob_posts = [
            social.create_post(session, author_id=bob, text=f"bob secret-bob-post-{i}").id for i in range(2)
        ]
        social.delete_post(session, account_id=ada, post_id=ada_posts[1])
        ada_chat = social.chat(session, account_id=ada, prompt="ada secret-ada-prompt", allowed=no_sources)
        gone_chat = social.chat(session, account_id=ada, prompt="ada deleted prompt", allowed=no_sources)
        social.chat(session, account_id=bob, prompt="bob secret-bob-prompt", allowed=no_sources)
        social.delete_interaction(session, account_id=ada, interaction_id=gone_chat.interaction.id)
        social.follow(session, follower_id=ada, followee_id=bob)
        social.follow(session, follower_id=bob, followee_id=ada)
        social.follow(session, follower_id=bob, followee_id=eve)
        social.block(session, blocker_id=ada, blocked_id=eve)
        social.block(session, blocker_id=eve, blocked_id=bob)
        social.like_post(session, account_id=ada, post_id=bob_posts[0])
        social.repost_post(session, account_id=ada, post_id=bob_posts[1])
        social.like_post(session, account_id=bob, post_id=ada_posts[0])
        change_settings(
            session, account_id=ada, changes={"assistant_realtime": "deny"}, client="ios", ctx=ctx
        )
        change_settings(
            session,
            account_id=bob,
            changes={"assistant_realtime": "allow", "third_party_sharing": "allow"},
            client="web",
            ctx=ctx,
        )
        change_settings(
            session, account_id=ada, changes={"third_party_sharing": "deny"}, client="android", ctx=ctx
        )
        now = utcnow()
        session.add(Notification(account_id=ada, kind="policy_change", payload={"n": 1}, created_at=now))
        session.add(Notification(account_id=bob, kind="policy_change", payload={"n": 2}, created_at=now))
    return {
        "ada": ada,
        "bob": bob,
        "eve": eve,
        "ada_token": ada_token,
        "bob_token": bob_token,
        "ada_posts": [*ada_posts, followers_only],
        "deleted_post": ada_posts[1],
        "bob_posts": bob_posts,
        "ada_chats": [ada_chat.interaction.id, gone_chat.interaction.id],
        "deleted_chat": gone_chat.interaction.id,
    }


def read_zip(data: bytes) -> dict[str, Any]:
    """Every member, parsed (JSON, JSON lines, or text); checks the manifest's sizes and digests."""
    parsed: dict[str, Any] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert all(info.date_time[0] >= 2026 for info in archive.infolist())  # dated generated_at
        raw = {name: archive.read(name) for name in archive.namelist()}
    for name, content in raw.items():
        if name.endswith(".jsonl"):
            parsed[name] = [json.loads(line) for line in content.decode().splitlines()]
        elif name.endswith(".json"):
            parsed[name] = json.loads(content)
        else:
            parsed[name] = content.decode()
    manifest = parsed["manifest.json"]
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) | {"manifest.json"} == set(raw)
    for name, entry in listed.items():
        if name == "manifest.json":
            continue
        assert entry["bytes"] == len(raw[name])
        assert entry["sha256"] == hashlib.sha256(raw[name]).hexdigest()
        if name.endswith(".jsonl"):
            assert entry["records"] == len(parsed[name])
    parsed["_raw"] = b"".join(raw.values())
    return parsed


def test_export_holds_exactly_the_accounts_own_data(
    database: Database, ctx: ConsentContext, tmp_path: Path
) -> None:
    world = build_world(database, ctx)
    ada, bob, eve = world["ada"], world["bob"], world["eve"]
    summary = service.write_export(database, account_id=ada, ctx=ctx, out=tmp_path / "ada.zip")
    data = (tmp_path / "ada.zip").read_bytes()
    assert summary.bytes == len(data) and summary.sha256 == hashlib.sha256(data).hexdigest()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    export = read_zip(data)
    assert set(export) - {"_raw"} == FILES

    manifest = export["manifest.json"]
    assert manifest["schema"] == service.SCHEMA and manifest["schema_version"] == 1
    assert manifest["account_id"] == ada and manifest["generated_at"].endswith("Z")
    assert export["account.json"]["handle"] == "ada" and export["account.json"]["jurisdiction"] == "default"

    posts = {p["post_id"]: p for p in export["posts.jsonl"]}
    assert sorted(posts) == sorted(world["ada_posts"])
    assert posts[world["deleted_post"]]["text"] is None and posts[world["deleted_post"]]["deleted_at"]
    live = [p for pid, p in posts.items() if pid != world["deleted_post"]]
    assert all(p["text"].startswith("ada") and p["deleted_at"] is None for p in live)

    chats = {c["interaction_id"]: c for c in export["assistant_interactions.jsonl"]}
    assert sorted(chats) == sorted(world["ada_chats"])
    assert chats[world["deleted_chat"]]["prompt"] is None and chats[world["deleted_chat"]]["response"] is None

    follows = {(f["direction"], f["account_id"]) for f in export["follows.jsonl"]}
    assert follows == {("following", bob), ("follower", bob)}
    assert [b["account_id"] for b in export["blocks.jsonl"]] == [eve]  # not eve's block of bob
    assert [x["post_id"] for x in export["likes.jsonl"]] == [world["bob_posts"][0]]
    assert [x["post_id"] for x in export["reposts.jsonl"]] == [world["bob_posts"][1]]
    assert [n["payload"] for n in export["notifications.jsonl"]] == [{"n": 1}]

    with database.read() as session:
        expected = settings_view(session, account_id=ada, ctx=ctx)
        ada_seqs = [e.seq for e in sections._events(session, ledger.subject_key_for(session, ada))]
    settings = {s["key"]: s for s in export["settings.json"]["settings"]}
    assert {k: (s["value"], s["basis"]) for k, s in settings.items()} == {
        s.key: (s.value, s.basis) for s in expected
    }
    assert settings["assistant_realtime"]["source"] == "explicit"
    assert settings["assistant_realtime"]["value"] == "deny"
    assert settings["assistant_training_posts"]["source"] == "default"

    history = export["consent_history.jsonl"]
    assert [e["seq"] for e in history] == ada_seqs and len(history) == 2
    assert [(e["setting"], e["value"], e["client"]) for e in history] == [
        ("assistant_realtime", "deny", "ios"),
        ("third_party_sharing", "deny", "android"),
    ]
    [key] = export["receipt-key.json"]["keys"]
    receipts = export["receipts.jsonl"]
    assert [verify_receipt(r, key)["chain"]["seq"] for r in receipts] == ada_seqs

    raw = export["_raw"]
    for secret in (b"secret-bob-post", b"secret-bob-prompt", b'"n": 2', b'"n":2'):
        assert secret not in raw
    assert b"bob secret" not in raw and b"followers only" in raw


def test_job_lifecycle_through_the_api(
    client: TestClient,
    database: Database,
    ctx: ConsentContext,
    settings: Settings,
    run_jobs: Callable[[], int],
) -> None:
    world = build_world(database, ctx)
    headers = auth(world["ada_token"])
    assert client.get("/v1/me/export", headers=headers).status_code == 404

    started = client.post("/v1/me/export", headers=headers)
    assert started.status_code == 202, started.text
    job = started.json()
    assert started.headers["location"] == f"/v1/me/exports/{job['id']}"
    assert job["id"].startswith("exp_") and job["account_id"] == world["ada"]
    assert job["status"] == "queued"
    assert client.post("/v1/me/export", headers=headers).json()["id"] == job["id"]  # one at a time
    assert run_jobs() == 1

    shown = client.get(started.headers["location"], headers=headers).json()
    assert shown["status"] == "succeeded", shown
    assert shown["done"] == shown["total"] > 0 and shown["stage"] == "done"
    assert shown["download_url"] == f"/v1/me/exports/{job['id']}/download"
    assert shown["expires_at"] and shown["sha256"]
    assert client.get("/v1/me/export", headers=headers).json()["id"] == job["id"]

    download = client.get(shown["download_url"], headers=headers)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    assert "attachment" in download.headers["content-disposition"]
    assert hashlib.sha256(download.content).hexdigest() == shown["sha256"]
    export = read_zip(download.content)
    assert sorted(p["post_id"] for p in export["posts.jsonl"]) == sorted(world["ada_posts"])
    stored = Path(settings.home) / "exports" / str(world["ada"]) / f"{job['id']}.zip"
    assert stored.is_file()

    again = client.post("/v1/me/export", headers=headers, json={"account_id": world["ada"]})
    assert again.status_code == 202 and again.json()["id"] != job["id"]
    assert client.get("/v1/me/export", headers=headers).json()["id"] == again.json()["id"]
    listed = client.get("/v1/me/exports", headers=headers).json()
    assert [j["id"] for j in listed] == [again.json()["id"], job["id"]]


def test_another_accounts_export_is_not_found_and_cannot_be_requested(
    client: TestClient, database: Database, ctx: ConsentContext, admin_token: str
) -> None:
    world = build_world(database, ctx)
    ada, bob = auth(world["ada_token"]), auth(world["bob_token"])
    job = client.post("/v1/me/export", headers=ada).json()

    for path in (f"/v1/me/exports/{job['id']}", f"/v1/me/exports/{job['id']}/download"):
        answer = client.get(path, headers=bob)
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        missing = client.get(path.replace(job["id"], "exp_000000000000000000000000"), headers=bob)
        assert missing.status_code == 404 and missing.json()["title"] == answer.json()["title"]
    assert client.get("/v1/me/export", headers=bob).status_code == 404  # ada's job is not bob's latest

    def count() -> int:
        with database.read() as session:
            return int(session.scalar(sa.select(sa.func.count()).select_from(ExportJob)) or 0)

    before = count()
    for refused in (
        client.post("/v1/me/export", headers=bob, params={"account_id": world["ada"]}),
        client.post("/v1/me/export", headers=bob, json={"account_id": world["ada"]}),
        client.get("/v1/me/export", headers=bob, params={"account_id": world["ada"]}),
    ):
        assert refused.status_code == 403, refused.text
        assert refused.json()["field"] == "account_id" and "own account" in refused.json()["detail"]
    assert client.post("/v1/me/export", headers=auth(admin_token)).status_code == 403
    assert client.post("/v1/me/export", headers=bob, json={"format": "csv"}).status_code == 422
    assert count() == before


def test_export_of_unknown_or_deleted_accounts(
    database: Database, ctx: ConsentContext, tmp_path: Path
) -> None:
    with pytest.raises(NotFound):
        service.write_export(database, account_id=404, ctx=ctx, out=tmp_path / "out" / "x.zip")
    assert list((tmp_path / "out").iterdir()) == []  # no partial file left behind
    ada, _ = make_account(database, handle="ada")
    with database.write() as session:
        social.delete_account(session, account_id=ada)
    with database.write() as session, pytest.raises(Gone):
        service.request_export(session, account_id=ada, requested_by="test")


def test_cli_export(
    database: Database,
    ctx: ConsentContext,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from consentry.cli import app

    world = build_world(database, ctx)
    monkeypatch.setenv("CONSENTRY_HOME", str(settings.home))
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", settings.database_url or "")
    get_settings.cache_clear()
    try:
        out = tmp_path / "bob.zip"
        runner = CliRunner()
        result = runner.invoke(app, ["account", "export", str(world["bob"]), "--out", str(out)])
        assert result.exit_code == 0, result.output
        export = read_zip(out.read_bytes())
        assert sorted(p["post_id"] for p in export["posts.jsonl"]) == sorted(world["bob_posts"])
        again = runner.invoke(app, ["account", "export", str(world["bob"]), "--out", str(out)])
        assert again.exit_code == 2
        missing = runner.invoke(app, ["account", "export", "999999", "--out", str(tmp_path / "n.zip")])
        assert missing.exit_code == 1 and not (tmp_path / "n.zip").exists()
    finally:
        get_settings.cache_clear()


def test_a_linked_export_holds_each_linked_accounts_own_export(
    database: Database,
    ctx: ConsentContext,
    tmp_path: Path,
    client: TestClient,
    run_jobs: Callable[[], int],
) -> None:
    """Under linked/<id>/ each linked account's files are byte for byte those of its own export."""
    world = build_world(database, ctx)
    ada, bob, eve = world["ada"], world["bob"], world["eve"]
    with database.write() as session:
        import_links(session, [(ada, bob)])
        request_link(session, account_id=ada, other_id=eve)  # never confirmed: not exported
        change_settings(
            session,
            account_id=ada,
            changes={"assistant_training_posts": "deny"},
            client="web",
            ctx=ctx,
            scope="linked",
        )
    with database.read() as session:
        size = max(head.seq for head in ledger.heads(session))
    deadline = time.monotonic() + 30
    while True:  # the app's publisher signs these events: every export below then cites that checkpoint
        with database.read() as session:
            latest = latest_checkpoint(session)
            signed = 0 if latest is None else latest.size
        if signed >= size:
            break
        assert time.monotonic() < deadline, f"no checkpoint of the ledger's {size} events"
        time.sleep(0.05)
    now = utcnow()
    service.write_export(database, account_id=ada, ctx=ctx, out=tmp_path / "ada.zip", now=now, scope="linked")
    service.write_export(database, account_id=ada, ctx=ctx, out=tmp_path / "alone.zip", now=now)
    service.write_export(database, account_id=bob, ctx=ctx, out=tmp_path / "bob.zip", now=now)
    linked = read_zip((tmp_path / "ada.zip").read_bytes())
    alone = read_zip((tmp_path / "alone.zip").read_bytes())
    own = read_zip((tmp_path / "bob.zip").read_bytes())
    prefix = f"linked/{bob}/"
    assert set(linked) - {"_raw"} == FILES | {
        prefix + name for name in FILES - {"manifest.json", "README.txt", "receipt-key.json"}
    }
    assert set(alone) - {"_raw"} == FILES and alone["manifest.json"]["linked_accounts"] == []
    assert linked["manifest.json"]["scope"] == "linked" and linked["manifest.json"]["linked_accounts"] == [
        bob
    ]
    for name in FILES - {"manifest.json", "README.txt", "receipt-key.json"}:
        assert linked[prefix + name] == own[name], name
        assert linked[name] == alone[name], name
    assert "linked/<account id>/" in linked["README.txt"]
    chooser = next(e for e in linked["consent_history.jsonl"] if e["chosen_by"])["chosen_by"]
    assert chooser == next(e["subject_key"] for e in linked["consent_history.jsonl"])
    assert [e["chosen_by"] for e in linked[prefix + "consent_history.jsonl"]][-1] == chooser
    key = linked["receipt-key.json"]["keys"][0]
    for signed in linked[prefix + "receipts.jsonl"]:
        verify_receipt(signed, key)

    # through the API: the scope is part of the job; an account export and a linked one can queue side by side
    started = client.post("/v1/me/export", headers=auth(world["ada_token"]), json={"scope": "linked"})
    assert started.status_code == 202 and started.json()["scope"] == "linked"
    plain = client.post("/v1/me/export", headers=auth(world["ada_token"]))
    assert plain.json()["id"] != started.json()["id"] and plain.json()["scope"] == "account"
    assert run_jobs() == 2
    job = client.get(started.headers["Location"], headers=auth(world["ada_token"])).json()
    assert job["status"] == "succeeded", job
    download = client.get(job["download_url"], headers=auth(world["ada_token"]))
    assert read_zip(download.content)["manifest.json"]["linked_accounts"] == [bob]
    bad = client.post("/v1/me/export", headers=auth(world["ada_token"]), json={"scope": "everyone"})
    assert bad.status_code == 422 and bad.json()["field"] == "scope"
