"""Fixtures of the partner tests: two partners with a real release each, built from the scenario lake of
the datasets tests (its fixture and helpers are reused, not copied), and their API keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from consentry.consent.service import ConsentContext
from consentry.datasets.models import Recipient, Release
from consentry.db import Database, utcnow
from consentry.partners import service
from consentry.partners.models import Revocation
from tests.datasets.conftest import CATEGORIES, build, load
from tests.datasets.conftest import scenario_lake as scenario_lake

A, B = "partner", "other-partner"
"""The two third-party recipients ``tests.datasets.conftest.load`` registers."""


@dataclass(frozen=True)
class World:
    """Two partners (``A`` with posts and assistant interactions, ``B`` with posts), a release each and an
    API key each."""

    database: Database
    releases: dict[str, Release]
    keys: dict[str, str]
    ids: dict[str, int]

    def auth(self, partner: str) -> dict[str, str]:
        """Headers authenticating as ``partner``."""
        return {"Authorization": f"Bearer {self.keys[partner]}"}


@pytest.fixture
def world(database: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path) -> World:
    load(database, ctx, scenario_lake)
    releases = {
        A: build(database, ctx, scenario_lake, tmp_path / "release-a", recipient=A, categories=CATEGORIES),
        B: build(database, ctx, scenario_lake, tmp_path / "release-b", recipient=B, categories=["posts"]),
    }
    with database.write() as session:
        keys = {name: service.create_key(session, partner=name, label="test")[1] for name in (A, B)}
        ids = {r.name: r.id for r in session.scalars(select(Recipient).where(Recipient.name.in_([A, B])))}
    return World(database=database, releases=releases, keys=keys, ids=ids)


def add_revocation(
    database: Database,
    release: Release,
    *,
    record_ids: Sequence[int] = (101,),
    category: str = "posts",
    created_at: datetime | None = None,
    deadline_at: datetime | None = None,
    acknowledged: bool = False,
) -> int:
    """Insert a revocation of ``release`` directly (as the revocation engine would); returns its id.

    By default it was created an hour ago and is due in 71 hours."""
    created_at = created_at or utcnow() - timedelta(hours=1)
    with database.write() as session:
        revocation = Revocation(
            recipient_id=release.recipient_id,
            release_id=release.id,
            category=category,
            reason="opt_out",
            setting="third_party_sharing",
            account_id=1,
            record_ids=list(record_ids),
            records=len(record_ids),
            created_at=created_at,
            deadline_at=deadline_at or created_at + timedelta(hours=72),
        )
        if acknowledged:
            revocation.acknowledged_at = created_at + timedelta(hours=1)
            revocation.deleted_at = created_at + timedelta(minutes=30)
            revocation.ack_method = "test"
        session.add(revocation)
        session.flush()
        return revocation.id
