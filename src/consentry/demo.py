"""Seeding the embedded database for ``consentry demo``: a small generated platform plus named accounts.

The first run generates a lake (``consentry.lake.generate``) of a few thousand accounts into a temporary
folder and loads it (``consentry.social.seed``); later runs find posts in the database and keep them.
Every run creates the named demo accounts if missing and fresh tokens for an admin and each of them.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from consentry.auth.service import create_token
from consentry.config import Settings, get_settings
from consentry.consent.service import ConsentContext
from consentry.db import Database
from consentry.social.models import Account, Post
from consentry.social.seed import SeedReport, seed_from_lake
from consentry.social.service import create_account

DEMO_ACCOUNTS = (
    ("ada", "US", 1990),
    ("bruno", "DE", 1985),
    ("chloe", "GB", 2001),
    ("dario", "CH", 1978),
    ("emi", "JP", 2012),
)
DEMO_LAKE_ACCOUNTS = 3_000
DEMO_LAKE_POSTS = 20_000
DEMO_LAKE_SEED = 2026
DEMO_PROMPT = "What are people saying about pizza?"


@dataclass
class DemoInfo:
    """What the demo prints: where its data lives, tokens, and things to try the API with."""

    home: Path
    admin_token: str
    account_tokens: dict[str, tuple[int, str]] = field(default_factory=dict)
    seeded: SeedReport | None = None
    """What was loaded on this run (``None`` when the database already had posts)."""
    sample_post_id: int | None = None
    """A recent public post to read, like, reply to or repost."""
    sample_author: tuple[int, str] | None = None
    """``(account_id, handle)`` of its author, to follow or block."""

    def try_commands(self, base: str, *, consentry: str = "consentry", lake: str = "demo-lake") -> list[str]:
        """Ready-to-paste commands to post, read, like, block, chat and export against ``base``;
        ``consentry`` is how the shell runs the command, ``lake`` where the export goes."""
        if not self.account_tokens:
            return []
        handle, (_, token) = next(iter(self.account_tokens.items()))
        auth = f"-H 'Authorization: Bearer {token}'"
        send = f"{auth} -H 'Content-Type: application/json'"
        lines = [
            f"# as @{handle}: post, then read it back",
            f"curl -s -X POST {base}/v1/platform/posts {send} "
            f"-d '{json.dumps({'text': 'Hello from the Consentry demo!'})}'",
            f"curl -s {base}/v1/platform/accounts/{self.account_tokens[handle][0]}/posts",
        ]
        if self.sample_post_id is not None:
            lines += [
                "# read, like and reply to somebody else's post",
                f"curl -s {base}/v1/platform/posts/{self.sample_post_id}",
                f"curl -s -X POST {base}/v1/platform/posts/{self.sample_post_id}/like {auth}",
                f"curl -s -X POST {base}/v1/platform/posts {send} "
                f"-d '{json.dumps({'text': 'Great post!', 'reply_to': self.sample_post_id})}'",
            ]
        if self.sample_author is not None:
            author_id, author = self.sample_author
            lines += [
                f"# block @{author}; liking their posts now answers 403 with the reason",
                f"curl -s -X POST {base}/v1/platform/accounts/{author_id}/block {auth}",
            ]
        lines += [
            "# chat with the assistant (recorded as an assistant interaction)",
            f"curl -s -X POST {base}/v1/platform/assistant/chat {send} "
            f"-d '{json.dumps({'prompt': DEMO_PROMPT})}'",
            "# export the whole platform in the data contract, then check it",
            f"{consentry} platform export {lake} && {consentry} lake check {lake}",
        ]
        return lines


def seed_platform(
    database: Database,
    *,
    ctx: ConsentContext | None = None,
    accounts: int = DEMO_LAKE_ACCOUNTS,
    posts: int = DEMO_LAKE_POSTS,
    seed: int = DEMO_LAKE_SEED,
) -> SeedReport | None:
    """Generate a small lake and load it, unless the database already has posts."""
    from consentry.lake.generate import generate_lake

    with database.read() as session:
        if session.scalar(select(Post.id).limit(1)) is not None:
            return None
    with tempfile.TemporaryDirectory(prefix="consentry-demo-") as scratch:
        lake = Path(scratch) / "lake"
        generate_lake(lake, accounts=accounts, posts=posts, seed=seed)
        return seed_from_lake(database, lake, ctx=ctx)


def seed_demo(
    database: Database,
    *,
    settings: Settings | None = None,
    accounts: int = DEMO_LAKE_ACCOUNTS,
    posts: int = DEMO_LAKE_POSTS,
) -> DemoInfo:
    """Seed a generated platform on first run, create the demo accounts if missing, and fresh tokens for
    an admin and each demo account."""
    settings = settings or get_settings()
    ctx = ConsentContext.from_settings(settings)
    seeded = seed_platform(database, ctx=ctx, accounts=accounts, posts=posts)
    with database.write() as session:
        info = DemoInfo(
            home=settings.home.resolve(),
            admin_token=create_token(session, kind="admin", label="demo"),
            seeded=seeded,
        )
        for handle, country, birth_year in DEMO_ACCOUNTS:
            account = session.scalar(select(Account).where(Account.handle == handle))
            if account is None:
                account = create_account(session, handle=handle, country=country, birth_year=birth_year)
            if account.status == "deleted":
                continue
            token = create_token(session, kind="account", account_id=account.id, label="demo")
            info.account_tokens[handle] = (account.id, token)
        demo_ids = [account_id for account_id, _ in info.account_tokens.values()]
        sample = session.execute(
            select(Post.id, Account.id, Account.handle)
            .join(Account, Account.id == Post.author_id)
            .where(
                Post.deleted_at.is_(None),
                Post.visibility == "public",
                Post.reply_to.is_(None),
                Account.protected.is_(False),
                Account.status == "active",
                Account.id.not_in(demo_ids),
            )
            .order_by(Post.id.desc())
            .limit(1)
        ).first()
        if sample is not None:
            info.sample_post_id = sample[0]
            info.sample_author = (sample[1], sample[2])
    return info
