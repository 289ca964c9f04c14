"""Fixtures of the web tests: a seeded platform served by uvicorn, and Debian's Chromium via Playwright."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from consentry.api import create_app
from consentry.auth.service import create_token
from consentry.config import Settings
from consentry.consent.service import ConsentContext, add_policy, change_settings
from consentry.datasets import service as datasets
from consentry.db import Database, utcnow
from consentry.lake.generate import generate_lake
from consentry.metering.service import AccessEvent, append_access_log, create_organisation
from consentry.migrate import upgrade
from consentry.partners.models import Revocation
from consentry.social.models import Account
from consentry.social.seed import export_lake, seed_from_lake
from consentry.social.service import create_account, create_post
from tests.services import chromium

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PEOPLE = (
    ("ada", "US", 1990),
    ("bruno", "US", 1985),
    ("chloe", "US", 1992),
    ("dario", "US", 1978),
    ("emi", "DE", 1995),
    ("felix", "US", 1980),
)


@dataclass
class Live:
    """A running server and what was seeded into it."""

    base: str
    app: FastAPI
    database: Database
    settings: Settings
    admin: str
    people: dict[str, tuple[int, str]] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed_world(
    database: Database, settings: Settings, scratch: Path
) -> tuple[str, dict[str, tuple[int, str]]]:
    """A small generated platform, named people with posts, two releases, revocations (some overdue),
    a scheduled policy version and a day of scraping; returns the admin token and the people's tokens."""
    ctx = ConsentContext.from_settings(settings)
    generate_lake(scratch / "lake", accounts=1200, posts=5000, seed=2026)
    seed_from_lake(database, scratch / "lake", ctx=ctx)
    now = utcnow()
    people: dict[str, tuple[int, str]] = {}
    with database.write() as session:
        admin = create_token(session, kind="admin", label="web tests")
        for handle, country, birth_year in PEOPLE:
            account = create_account(
                session,
                handle=handle,
                country=country,
                birth_year=birth_year,
                created_at=now - timedelta(days=400),
            )
            for i in range(3):
                create_post(
                    session,
                    author_id=account.id,
                    text=f"Post {i} by {handle}",
                    at=now - timedelta(days=3 + i),
                )
            people[handle] = (
                account.id,
                create_token(session, kind="account", account_id=account.id, client="web"),
            )
        datasets.add_recipient(
            session, name="assistant", kind="first_party", purposes=["train-ai"], categories=["posts"]
        )
        datasets.add_recipient(
            session, name="example-ai-labs", kind="third_party", purposes=["train-ai"], categories=["posts"]
        )
        add_policy(
            session,
            effective_at=now + timedelta(days=45),
            applies_to="all",
            defaults={
                "default": {"*": "allow", "third_party_sharing": "deny"},
                "EEA": {"*": "deny"},
                "UK": {"*": "deny"},
                "CH": {"*": "deny"},
            },
            title="Third-party sharing becomes opt-in everywhere",
            summary="Third-party collaborators only get data of people who turn sharing on.",
            created_by="web tests",
            ctx=ctx,
        )
    export_lake(database, scratch / "export")
    for recipient in ("assistant", "example-ai-labs"):
        datasets.build_release(
            database,
            ctx=ctx,
            recipient=recipient,
            purpose="train-ai",
            categories=["posts"],
            lake=scratch / "export",
            out=scratch / "releases" / recipient,
        )
    with database.write() as session:
        adults = session.scalars(
            sa.select(Account.id)
            .where(
                Account.country == "US",
                Account.birth_year < 1990,
                Account.handle.not_in([p[0] for p in PEOPLE]),
            )
            .order_by(Account.id)
            .limit(40)
        ).all()
        for account_id in adults:
            change_settings(
                session, account_id=account_id, changes={"third_party_sharing": "deny"}, client="ios", ctx=ctx
            )
        session.flush()
        late = session.scalars(sa.select(Revocation.id).order_by(Revocation.id).limit(6)).all()
        session.execute(
            sa.update(Revocation).where(Revocation.id.in_(late)).values(deadline_at=now - timedelta(hours=20))
        )
        organisation = create_organisation(session, name="Example AI Labs", mode="meter")
        events = [
            AccessEvent(
                f"org:{organisation.id}",
                now - timedelta(minutes=5 * i),
                5_000,
                organisation.id,
                "/v1/platform/posts",
            )
            for i in range(1, 250)
        ]
        events += [
            AccessEvent("crawler:OpenAI", now - timedelta(minutes=7 * i), 2_500) for i in range(1, 150)
        ]
        events += [
            AccessEvent("net:203.0.113.0/24", now - timedelta(minutes=30 * i), 900) for i in range(1, 40)
        ]
        append_access_log(session, events=events)
    return admin, people


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The application on a seeded SQLite database, served by uvicorn in a thread."""
    scratch = tmp_path_factory.mktemp("web")
    settings = Settings(
        home=scratch / "home",
        database_url=f"sqlite:///{scratch / 'consentry.db'}",
        operator_name="Example Social",
    )
    database = Database(settings.resolved_database_url)
    upgrade(database)
    admin, people = seed_world(database, settings, scratch)
    app = create_app(settings, database=database, migrate=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="web-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield Live(f"http://127.0.0.1:{port}", app, database, settings, admin, people)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        database.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright."""
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, args=BROWSER_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as a test artefact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
