"""A hand-made lake in which every exclusion reason, every precedence and every link case occurs once.

Consent is evaluated at ``AS_OF``. ``EXPECTED_POSTS`` / ``EXPECTED_CHATS`` give each record's reason
(``None``: eligible) for the first-party recipient (``assistant_training_*`` settings), written by hand
from DESIGN.md; ``THIRD_PARTY_POSTS`` the differences for a third party (``third_party_sharing``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from consentry.lake import schema

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
T = datetime(2026, 3, 1, tzinfo=UTC)
OLD = datetime(2020, 5, 1, tzinfo=UTC)
LATER = datetime(2026, 9, 1, tzinfo=UTC)
CREATED = datetime(2019, 1, 1, tzinfo=UTC)

# account_id, handle, country, birth_year, protected, status, status_changed_at
ACCOUNTS = [
    (1, "alice", "US", 1990, False, "active", None),  # allows everything by default
    (2, "bob", "US", 1985, False, "deactivated", T),  # inactive at AS_OF
    (3, "carol", "US", 2012, False, "active", None),  # minor
    (4, "dave", "US", None, False, "active", None),  # no birth year: minor (fail closed)
    (5, "erin", "US", 1980, True, "active", None),  # protected: not public
    (6, "frank", "US", 1975, False, "active", None),  # explicit deny of posts training
    (7, "gina", "DE", 1992, False, "active", None),  # EEA: default deny
    (8, "hank", "DE", 1993, False, "active", None),  # EEA with an explicit allow
    (9, "ivan", "US", 1970, False, "deleted", T),  # deleted account: inactive
    (10, "judy", "US", 1991, False, "deactivated", LATER),  # deactivated only after AS_OF
    (11, "kate", "US", 1988, False, "active", None),  # denies third-party sharing only
    (12, "leo", "US", 2011, False, "deactivated", T),  # minor and inactive: inactive wins
    (13, "mia", "US", 1994, False, "active", None),  # denied after AS_OF: still allow at AS_OF
    (14, "nico", "FR", 1990, False, "active", None),  # allowed, then denied before AS_OF
]

# account_id, setting, value, source, recorded_at
EVENTS = [
    (6, "assistant_training_posts", "deny", "web", T),
    (8, "assistant_training_posts", "allow", "ios", T),
    (8, "assistant_training_interactions", "allow", "ios", T),
    (8, "third_party_sharing", "allow", "ios", T),
    (11, "third_party_sharing", "deny", "android", T),
    (13, "assistant_training_posts", "deny", "web", LATER),
    (14, "assistant_training_posts", "allow", "web", datetime(2026, 1, 1, tzinfo=UTC)),
    (14, "assistant_training_posts", "deny", "web", datetime(2026, 2, 1, tzinfo=UTC)),
]

# post_id, author_id, created_at, visibility, reply_to, quote_of, deleted_at, text
POSTS = [
    (101, 1, T, "public", None, None, None, "hello world, mail me at alice.smith42@example.com"),
    (102, 1, T, "followers", None, None, None, "friends only"),
    (103, 1, T, "public", None, None, datetime(2026, 4, 1, tzinfo=UTC), "deleted before as_of"),
    (104, 1, T, "public", None, None, LATER, "deleted after as_of: still eligible"),
    (105, 1, LATER, "public", None, None, None, "written after as_of: not part of the build"),
    (106, 1, OLD, "public", None, None, None, "an old post, call +44 7123 456789"),
    (201, 2, T, "public", None, None, None, "by a deactivated account"),
    (301, 3, T, "public", None, None, None, "by a minor"),
    (302, 3, T, "followers", None, None, T, "minor, deleted and followers-only: minor wins"),
    (401, 4, T, "public", None, None, None, "no birth year"),
    (501, 5, T, "public", None, None, None, "protected account"),
    (502, 5, T, "public", None, None, T, "protected and deleted: deleted wins"),
    (601, 6, T, "public", None, None, None, "opted out"),
    (602, 6, T, "followers", None, None, None, "opted out and followers-only: not public wins"),
    (701, 7, T, "public", None, None, None, "EEA default deny"),
    (801, 8, T, "public", None, None, None, "EEA explicit allow, phone (555) 123-4567"),
    (901, 9, T, "public", None, None, None, "deleted account"),
    (1001, 10, T, "public", None, None, None, "deactivated after as_of"),
    (1101, 11, T, "public", None, None, None, "no third parties please"),
    (1201, 12, T, "public", None, None, None, "minor and inactive"),
    (1301, 13, T, "public", None, None, None, "denied only later"),
    (1401, 14, T, "public", None, None, None, "allowed then denied"),
    (110, 1, T, "public", 601, None, None, "reply to an opted-out post: link dropped"),
    (111, 1, T, "public", 801, 103, None, "reply kept, quote of a deleted post dropped"),
    (112, 1, T, "public", None, 106, None, "quote of an eligible post outside the window"),
    (113, 8, T, "public", 102, 1001, None, "reply to followers-only dropped, quote kept"),
]

# interaction_id, account_id, created_at, deleted_at
CHATS = [
    (1, 1, T, None),
    (2, 1, T, T),
    (3, 3, T, None),
    (4, 6, T, None),
    (5, 7, T, None),
    (6, 8, T, None),
    (7, 2, T, None),
]

EXPECTED_POSTS: dict[int, str | None] = {
    101: None,
    102: "not_public",
    103: "deleted",
    104: None,
    106: None,
    201: "inactive_account",
    301: "minor",
    302: "minor",
    401: "minor",
    501: "not_public",
    502: "deleted",
    601: "opted_out",
    602: "not_public",
    701: "opted_out",
    801: None,
    901: "inactive_account",
    1001: None,
    1101: None,
    1201: "inactive_account",
    1301: None,
    1401: "opted_out",
    110: None,
    111: None,
    112: None,
    113: None,
}
"""First-party ``train-ai`` eligibility of each post at ``AS_OF`` (105 is after AS_OF: not counted)."""

EXPECTED_LINKS = {110: (None, None), 111: (801, None), 112: (None, 106), 113: (None, 1001)}
"""(reply_to, quote_of) as released to the first party."""

EXPECTED_CHATS: dict[int, str | None] = {
    1: None,
    2: "deleted",
    3: "minor",
    4: None,  # frank denied posts training only
    5: "opted_out",
    6: None,
    7: "inactive_account",
}

THIRD_PARTY_POSTS: dict[int, str | None] = {
    **EXPECTED_POSTS,
    601: None,  # frank allows third parties (he only denied the assistant)
    801: None,
    1101: "opted_out",
    1301: None,
    1401: "opted_out",  # FR: no third-party choice, EEA default deny
    701: "opted_out",
}
"""Third-party ``train-ai`` eligibility (``third_party_sharing``)."""


def _write(folder: schema.Folder, rows: list[dict[str, object]], lake: Path) -> None:
    directory = lake / folder.name
    directory.mkdir(parents=True, exist_ok=True)
    columns = {c.name: pa.array([row[c.name] for row in rows], c.type) for c in folder.columns}
    pq.write_table(pa.table(columns, schema=folder.schema), directory / "part-0.parquet")


def write_scenario(lake: Path) -> Path:
    """Write the scenario lake to ``lake`` and return it."""
    _write(
        schema.ACCOUNTS,
        [
            {
                "account_id": a,
                "handle": h,
                "created_at": CREATED,
                "country": c,
                "birth_year": b,
                "protected": p,
                "status": s,
                "status_changed_at": changed,
            }
            for a, h, c, b, p, s, changed in ACCOUNTS
        ],
        lake,
    )
    _write(
        schema.POSTS,
        [
            {
                "post_id": i,
                "author_id": a,
                "created_at": c,
                "text": text,
                "visibility": v,
                "reply_to": r,
                "quote_of": q,
                "media": "none",
                "deleted_at": d,
            }
            for i, a, c, v, r, q, d, text in POSTS
        ],
        lake,
    )
    _write(
        schema.ASSISTANT_INTERACTIONS,
        [
            {
                "interaction_id": i,
                "account_id": a,
                "created_at": c,
                "prompt": f"prompt {i}: reach me on jane.doe@example.org",
                "response": f"response {i}",
                "deleted_at": d,
            }
            for i, a, c, d in CHATS
        ],
        lake,
    )
    _write(schema.BLOCKS, [], lake)
    _write(schema.FOLLOWS, [], lake)
    _write(
        schema.CONSENT_EVENTS,
        [
            {"account_id": a, "setting": s, "value": v, "source": src, "recorded_at": at}
            for a, s, v, src, at in EVENTS
        ],
        lake,
    )
    return lake
