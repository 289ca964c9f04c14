"""A hand-made platform in which every retention rule, its window edge and every overlap occurs.

``AT`` is when rules are evaluated; ``EDGE`` is exactly 30 days before (inside the window: kept) and
``PAST`` one microsecond earlier (outside: removed). The comments say which rule removes each row with the
default rules and no legal hold; ``tests/retention/test_service.py`` spells out the expected sets.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from consentry.auth.service import create_token
from consentry.consent import ledger
from consentry.consent.models import Notification, Subject
from consentry.db import Database
from consentry.metering.models import AccessRecord
from consentry.social.models import Account, AssistantInteraction, Block, Follow, Like, Post, Repost

AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
EDGE = AT - timedelta(days=30)
PAST = EDGE - timedelta(microseconds=1)
CREATED = datetime(2024, 1, 1, tzinfo=UTC)
LOG_EDGE = datetime(2024, 12, 1, 12, 0, tzinfo=UTC)  # 18 calendar months before AT

# id, handle, status, status_changed_at
ACCOUNTS = [
    (1, "ann", "active", None),
    (2, "bob", "active", None),
    (3, "cat", "deactivated", PAST),  # purged by deactivated_accounts
    (4, "dan", "deactivated", EDGE),  # exactly at the edge: kept
    (5, "eve", "deactivated", AT - timedelta(days=90)),  # purged by deactivated_accounts
    (6, "fay", "deleted", AT - timedelta(days=40)),  # mapping left over: removed
    (7, "gus", "deleted", AT - timedelta(days=1)),  # mapping left over: removed (no window)
]

# id, author, deleted_at, reply_to, quote_of
POSTS = [
    (10, 1, None, None, None),
    (11, 1, PAST, None, None),  # posts
    (12, 1, EDGE, None, None),  # kept: at the edge
    (13, 1, AT - timedelta(days=1), None, None),
    (14, 1, None, 11, None),  # kept; its reply link is cleared
    (15, 2, None, None, 11),  # kept; its quote link is cleared
    (16, 2, AT - timedelta(days=100), None, None),  # posts
    (20, 3, None, None, None),  # deactivated_accounts
    (21, 3, PAST, None, None),  # posts (first rule wins)
    (22, 3, None, 21, None),  # deactivated_accounts
    (30, 4, None, None, None),
    (40, 5, None, None, None),  # deactivated_accounts
    (41, 5, AT - timedelta(days=200), None, None),  # posts
    (60, 6, AT - timedelta(days=40), None, None),  # posts
    (70, 7, AT - timedelta(days=1), None, None),
]

# id, account, deleted_at
INTERACTIONS = [
    (100, 1, None),
    (101, 1, PAST),  # assistant_interactions
    (102, 1, EDGE),
    (103, 3, None),  # deactivated_accounts
    (104, 3, PAST),  # assistant_interactions
    (105, 2, AT - timedelta(days=90)),  # assistant_interactions
    (106, 5, None),  # deactivated_accounts
]

LIKES = [(1, 11), (2, 20), (3, 10), (1, 10), (3, 21), (4, 40), (2, 16)]
REPOSTS = [(2, 11), (3, 10), (1, 30)]
FOLLOWS = [(1, 3), (3, 2), (1, 2), (5, 1), (4, 1)]
BLOCKS = [(3, 1), (2, 4)]
# id, minute
ACCESS_LOG = [
    (1, LOG_EDGE - timedelta(microseconds=1)),  # access_log
    (2, LOG_EDGE),  # kept: at the edge
    (3, datetime(2026, 5, 1, tzinfo=UTC)),
    (4, datetime(2020, 1, 1, tzinfo=UTC)),  # access_log
]
SUBJECTS = {1: "a" * 32, 3: "c" * 32, 5: "e" * 32, 6: "f" * 32, 7: "g" * 32}
EVENTS = [1, 3, 6]  # accounts with one consent event each


def seed(database: Database) -> None:
    """Write the scenario."""
    with database.write() as session:
        session.execute(
            insert(Account),
            [
                {
                    "id": i,
                    "handle": h,
                    "created_at": CREATED,
                    "country": "US",
                    "birth_year": 1990,
                    "protected": False,
                    "status": s,
                    "status_changed_at": changed,
                }
                for i, h, s, changed in ACCOUNTS
            ],
        )
        session.execute(
            insert(Post),
            [
                {
                    "id": i,
                    "author_id": a,
                    "created_at": CREATED + timedelta(days=i),
                    "text": f"post {i}",
                    "visibility": "public",
                    "reply_to": None,
                    "quote_of": None,
                    "media": "none",
                    "deleted_at": d,
                }
                for i, a, d, _, _ in POSTS
            ],
        )
        for i, _, _, reply_to, quote_of in POSTS:
            if reply_to or quote_of:
                post = session.get(Post, i)
                assert post is not None
                post.reply_to, post.quote_of = reply_to, quote_of
        session.flush()
        session.execute(
            insert(AssistantInteraction),
            [
                {
                    "id": i,
                    "account_id": a,
                    "created_at": CREATED + timedelta(days=i),
                    "prompt": "p",
                    "response": "r",
                    "deleted_at": d,
                }
                for i, a, d in INTERACTIONS
            ],
        )
        for model, rows in ((Like, LIKES), (Repost, REPOSTS)):
            session.execute(
                insert(model), [{"account_id": a, "post_id": p, "created_at": CREATED} for a, p in rows]
            )
        session.execute(
            insert(Follow),
            [
                {"follower_id": a, "followee_id": b, "created_at": CREATED, "pending": False}
                for a, b in FOLLOWS
            ],
        )
        session.execute(
            insert(Block), [{"blocker_id": a, "blocked_id": b, "created_at": CREATED} for a, b in BLOCKS]
        )
        session.execute(
            insert(AccessRecord),
            [
                {
                    "id": i,
                    "subject": "org:1",
                    "minute": m,
                    "posts": 5,
                    "requests": 1,
                    "route": "",
                    "client": "",
                }
                for i, m in ACCESS_LOG
            ],
        )
        session.execute(insert(Subject), [{"account_id": a, "subject_key": k} for a, k in SUBJECTS.items()])
        ledger.append(
            session,
            [
                ledger.NewEvent(
                    subject_key=SUBJECTS[a],
                    setting="third_party_sharing",
                    value="deny",
                    source="user",
                    policy_version=1,
                    recorded_at=CREATED,
                    client="web",
                )
                for a in EVENTS
            ],
        )
        session.execute(
            insert(Notification),
            [
                {
                    "account_id": a,
                    "kind": "policy",
                    "payload": {},
                    "created_at": CREATED,
                    "delivered_at": None,
                }
                for a in (1, 3)
            ],
        )
        create_token(session, kind="account", account_id=1)
        create_token(session, kind="account", account_id=3)


@pytest.fixture
def platform(database: Database) -> Database:
    """The database holding the scenario."""
    seed(database)
    return database
