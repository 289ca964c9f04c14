"""The reference platform's use cases: accounts, posts, follows, blocks, likes, reposts, assistant chats.

Visibility, for a viewer V (nobody when anonymous) and a post P by author A, checked in this order:

1. P does not exist: ``NotFound``. P is deleted, or A's account is deleted: ``Gone`` (410).
2. V is A: visible.
3. A is deactivated: ``NotFound`` (hidden until A comes back).
4. A blocks V: public posts stay readable when ``blocked_can_read`` (the setting
   ``CONSENTRY_BLOCKED_CAN_READ``, default on); otherwise ``Forbidden`` naming the block.
5. P is followers-only, or A is protected: only A's approved followers see it; others get ``NotFound``
   (the same answer as for a post that does not exist, so nothing leaks).

Interacting (like, repost, reply, quote, follow) needs an active account, a post the actor can see, and
no block between the two accounts in either direction: ``Forbidden`` with the reason. Reposts and quotes
need a public post of an unprotected account (they would widen its audience). Every check happens before
anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Delete,
    Select,
    Table,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.orm.util import identity_key

from consentry.auth.service import revoke_tokens
from consentry.consent.evaluate import AccountFacts
from consentry.consent.models import Subject
from consentry.db import Base, utcnow
from consentry.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound
from consentry.lake.schema import COUNTRY_CODES
from consentry.links.service import drop_links
from consentry.partners.revocations import revoke_accounts, revoke_records
from consentry.retention.models import LegalHold
from consentry.social.changes import record_account_changes
from consentry.social.models import (
    MEDIA_KINDS,
    VISIBILITIES,
    Account,
    AssistantInteraction,
    Block,
    Follow,
    Like,
    Post,
    Repost,
)

HANDLE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
TEXT_LIMIT = 4000
"""Longest post text, in characters."""
PROMPT_LIMIT = 4000
"""Longest assistant prompt, in characters."""
PAGE_LIMIT = 100
"""Most posts or interactions one page holds."""


# --- accounts ---------------------------------------------------------------------------------------


def create_account(
    session: Session,
    *,
    handle: str,
    country: str | None,
    birth_year: int | None,
    protected: bool = False,
    created_at: datetime | None = None,
    account_id: int | None = None,
) -> Account:
    """Create an active account."""
    if not HANDLE.match(handle):
        raise InvalidInput("handle must be 1-64 letters, digits or underscores", field="handle")
    if country is not None and (len(country) != 2 or country.upper() not in COUNTRY_CODES):
        raise InvalidInput("country must be an ISO 3166-1 alpha-2 code", field="country")
    now = utcnow()
    if birth_year is not None and not 1900 <= birth_year <= now.year:
        raise InvalidInput(f"birth_year must be between 1900 and {now.year}", field="birth_year")
    if session.scalar(select(Account.id).where(Account.handle == handle)) is not None:
        raise Conflict(f"handle {handle!r} is taken", field="handle")
    if account_id is not None and session.get(Account, account_id) is not None:
        raise Conflict(f"account {account_id} exists", field="account_id")
    account = Account(
        id=account_id,
        handle=handle,
        created_at=created_at or now,
        country=country.upper() if country else None,
        birth_year=birth_year,
        protected=protected,
        status="active",
    )
    session.add(account)
    session.flush()
    record_account_changes(session.connection(), [account.id])
    return account


def get_account(session: Session, account_id: int) -> Account:
    """The account with this id, or ``NotFound``."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist", field="account_id")
    return account


def deactivate_account(session: Session, *, account_id: int, at: datetime | None = None) -> Account:
    """Deactivate an active account."""
    account = get_account(session, account_id)
    if account.status != "active":
        raise Conflict(f"account {account_id} is {account.status}", field="account_id")
    account.status, account.status_changed_at = "deactivated", at or utcnow()
    record_account_changes(session.connection(), [account_id])
    revoke_accounts(
        session, account_ids=[account_id], reason="account_deactivated", at=account.status_changed_at
    )
    return account


def reactivate_account(session: Session, *, account_id: int, at: datetime | None = None) -> Account:
    """Reactivate a deactivated account."""
    account = get_account(session, account_id)
    if account.status != "deactivated":
        raise Conflict(f"account {account_id} is {account.status}", field="account_id")
    account.status, account.status_changed_at = "active", at or utcnow()
    record_account_changes(session.connection(), [account_id])
    return account


def delete_account(session: Session, *, account_id: int, at: datetime | None = None) -> Account:
    """Delete an account: its tokens are revoked and its ledger subject mapping removed.

    The ledger events stay (the chain still verifies) but no longer name anybody. Its posts and assistant
    interactions are marked deleted at the same moment, and its follows, blocks, likes and reposts are
    removed (as the data contract expects of a deleted account). An account on legal hold keeps its
    subject mapping, so its consent history still names it, until the first retention run after the
    hold is released; everything else happens at once.
    """
    account = get_account(session, account_id)
    if account.status == "deleted":
        raise Conflict(f"account {account_id} is already deleted", field="account_id")
    when = at or utcnow()
    account.status, account.status_changed_at = "deleted", when
    record_account_changes(session.connection(), [account_id])
    revoke_accounts(session, account_ids=[account_id], reason="account_deleted", at=when)
    if not _on_legal_hold(session, account_id):
        session.execute(delete(Subject).where(Subject.account_id == account_id))
    revoke_tokens(session, account_id=account_id)
    drop_links(session, account_id=account_id)
    session.execute(
        update(Post).where(Post.author_id == account_id, Post.deleted_at.is_(None)).values(deleted_at=when)
    )
    session.execute(
        update(AssistantInteraction)
        .where(AssistantInteraction.account_id == account_id, AssistantInteraction.deleted_at.is_(None))
        .values(deleted_at=when)
    )
    session.execute(
        delete(Follow).where(or_(Follow.follower_id == account_id, Follow.followee_id == account_id))
    )
    session.execute(delete(Block).where(or_(Block.blocker_id == account_id, Block.blocked_id == account_id)))
    session.execute(delete(Like).where(Like.account_id == account_id))
    session.execute(delete(Repost).where(Repost.account_id == account_id))
    return account


def _on_legal_hold(session: Session, account_id: int) -> bool:
    held = select(LegalHold.id).where(LegalHold.account_id == account_id, LegalHold.released_at.is_(None))
    return session.scalar(held) is not None


def facts(account: Account) -> AccountFacts:
    """What consent evaluation needs of an account."""
    return AccountFacts(
        account_id=account.id,
        created_at=account.created_at,
        country=account.country,
        birth_year=account.birth_year,
        status=account.status,
        status_changed_at=account.status_changed_at,
    )


def _insert_new(session: Session, model: type[Base], **values: Any) -> bool:
    """Insert a relation row unless its key exists (safe under concurrency); whether it was new."""
    table = model.__table__
    assert isinstance(table, Table)
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    key = next(iter(table.primary_key.columns))
    statement = insert(table).values(**values).on_conflict_do_nothing().returning(key)
    return session.execute(statement).first() is not None


def _removed(session: Session, statement: Delete) -> bool:
    """Run a DELETE; whether it removed any row."""
    result = cast("CursorResult[Any]", session.execute(statement))
    return bool(result.rowcount)


# --- relations --------------------------------------------------------------------------------------


def blocks(session: Session, blocker_id: int, blocked_id: int) -> bool:
    """Whether ``blocker_id`` blocks ``blocked_id``."""
    return session.get(Block, (blocker_id, blocked_id)) is not None


def follows(session: Session, follower_id: int, followee_id: int) -> bool:
    """Whether ``follower_id`` is an approved follower of ``followee_id``."""
    row = session.get(Follow, (follower_id, followee_id))
    return row is not None and not row.pending


def _actor(session: Session, account_id: int) -> Account:
    """The acting account, which must be active."""
    account = get_account(session, account_id)
    if account.status != "active":
        raise Forbidden(f"account {account_id} is {account.status}; it cannot post or interact")
    return account


def visible_account(session: Session, account_id: int) -> Account:
    """An account others may see and act upon: ``Gone`` if deleted, ``NotFound`` if unknown or deactivated."""
    account = session.get(Account, account_id)
    if account is None or account.status == "deactivated":
        raise NotFound(f"account {account_id} does not exist", field="account_id")
    if account.status == "deleted":
        raise Gone(f"account {account_id} was deleted", field="account_id")
    return account


def _no_block(session: Session, actor: Account, other: Account, action: str) -> None:
    """``Forbidden`` naming the block when either account blocks the other."""
    if blocks(session, other.id, actor.id):
        raise Forbidden(f"@{other.handle} has blocked you: you cannot {action}")
    if blocks(session, actor.id, other.id):
        raise Forbidden(f"you have blocked @{other.handle}: unblock them to {action}")


# --- visibility -------------------------------------------------------------------------------------


def restricted(post: Post, author: Account) -> bool:
    """Whether a post is for the author's approved followers only."""
    return post.visibility != "public" or author.protected


def _invisible(post_id: int, field: str) -> NotFound:
    return NotFound(f"post {post_id} does not exist or is not visible to you", field=field)


def readable_post(
    session: Session,
    *,
    post_id: int,
    viewer_id: int | None,
    blocked_can_read: bool = True,
    field: str = "post_id",
) -> tuple[Post, Account]:
    """The post and its author, if ``viewer_id`` (``None``: anonymous) may read it (see the module doc)."""
    # one query for the post and its author (foreign key: every post has one)
    found = session.execute(_POST_AND_AUTHOR, {"post_id": post_id}).one_or_none()
    if found is None:
        raise _invisible(post_id, field)
    post, author = found
    if post.deleted_at is not None:
        raise Gone(f"post {post_id} was deleted", field=field)
    if author.status == "deleted":
        raise Gone(f"post {post_id} was deleted with its author's account", field=field)
    if viewer_id == author.id:
        return post, author
    if author.status != "active":
        raise _invisible(post_id, field)
    if viewer_id is not None and not blocked_can_read and blocks(session, author.id, viewer_id):
        raise Forbidden(f"@{author.handle} has blocked you: you cannot read their posts")
    if restricted(post, author) and (viewer_id is None or not follows(session, viewer_id, author.id)):
        raise _invisible(post_id, field)
    return post, author


def _interaction_target(
    session: Session, *, actor: Account, post_id: int, action: str, field: str, widens: bool
) -> tuple[Post, Account]:
    """A post ``actor`` may act on: readable, no block either way, public when ``widens`` the audience."""
    post, author = readable_post(session, post_id=post_id, viewer_id=actor.id, field=field)
    if author.id != actor.id:
        _no_block(session, actor, author, f"{action} their posts")
    if widens and restricted(post, author):
        done = {"repost": "reposted", "quote": "quoted"}.get(action, action)
        raise Forbidden(f"post {post_id} is for @{author.handle}'s followers only: it cannot be {done}")
    return post, author


# --- posts ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostView:
    """A post as readers see it: the row, its author's handle, and counts of likes, reposts, replies."""

    post: Post
    author_handle: str
    likes: int = 0
    reposts: int = 0
    replies: int = 0


def _check_text(text: object, *, field: str, limit: int) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{field} must be a non-empty string", field=field)
    if len(text) > limit:
        raise InvalidInput(f"{field} is limited to {limit:,} characters, got {len(text):,}", field=field)
    return text


def create_post(
    session: Session,
    *,
    author_id: int,
    text: str,
    visibility: str = "public",
    media: str = "none",
    reply_to: int | None = None,
    quote_of: int | None = None,
    at: datetime | None = None,
) -> Post:
    """Publish a post, a reply (``reply_to``) or a quote (``quote_of``); nothing is written on any error.

    Replying to or quoting a deleted post is ``Gone`` (410), an unknown or invisible one ``NotFound``.
    """
    _check_text(text, field="text", limit=TEXT_LIMIT)
    if visibility not in VISIBILITIES:
        raise InvalidInput(
            f"visibility must be one of {', '.join(VISIBILITIES)}, not {visibility!r}", field="visibility"
        )
    if media not in MEDIA_KINDS:
        raise InvalidInput(f"media must be one of {', '.join(MEDIA_KINDS)}, not {media!r}", field="media")
    author = _actor(session, author_id)
    if reply_to is not None:
        _interaction_target(
            session, actor=author, post_id=reply_to, action="reply to", field="reply_to", widens=False
        )
    if quote_of is not None:
        _interaction_target(
            session, actor=author, post_id=quote_of, action="quote", field="quote_of", widens=True
        )
    post = Post(
        author_id=author.id,
        created_at=at or utcnow(),
        text=text,
        visibility=visibility,
        reply_to=reply_to,
        quote_of=quote_of,
        media=media,
    )
    session.add(post)
    session.flush()
    return post


def delete_post(session: Session, *, account_id: int, post_id: int, at: datetime | None = None) -> Post:
    """Delete one of the account's own posts (``deleted_at`` is set; the row stays for the lake)."""
    post, author = readable_post(session, post_id=post_id, viewer_id=account_id)
    if author.id != account_id:
        raise Forbidden(f"post {post_id} is @{author.handle}'s: only its author can delete it")
    post.deleted_at = at or utcnow()
    revoke_records(
        session,
        category="posts",
        record_ids=[post_id],
        account_ids=[account_id],
        reason="post_deleted",
        at=post.deleted_at,
    )
    return post


def _counts(kind: str, column: InstrumentedAttribute[Any], *where: ColumnElement[bool]) -> Select[Any]:
    ids: Any = bindparam("ids", expanding=True)
    return select(literal(kind), column, func.count()).where(column.in_(ids), *where).group_by(column)


_COUNTS = union_all(  # likes, reposts and replies of a list of posts in one query, built once
    _counts("likes", Like.post_id),
    _counts("reposts", Repost.post_id),
    _counts("replies", Post.reply_to, Post.deleted_at.is_(None)),
)
_POST_AND_AUTHOR = (
    select(Post, Account).join(Account, Account.id == Post.author_id).where(Post.id == bindparam("post_id"))
)


def post_views(session: Session, posts: Sequence[Post]) -> list[PostView]:
    """Posts with their authors' handles and counts, in the given order."""
    if not posts:
        return []
    ids = [p.id for p in posts]
    handles: dict[int, str] = {}
    for author_id in {p.author_id for p in posts}:  # authors already loaded in the session cost nothing
        loaded = session.identity_map.get(identity_key(Account, author_id))
        if isinstance(loaded, Account):
            handles[author_id] = loaded.handle
    missing = {p.author_id for p in posts} - handles.keys()
    if missing:
        authors = select(Account.id, Account.handle).where(Account.id.in_(missing))
        handles.update({account_id: handle for account_id, handle in session.execute(authors)})

    tally: dict[str, dict[int, int]] = {"likes": {}, "reposts": {}, "replies": {}}
    for kind, key, count in session.execute(_COUNTS, {"ids": ids}):
        tally[kind][int(key)] = int(count)
    likes, reposts, replies = tally["likes"], tally["reposts"], tally["replies"]
    return [
        PostView(p, handles[p.author_id], likes.get(p.id, 0), reposts.get(p.id, 0), replies.get(p.id, 0))
        for p in posts
    ]


def get_post(
    session: Session, *, post_id: int, viewer_id: int | None, blocked_can_read: bool = True
) -> PostView:
    """One post as ``viewer_id`` (``None``: anonymous) sees it."""
    post, _ = readable_post(session, post_id=post_id, viewer_id=viewer_id, blocked_can_read=blocked_can_read)
    return post_views(session, [post])[0]


@dataclass(frozen=True)
class AccountPosts:
    """A page of an account's posts; ``complete`` is false unless the reader is the account or an approved
    follower (followers-only posts, and every post of a protected account, are then left out)."""

    account: Account
    posts: list[PostView]
    complete: bool
    next_before: int | None


def account_posts(
    session: Session,
    *,
    account_id: int,
    viewer_id: int | None,
    blocked_can_read: bool = True,
    limit: int = 20,
    before: int | None = None,
) -> AccountPosts:
    """The account's live posts that ``viewer_id`` may read, newest first, ``before`` a post id."""
    if not 1 <= limit <= PAGE_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {PAGE_LIMIT}", field="limit")
    account = session.get(Account, account_id)
    if account is None or (account.status == "deactivated" and viewer_id != account_id):
        raise NotFound(f"account {account_id} does not exist", field="account_id")
    if account.status == "deleted":
        raise Gone(f"account {account_id} was deleted", field="account_id")
    blocked = viewer_id is not None and viewer_id != account_id and blocks(session, account_id, viewer_id)
    if blocked and not blocked_can_read:
        raise Forbidden(f"@{account.handle} has blocked you: you cannot read their posts")
    everything = viewer_id == account_id or (
        viewer_id is not None and follows(session, viewer_id, account_id)
    )
    if account.protected and not everything:
        return AccountPosts(account, [], complete=False, next_before=None)
    query = select(Post).where(Post.author_id == account_id, Post.deleted_at.is_(None))
    if not everything:
        query = query.where(Post.visibility == "public")
    if before is not None:
        query = query.where(Post.id < before)
    rows = list(session.scalars(query.order_by(Post.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return AccountPosts(
        account,
        post_views(session, rows),
        complete=everything,
        next_before=rows[-1].id if more else None,
    )


def like_post(session: Session, *, account_id: int, post_id: int, at: datetime | None = None) -> bool:
    """Like a post (idempotent); returns whether a new like was recorded."""
    actor = _actor(session, account_id)
    _interaction_target(session, actor=actor, post_id=post_id, action="like", field="post_id", widens=False)
    return _insert_new(session, Like, account_id=account_id, post_id=post_id, created_at=at or utcnow())


def unlike_post(session: Session, *, account_id: int, post_id: int) -> bool:
    """Withdraw a like; returns whether there was one."""
    get_account(session, account_id)
    if session.get(Post, post_id) is None:
        raise _invisible(post_id, "post_id")
    return _removed(session, delete(Like).where(Like.account_id == account_id, Like.post_id == post_id))


def repost_post(session: Session, *, account_id: int, post_id: int, at: datetime | None = None) -> bool:
    """Repost a public post (idempotent); returns whether a new repost was recorded."""
    actor = _actor(session, account_id)
    _interaction_target(session, actor=actor, post_id=post_id, action="repost", field="post_id", widens=True)
    return _insert_new(session, Repost, account_id=account_id, post_id=post_id, created_at=at or utcnow())


def unrepost_post(session: Session, *, account_id: int, post_id: int) -> bool:
    """Withdraw a repost; returns whether there was one."""
    get_account(session, account_id)
    if session.get(Post, post_id) is None:
        raise _invisible(post_id, "post_id")
    return _removed(session, delete(Repost).where(Repost.account_id == account_id, Repost.post_id == post_id))


# --- follows and blocks -----------------------------------------------------------------------------


def follow(
    session: Session, *, follower_id: int, followee_id: int, at: datetime | None = None
) -> tuple[Follow, bool]:
    """Follow an account (idempotent); returns the relation and whether it is new. Following a
    protected account is a request (``pending``) until it approves."""
    actor = _actor(session, follower_id)
    if follower_id == followee_id:
        raise InvalidInput("an account cannot follow itself", field="account_id")
    target = visible_account(session, followee_id)
    _no_block(session, actor, target, "follow them")
    created = _insert_new(
        session,
        Follow,
        follower_id=follower_id,
        followee_id=followee_id,
        created_at=at or utcnow(),
        pending=target.protected,
    )
    row = session.get(Follow, (follower_id, followee_id))
    assert row is not None
    return row, created


def unfollow(session: Session, *, follower_id: int, followee_id: int) -> bool:
    """Stop following (or withdraw a follow request); returns whether there was anything to remove."""
    get_account(session, follower_id)
    get_account(session, followee_id)
    return _removed(
        session, delete(Follow).where(Follow.follower_id == follower_id, Follow.followee_id == followee_id)
    )


def follow_requests(session: Session, *, account_id: int) -> list[tuple[Follow, str]]:
    """Pending requests to follow ``account_id``, oldest first, with each requester's handle."""
    query = (
        select(Follow, Account.handle)
        .join(Account, Account.id == Follow.follower_id)
        .where(Follow.followee_id == account_id, Follow.pending.is_(True))
        .order_by(Follow.created_at, Follow.follower_id)
    )
    return [(row, handle) for row, handle in session.execute(query)]


def _pending(session: Session, *, account_id: int, follower_id: int) -> Follow:
    row = session.get(Follow, (follower_id, account_id))
    if row is None or not row.pending:
        raise NotFound(f"account {follower_id} has not asked to follow you", field="follower_id")
    return row


def approve_follower(
    session: Session, *, account_id: int, follower_id: int, at: datetime | None = None
) -> Follow:
    """Approve a pending follow request: the follow starts now."""
    _actor(session, account_id)
    row = _pending(session, account_id=account_id, follower_id=follower_id)
    row.pending, row.created_at = False, at or utcnow()
    return row


def decline_follower(session: Session, *, account_id: int, follower_id: int) -> None:
    """Decline a pending follow request."""
    session.delete(_pending(session, account_id=account_id, follower_id=follower_id))


def block(session: Session, *, blocker_id: int, blocked_id: int, at: datetime | None = None) -> bool:
    """Block an account (idempotent); follows between the two, either way, end. Whether it is new."""
    _actor(session, blocker_id)
    if blocker_id == blocked_id:
        raise InvalidInput("an account cannot block itself", field="account_id")
    visible_account(session, blocked_id)
    session.execute(
        delete(Follow).where(
            or_(
                (Follow.follower_id == blocker_id) & (Follow.followee_id == blocked_id),
                (Follow.follower_id == blocked_id) & (Follow.followee_id == blocker_id),
            )
        )
    )
    return _insert_new(
        session, Block, blocker_id=blocker_id, blocked_id=blocked_id, created_at=at or utcnow()
    )


def unblock(session: Session, *, blocker_id: int, blocked_id: int) -> bool:
    """Lift a block; returns whether there was one."""
    get_account(session, blocker_id)
    get_account(session, blocked_id)
    return _removed(
        session, delete(Block).where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id)
    )


# --- assistant --------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]{4,}", re.UNICODE)
_STOP = frozenset((
    "about", "after", "again", "also", "because", "been", "before", "being", "could", "does", "doing",
    "from", "have", "having", "here", "into", "just", "know", "like", "more", "most", "much", "must",
    "only", "other", "over", "people", "really", "should", "some", "such", "than", "that", "their", "them",
    "then", "there", "these", "they", "this", "those", "through", "very", "want", "were", "what", "when",
    "where", "which", "while", "will", "with", "would", "your", "write", "short", "post", "tell", "give",
    "explain", "summarise", "summarize", "recommend", "something", "everyone", "talking", "saying",
    "think", "thoughts", "anyone",
))  # fmt: skip


def prompt_keywords(prompt: str, *, limit: int = 5) -> list[str]:
    """The words of a prompt worth searching posts for (longest first, then in prompt order)."""
    words: list[str] = []
    for word in _WORD.findall(prompt.lower()):
        if word not in _STOP and word not in words:
            words.append(word)
    return sorted(words, key=len, reverse=True)[:limit]


def realtime_sources(
    session: Session,
    *,
    prompt: str,
    viewer_id: int,
    allowed: Callable[[Sequence[int]], set[int]],
    limit: int = 3,
) -> list[Post]:
    """Posts the assistant may draw on when answering ``viewer_id`` in real time.

    The newest live public posts of active, unprotected accounts with no block either way between
    author and viewer that mention a keyword of the prompt, and whose authors ``allowed`` (the consent
    check for ``assistant_realtime``) lets through.
    """
    keywords = prompt_keywords(prompt)
    if not keywords:
        return []
    blocked_by = select(Block.blocker_id).where(Block.blocked_id == viewer_id)
    blocking = select(Block.blocked_id).where(Block.blocker_id == viewer_id)
    query = (
        select(Post)
        .join(Account, Account.id == Post.author_id)
        .where(
            Post.deleted_at.is_(None),
            Post.visibility == "public",
            Account.protected.is_(False),
            Account.status == "active",
            Post.author_id.not_in(blocked_by),
            Post.author_id.not_in(blocking),
            or_(*(Post.text.icontains(word, autoescape=True) for word in keywords)),
        )
        .order_by(Post.id.desc())
        .limit(limit * 20)
    )
    candidates = list(session.scalars(query))
    permitted = allowed(sorted({post.author_id for post in candidates}))
    return [post for post in candidates if post.author_id in permitted][:limit]


def _snippet(text: str, size: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= size else flat[: size - 1].rstrip() + "…"


def canned_response(prompt: str, sources: Sequence[Post]) -> str:
    """The demo assistant's deterministic answer: what the source posts say, or a polite fallback."""
    keywords = prompt_keywords(prompt)
    if not sources:
        topic = f" about {keywords[0]}" if keywords else ""
        return (
            f"I could not find recent public posts{topic} that I may use. "
            "Try asking about something people here are talking about."
        )
    quoted = " ".join(f'Post {post.id}: "{_snippet(post.text)}"' for post in sources)
    return f"Here is what people on the platform are saying about {keywords[0]}. {quoted}"


@dataclass(frozen=True)
class ChatResult:
    """A recorded exchange with the assistant and the posts its answer drew on."""

    interaction: AssistantInteraction
    sources: list[Post]


def chat(
    session: Session,
    *,
    account_id: int,
    prompt: str,
    allowed: Callable[[Sequence[int]], set[int]],
    at: datetime | None = None,
) -> ChatResult:
    """Ask the assistant; the prompt and its (canned) response are recorded as an interaction.

    ``allowed`` returns the authors, among those given, who allow real-time AI use of their posts.
    """
    _check_text(prompt, field="prompt", limit=PROMPT_LIMIT)
    _actor(session, account_id)
    sources = realtime_sources(session, prompt=prompt, viewer_id=account_id, allowed=allowed)
    interaction = AssistantInteraction(
        account_id=account_id,
        created_at=at or utcnow(),
        prompt=prompt,
        response=canned_response(prompt, sources),
    )
    session.add(interaction)
    session.flush()
    return ChatResult(interaction, sources)


def interactions(
    session: Session, *, account_id: int, limit: int = 20, before: int | None = None
) -> list[AssistantInteraction]:
    """The account's live assistant interactions, newest first, ``before`` an interaction id."""
    if not 1 <= limit <= PAGE_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {PAGE_LIMIT}", field="limit")
    query = select(AssistantInteraction).where(
        AssistantInteraction.account_id == account_id, AssistantInteraction.deleted_at.is_(None)
    )
    if before is not None:
        query = query.where(AssistantInteraction.id < before)
    return list(session.scalars(query.order_by(AssistantInteraction.id.desc()).limit(limit)))


def delete_interaction(
    session: Session, *, account_id: int, interaction_id: int, at: datetime | None = None
) -> AssistantInteraction:
    """Delete one of the account's own assistant interactions."""
    row = session.get(AssistantInteraction, interaction_id)
    if row is None or row.account_id != account_id:
        raise NotFound(f"interaction {interaction_id} does not exist", field="interaction_id")
    if row.deleted_at is not None:
        raise Gone(f"interaction {interaction_id} was deleted", field="interaction_id")
    row.deleted_at = at or utcnow()
    revoke_records(
        session,
        category="assistant_interactions",
        record_ids=[interaction_id],
        account_ids=[account_id],
        reason="interaction_deleted",
        at=row.deleted_at,
    )
    return row
