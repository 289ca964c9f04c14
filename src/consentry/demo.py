"""Seeding the embedded database for ``consentry demo``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from consentry.auth.service import create_token
from consentry.config import get_settings
from consentry.db import Database
from consentry.social.models import Account
from consentry.social.service import create_account

DEMO_ACCOUNTS = (
    ("ada", "US", 1990),
    ("bruno", "DE", 1985),
    ("chloe", "GB", 2001),
    ("dario", "CH", 1978),
    ("emi", "JP", 2012),
)


@dataclass
class DemoInfo:
    """What the demo prints: where its data lives and tokens to try the API with."""

    home: Path
    admin_token: str
    account_tokens: dict[str, tuple[int, str]] = field(default_factory=dict)


def seed_demo(database: Database) -> DemoInfo:
    """Create the demo accounts if missing and fresh tokens for an admin and each demo account."""
    settings = get_settings()
    with database.write() as session:
        info = DemoInfo(
            home=settings.home.resolve(), admin_token=create_token(session, kind="admin", label="demo")
        )
        for handle, country, birth_year in DEMO_ACCOUNTS:
            account = session.scalar(select(Account).where(Account.handle == handle))
            if account is None:
                account = create_account(session, handle=handle, country=country, birth_year=birth_year)
            if account.status == "deleted":
                continue
            token = create_token(session, kind="account", account_id=account.id, label="demo")
            info.account_tokens[handle] = (account.id, token)
    return info
