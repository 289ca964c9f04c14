"""The dashboard's chart times, and its cached consent state following the database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from consentry.config import Settings
from consentry.consent.catalog import load_catalog
from consentry.consent.policy import Policy
from consentry.consent.service import ConsentContext, change_settings
from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.social.service import create_account, deactivate_account
from consentry.web import dashboard
from consentry.web.cohorts import state_at
from consentry.web.snapshot import ConsentStateCache
from tests.conftest import make_account

KEYS = list(load_catalog().keys)


def test_timeline_ends_now_and_refuses_unknown_ranges() -> None:
    now = datetime(2026, 11, 22, 5, 30, tzinfo=UTC)
    months = dashboard.timeline(now, "12m")
    assert months[-1] == now and months[0] == datetime(2025, 12, 1, tzinfo=UTC) and len(months) == 13
    assert all(a < b for a, b in itertools.pairwise(months))
    assert len(dashboard.timeline(now, "90d")) == 14
    quarters = dashboard.timeline(now, "5y")
    assert quarters[0] == datetime(2022, 1, 1, tzinfo=UTC) and len(quarters) == 21
    with pytest.raises(InvalidInput) as error:
        dashboard.timeline(now, "forever")
    assert error.value.field == "range"


def test_cache_follows_new_events_accounts_and_status_changes(
    database: Database, settings: Settings, ctx: ConsentContext
) -> None:
    ada, _ = make_account(database, handle="ada", country="US")
    make_account(database, handle="bruno", country="DE")
    cache = ConsentStateCache(settings=KEYS, jurisdictions=ctx.jurisdictions, accounts_ttl=3600)

    def explicit_denies() -> int:
        with database.read() as session:
            overview = dashboard.consent_overview(session, cache=cache, ctx=ctx)
        return sum(s.total.explicit_deny for s in overview.shares)

    def population() -> int:
        with database.read() as session:
            return dashboard.consent_overview(session, cache=cache, ctx=ctx).population

    assert explicit_denies() == 0 and population() == 2
    with database.write() as session:
        change_settings(
            session, account_id=ada, changes={"assistant_realtime": "deny"}, client="web", ctx=ctx
        )
        chloe = create_account(session, handle="chloe", country="US", birth_year=1980)
        session.flush()
        change_settings(
            session,
            account_id=chloe.id,
            changes={"assistant_realtime": "deny", "third_party_sharing": "deny"},
            client="ios",
            ctx=ctx,
        )
    assert explicit_denies() == 3 and population() == 3
    with database.write() as session:
        change_settings(
            session, account_id=ada, changes={"assistant_realtime": "allow"}, client="web", ctx=ctx
        )
        deactivate_account(session, account_id=chloe.id)
    assert explicit_denies() == 2  # the new event is seen at once ...
    assert population() == 3  # ... a status change when the accounts are read again
    cache.accounts_ttl = 0
    assert population() == 2 and explicit_denies() == 0
    with database.read() as session:
        fresh = ConsentStateCache(settings=KEYS, jurisdictions=ctx.jurisdictions).current(session)
        kept = cache.current(session)
    at = datetime.now(UTC)
    policies = [Policy(1, datetime(2000, 1, 1, tzinfo=UTC), "all", {"default": {"*": "allow"}})]
    a = state_at(fresh, at=at, policies=policies, jurisdictions=ctx.jurisdictions)
    b = state_at(kept, at=at, policies=policies, jurisdictions=ctx.jurisdictions)
    assert a.allow.tolist() == b.allow.tolist() and a.population.tolist() == b.population.tolist()
