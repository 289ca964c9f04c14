"""The signals of the request path (``current_usage``): answered from the process's consent state, equal
to an evaluation at the time of the call, and never outliving a change made by another process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentry.api import create_app
from consentry.config import Settings
from consentry.consent.service import ConsentContext, change_settings
from consentry.db import Database
from consentry.signals import RESTRICTIVE, Usage, current_signal_headers, current_usage, usage_many
from consentry.social.service import create_post
from tests.conftest import make_account, reset

CREATED = datetime(2020, 1, 1, tzinfo=UTC)
ALLOW = "train-ai=y, ai-use=y"
DENY = "train-ai=n, ai-use=n"


def test_agrees_with_the_evaluation_now(database: Database, ctx: ConsentContext) -> None:
    authors = {
        country: make_account(database, handle=f"a_{country or 'none'}", country=country, created_at=CREATED)[
            0
        ]
        for country in ("US", "DE", "GB", None)
    }
    minor, _ = make_account(database, handle="minor", birth_year=datetime.now(UTC).year - 10)
    with database.write() as session:
        at = datetime.now(UTC) - timedelta(days=1)
        change_settings(session, account_id=authors["US"], changes={"third_party_sharing": "deny"},
                        client="web", ctx=ctx, at=at)  # fmt: skip
        change_settings(session, account_id=authors["DE"], changes={"third_party_sharing": "allow"},
                        client="web", ctx=ctx, at=at)  # fmt: skip
    ids = [*authors.values(), minor, 987_654]
    found = current_usage(database, author_ids=ids, ctx=ctx)
    with database.read() as session:
        assert found == usage_many(session, author_ids=ids, ctx=ctx)
    assert found[authors["DE"]] == Usage(train_ai=True, ai_input=True)
    assert found[authors["US"]] == found[minor] == found[987_654] == RESTRICTIVE
    assert current_usage(database, author_ids=[], ctx=ctx) == {}


def test_any_failure_is_restrictive(
    database: Database, ctx: ConsentContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    author, _ = make_account(database, created_at=CREATED)
    assert current_signal_headers(database, author_id=author, ctx=ctx) == {"Content-Usage": ALLOW}

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr("consentry.eligibility.cache.probe", broken)
    assert current_signal_headers(database, author_id=author, ctx=ctx) == RESTRICTIVE.headers()


def elsewhere(database: Database, script: str) -> None:
    """Run ``script`` in another process on the same database (``database`` and ``ctx`` are defined)."""
    prelude = f"""
        from datetime import UTC, datetime, timedelta
        from pathlib import Path
        import tempfile
        import consentry.wiring  # an entry point wires the domains together
        from consentry.config import Settings
        from consentry.consent.service import ConsentContext, change_settings
        from consentry.db import Database
        from consentry.social.service import deactivate_account
        database = Database({database.url!r})
        ctx = ConsentContext.from_settings(Settings(home=Path(tempfile.mkdtemp()), database_url=database.url))
    """
    code = textwrap.dedent(prelude) + textwrap.dedent(script)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_another_process_changes_are_seen_at_once(app: FastAPI, database: Database) -> None:
    """A choice, a policy version and an account change, each committed by another process, are in the
    very next response's signals of a server that had the old answer in its state."""
    author, token = make_account(database, handle="author", country="US", created_at=CREATED)
    other, _ = make_account(database, handle="other", country="US", created_at=CREATED)
    with database.write() as session:
        post = create_post(session, author_id=author, text="hello").id
        other_post = create_post(session, author_id=other, text="hi").id

    def usage(client: TestClient, post_id: int) -> str:
        response = client.get(f"/v1/platform/posts/{post_id}")
        assert response.status_code == 200, response.text
        return response.headers["content-usage"]

    with TestClient(app) as client:
        assert usage(client, post) == ALLOW
        elsewhere(
            database,
            f"""
            with database.write() as session:
                change_settings(session, account_id={author}, changes={{"third_party_sharing": "deny"}},
                                client="web", ctx=ctx)
        """,
        )
        assert usage(client, post) == DENY
        assert usage(client, other_post) == ALLOW
        elsewhere(
            database,
            f"""
            with database.write() as session:
                change_settings(session, account_id={author}, changes={{"third_party_sharing": "allow"}},
                                client="web", ctx=ctx)
        """,
        )
        assert usage(client, post) == ALLOW
        # a policy version that took effect a moment ago, written directly by another process (the
        # service refuses retroactive versions; the state must not depend on that)
        elsewhere(
            database,
            """
            from consentry.consent.models import PolicyVersion
            with database.write() as session:
                now = datetime.now(UTC)
                session.add(PolicyVersion(
                    version=2, effective_at=now - timedelta(seconds=1), applies_to="all", title="deny",
                    defaults={"default": {"third_party_sharing": "deny"}}, created_at=now, created_by="test",
                ))
        """,
        )
        assert usage(client, other_post) == DENY  # its default changed
        assert usage(client, post) == ALLOW  # an explicit choice outranks any default
        elsewhere(
            database,
            f"""
            with database.write() as session:
                deactivate_account(session, account_id={author})
        """,
        )
        assert client.get(f"/v1/platform/posts/{post}").status_code == 404  # hidden from others
        own = client.get(f"/v1/platform/posts/{post}", headers={"Authorization": f"Bearer {token}"})
        assert own.status_code == 200 and own.headers["content-usage"] == DENY  # inactive: fail closed


def test_a_second_application_on_the_same_database(app: FastAPI, database: Database) -> None:
    """Two application instances on one database: a choice through one is in the other's next answer."""
    author, token = make_account(database, handle="author", country="US", created_at=CREATED)
    with database.write() as session:
        post = create_post(session, author_id=author, text="hello").id
    second = create_app(app.state.settings, database=Database(database.url), migrate=False)
    with TestClient(app) as reader, TestClient(second) as writer:
        assert reader.get(f"/v1/platform/posts/{post}").headers["content-usage"] == ALLOW
        changed = writer.put(
            "/v1/me/settings",
            headers={"Authorization": f"Bearer {token}"},
            json={"settings": {"third_party_sharing": "deny"}},
        )
        assert changed.status_code == 200, changed.text
        assert reader.get(f"/v1/platform/posts/{post}").headers["content-usage"] == DENY
        listing = reader.get(f"/v1/platform/accounts/{author}/posts")
        assert listing.status_code == 200 and listing.headers["content-usage"] == DENY


def test_a_refresh_never_waits_for_a_connection_its_request_holds(
    postgres_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post read whose signals need the consent state refreshed (another account changed a choice)
    must not hold its own connection while the refresh asks the pool for more: with every connection
    held by such requests, each would wait for the others until the pool gave up, and then answer the
    restrictive signals of a failure instead of the author's choice."""
    database = postgres_database  # PostgreSQL's engine is one pool; SQLite's engines are set up apart
    reset(database)
    settings = Settings(home=tmp_path / "home", database_url=database.url)
    ctx = ConsentContext.from_settings(settings)
    monkeypatch.setattr("consentry.db.POOL_SIZE", 2)  # one connection per engine, none beyond
    monkeypatch.setattr("consentry.db.POOL_OVERFLOW", 0)
    small = Database(database.url)
    small.engine.pool._timeout = 3  # type: ignore[attr-defined]  # a deadlock fails in seconds, not 30
    author, _ = make_account(database, handle="author", country="US", created_at=CREATED)
    other, _ = make_account(database, handle="other", country="US", created_at=CREATED)
    with database.write() as session:
        post = create_post(session, author_id=author, text="hello").id
    app = create_app(settings, database=small, migrate=False)
    with TestClient(app) as client:
        assert client.get(f"/v1/platform/posts/{post}").headers["content-usage"] == ALLOW
        with database.write() as session:  # the state is stale now, the author's answer is not
            change_settings(session, account_id=other, changes={"third_party_sharing": "deny"},
                            client="web", ctx=ctx)  # fmt: skip
        response = client.get(f"/v1/platform/posts/{post}")
    small.engine.dispose()
    assert response.status_code == 200
    assert response.headers["content-usage"] == ALLOW
