"""Per-post signals from the database: the single and the vectorised path agree with the rules."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from consentry.consent.service import ConsentContext, change_settings
from consentry.db import Database
from consentry.signals import (
    RESTRICTIVE,
    Usage,
    post_signal_headers,
    post_usage,
    restrictive_headers,
    signal_headers_many,
    usage_many,
)
from consentry.social.models import Account
from consentry.social.service import create_account, deactivate_account
from tests.conftest import make_account
from tests.signals.test_headers import SPLIT

ALLOW_BOTH = {"Content-Usage": "train-ai=y, ai-use=y"}
CREATED = datetime(2020, 1, 1, tzinfo=UTC)
OPT_IN_GROUPS = {"DE": True, "FR": True, "GB": True, "CH": True, "US": False, "BR": False, None: False}


def choose(database: Database, ctx: ConsentContext, account_id: int, at: datetime, **changes: str) -> None:
    with database.write() as session:
        change_settings(session, account_id=account_id, changes=changes, client="web", ctx=ctx, at=at)


def one(
    database: Database, ctx: ConsentContext, author_id: int, at: datetime | None = None
) -> dict[str, str]:
    with database.read() as session:
        return post_signal_headers(session, author_id=author_id, ctx=ctx, at=at)


def test_authors_choices_on_the_default_catalog(database: Database, ctx: ConsentContext) -> None:
    t1, t2 = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)
    us, _ = make_account(database, handle="us", country="US", created_at=CREATED)
    opted_out, _ = make_account(database, handle="out", country="US", created_at=CREATED)
    back_in, _ = make_account(database, handle="back", country="US", created_at=CREATED)
    eea, _ = make_account(database, handle="eea", country="DE", created_at=CREATED)
    eea_in, _ = make_account(database, handle="eea_in", country="DE", created_at=CREATED)
    first_party_only, _ = make_account(database, handle="fp", country="US", created_at=CREATED)
    choose(database, ctx, opted_out, t1, third_party_sharing="deny")
    choose(database, ctx, back_in, t1, third_party_sharing="deny")
    choose(database, ctx, back_in, t2, third_party_sharing="allow")
    choose(database, ctx, eea_in, t1, third_party_sharing="allow")
    choose(database, ctx, first_party_only, t1, third_party_sharing="deny", assistant_training_posts="allow")

    assert one(database, ctx, us) == ALLOW_BOTH
    assert one(database, ctx, opted_out) == restrictive_headers()
    assert one(database, ctx, opted_out, at=t1 - timedelta(seconds=1)) == ALLOW_BOTH  # before the choice
    assert one(database, ctx, back_in) == ALLOW_BOTH
    assert one(database, ctx, back_in, at=t2 - timedelta(seconds=1)) == restrictive_headers()
    assert one(database, ctx, eea) == restrictive_headers()  # opt-in jurisdiction: default deny
    assert one(database, ctx, eea_in) == ALLOW_BOTH
    assert one(database, ctx, first_party_only) == restrictive_headers()
    ids = [us, opted_out, back_in, eea, eea_in, first_party_only]
    with database.read() as session:
        assert signal_headers_many(session, author_ids=ids, ctx=ctx) == {
            a: one(database, ctx, a) for a in ids
        }


def test_minors_inactive_and_unknown_authors_fail_closed(database: Database, ctx: ConsentContext) -> None:
    now = datetime.now(UTC)
    minor, _ = make_account(database, handle="minor", birth_year=now.year - 12, created_at=CREATED)
    unknown_age, _ = make_account(database, handle="noage", birth_year=None, created_at=CREATED)
    gone, _ = make_account(database, handle="gone", created_at=CREATED)
    choose(database, ctx, minor, now - timedelta(days=1), third_party_sharing="allow")
    with database.write() as session:
        deactivate_account(session, account_id=gone, at=now - timedelta(hours=1))
    ids = [minor, unknown_age, gone, 987_654]
    for author in ids:
        assert one(database, ctx, author) == restrictive_headers()
    assert one(database, ctx, gone, at=now - timedelta(days=1)) == ALLOW_BOTH  # still active then
    with database.read() as session:
        assert signal_headers_many(session, author_ids=ids, ctx=ctx) == dict.fromkeys(
            ids, restrictive_headers()
        )
        assert signal_headers_many(session, author_ids=[], ctx=ctx) == {}


def test_errors_fail_closed(database: Database, ctx: ConsentContext, monkeypatch: pytest.MonkeyPatch) -> None:
    author, _ = make_account(database, created_at=CREATED)
    assert one(database, ctx, author) == ALLOW_BOTH

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr("consentry.signals.headers.settings_view", broken)
    monkeypatch.setattr("consentry.signals.headers.evaluate_accounts", broken)
    assert one(database, ctx, author) == restrictive_headers()
    with database.read() as session:
        assert signal_headers_many(session, author_ids=[author, author], ctx=ctx) == {
            author: restrictive_headers()
        }


# --- random authors against an independent statement of the rules ---------------------------------


@dataclass
class Author:
    id: int
    country: str | None
    birth_year: int | None
    deactivated_at: datetime | None
    events: list[tuple[datetime, str, str]] = field(default_factory=list)  # time, setting, value

    def effective(self, setting: str, at: datetime) -> bool:
        if self.birth_year is None or at.year - self.birth_year <= 18:
            return False
        if self.deactivated_at is not None and self.deactivated_at <= at:
            return False
        earlier = [(t, v) for t, s, v in self.events if s == setting and t <= at]
        if earlier:
            return max(earlier)[1] == "allow"
        return not OPT_IN_GROUPS[self.country]

    def usage(self, at: datetime) -> Usage:
        return Usage(
            train_ai=all(self.effective(k, at) for k in ("tp_train", "tp_both")),
            ai_input=all(self.effective(k, at) for k in ("tp_input", "tp_both")),
        )


def test_random_authors_agree_with_the_rules(database: Database, ctx: ConsentContext) -> None:
    split = dataclasses.replace(ctx, catalog=SPLIT)
    rng = random.Random(7)
    start = datetime(2021, 1, 1, tzinfo=UTC)
    authors: list[Author] = []
    with database.write() as session:
        for n in range(40):
            author = Author(
                id=0,
                country=rng.choice(list(OPT_IN_GROUPS)),
                birth_year=rng.choice([1970, 1990, 2004, None]),
                deactivated_at=start + timedelta(days=500) if rng.random() < 0.2 else None,
            )
            account = create_account(
                session,
                handle=f"a{n}",
                country=author.country,
                birth_year=author.birth_year,
                created_at=CREATED,
            )
            author.id = account.id
            authors.append(author)
    for index, (train, ai_input) in enumerate([(True, True), (True, False), (False, True), (False, False)]):
        fixed = authors[index]  # every combination is reached at least once
        fixed.birth_year, fixed.deactivated_at = 1990, None
        with database.write() as session:
            row = session.get(Account, fixed.id)
            assert row is not None
            row.birth_year = 1990
        for key, allowed in (("tp_train", train), ("tp_input", ai_input), ("tp_both", True)):
            fixed.events.append((start, key, "allow" if allowed else "deny"))
            choose(database, split, fixed.id, start, **{key: "allow" if allowed else "deny"})
    for author in authors:
        when = start + timedelta(days=1)
        for _ in range(rng.randint(0, 5)):
            when += timedelta(days=rng.randint(1, 90), seconds=rng.randint(0, 86_399))
            setting = rng.choice(SPLIT.keys)
            value = rng.choice(["allow", "deny"])
            choose(database, split, author.id, when, **{setting: value})
            author.events.append((when, setting, value))
    with database.write() as session:
        for author in authors:
            if author.deactivated_at is not None:
                deactivate_account(session, account_id=author.id, at=author.deactivated_at)
    seen: set[Usage] = set()
    for at in (start, start + timedelta(days=100), start + timedelta(days=400), start + timedelta(days=800)):
        expected = {a.id: a.usage(at) for a in authors}
        seen.update(expected.values())
        with database.read() as session:
            assert usage_many(session, author_ids=[a.id for a in authors], ctx=split, at=at) == expected
            assert {a.id: post_usage(session, author_id=a.id, ctx=split, at=at) for a in authors} == expected
    assert len(seen) == 4, "the scenario should reach every combination"
    assert RESTRICTIVE in seen
