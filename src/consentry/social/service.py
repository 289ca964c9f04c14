"""The reference platform's use cases: accounts, posts, follows, blocks, likes and reposts.

Who may see and act on what is decided in ``consentry.social.rules`` (the visibility rules are written
out there); the assistant's chats are in ``consentry.social.assistant``. Both are re-exported here, so this
module stays the domain's one face for its callers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
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
from consentry.consent.models import Subject
from consentry.db import Base, utcnow
from consentry.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound
from consentry.lake.schema import COUNTRY_CODES
from consentry.links.service import drop_links
from consentry.partners.revocations import revoke_accounts, revoke_records
from consentry.retention.models import LegalHold
from consentry.social.assistant import ChatResult as ChatResult
from consentry.social.assistant import canned_response as canned_response
from consentry.social.assistant import chat as chat
from consentry.social.assistant import delete_interaction as delete_interaction
from consentry.social.assistant import interactions as interactions
from consentry.social.assistant import prompt_keywords as prompt_keywords
from consentry.social.assistant import realtime_sources as realtime_sources
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
from consentry.social.rules import PAGE_LIMIT as PAGE_LIMIT
from consentry.social.rules import (
    POST_COLUMNS,
    TEXT_LIMIT,
    AnyRow,
    Rows,
    acting_account,
    check_text,
    interaction_target,
    invisible,
    no_block,
    rows,
)
from consentry.social.rules import PROMPT_LIMIT as PROMPT_LIMIT
from consentry.social.rules import blocks as blocks
from consentry.social.rules import follows as follows
from consentry.social.rules import get_account as get_account
from consentry.social.rules import readable_post as readable_post
from consentry.social.rules import restricted as restricted
from consentry.social.rules import visible_account as visible_account

HANDLE = re.compile(r"^[A-Za-z0-9_]{1,64}$")


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


# --- posts ------------------------------------------------------------------------------------------


class PostFields(Protocol):
    """What a post view reads of a post: an ORM ``Post`` or a row of ``POST_COLUMNS``."""

    @property
    def id(self) -> int: ...
    @property
    def author_id(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def text(self) -> str: ...
    @property
    def visibility(self) -> str: ...
    @property
    def media(self) -> str: ...
    @property
    def reply_to(self) -> int | None: ...
    @property
    def quote_of(self) -> int | None: ...


@dataclass(frozen=True)
class PostView:
    """A post as readers see it: the post, its author's handle, and counts of likes, reposts, replies."""

    post: PostFields
    author_handle: str
    likes: int = 0
    reposts: int = 0
    replies: int = 0


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
    check_text(text, field="text", limit=TEXT_LIMIT)
    if visibility not in VISIBILITIES:
        raise InvalidInput(
            f"visibility must be one of {', '.join(VISIBILITIES)}, not {visibility!r}", field="visibility"
        )
    if media not in MEDIA_KINDS:
        raise InvalidInput(f"media must be one of {', '.join(MEDIA_KINDS)}, not {media!r}", field="media")
    author = acting_account(session, author_id)
    if reply_to is not None:
        interaction_target(
            session, actor=author, post_id=reply_to, action="reply to", field="reply_to", widens=False
        )
    if quote_of is not None:
        interaction_target(
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
    found = readable_post(session, post_id=post_id, viewer_id=account_id)
    if found.author_id != account_id:
        raise Forbidden(f"post {post_id} is @{found.author_handle}'s: only its author can delete it")
    post = session.get(Post, post_id)
    assert post is not None  # just read
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


_HANDLES: Rows = select(Account.id, Account.handle).where(Account.id.in_(bindparam("ids", expanding=True)))
_COUNTS: CompoundSelect[*tuple[Any, ...]] = (
    union_all(  # likes, reposts and replies of a list of posts in one query, built once
        _counts("likes", Like.post_id),
        _counts("reposts", Repost.post_id),
        _counts("replies", Post.reply_to, Post.deleted_at.is_(None)),
    )
)


def post_views(
    session: Session, posts: Sequence[PostFields], *, handles: Mapping[int, str] | None = None
) -> list[PostView]:
    """Posts (ORM objects or rows of ``POST_COLUMNS``) with their authors' handles and counts, in the given
    order; ``handles`` names authors the caller already knows."""
    if not posts:
        return []
    ids = [p.id for p in posts]
    known = dict(handles or {})
    for author_id in {p.author_id for p in posts} - known.keys():  # authors loaded in the session: free
        loaded = session.identity_map.get(identity_key(Account, author_id))
        if isinstance(loaded, Account):
            known[author_id] = loaded.handle
    missing = {p.author_id for p in posts} - known.keys()
    if missing:
        authors = rows(session, _HANDLES, {"ids": sorted(missing)})
        known.update({account_id: handle for account_id, handle in authors})

    tally: dict[str, dict[int, int]] = {"likes": {}, "reposts": {}, "replies": {}}
    for kind, key, count in rows(session, _COUNTS, {"ids": ids}):
        tally[kind][int(key)] = int(count)
    likes, reposts, replies = tally["likes"], tally["reposts"], tally["replies"]
    return [
        PostView(p, known[p.author_id], likes.get(p.id, 0), reposts.get(p.id, 0), replies.get(p.id, 0))
        for p in posts
    ]


def get_post(
    session: Session, *, post_id: int, viewer_id: int | None, blocked_can_read: bool = True
) -> PostView:
    """One post as ``viewer_id`` (``None``: anonymous) sees it."""
    found = readable_post(session, post_id=post_id, viewer_id=viewer_id, blocked_can_read=blocked_can_read)
    return post_views(session, [found], handles={found.author_id: found.author_handle})[0]


@dataclass(frozen=True)
class AccountPosts:
    """A page of an account's posts; ``complete`` is false unless the reader is the account or an approved
    follower (followers-only posts, and every post of a protected account, are then left out).
    ``account`` is a row of ``id``, ``handle``, ``created_at``, ``protected`` and ``status``."""

    account: AnyRow
    posts: list[PostView]
    complete: bool
    next_before: int | None


_PROFILE: Rows = select(
    Account.id, Account.handle, Account.created_at, Account.protected, Account.status
).where(Account.id == bindparam("account_id"))


@functools.cache
def _page(everything: bool, before: bool) -> Rows:
    """The statement of a page of an account's posts (four forms, each built once)."""
    query: Rows = select(*POST_COLUMNS).where(
        Post.author_id == bindparam("account_id"), Post.deleted_at.is_(None)
    )
    if not everything:
        query = query.where(Post.visibility == "public")
    if before:
        query = query.where(Post.id < bindparam("before"))
    return query.order_by(Post.id.desc()).limit(bindparam("limit"))


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
    account = rows(session, _PROFILE, {"account_id": account_id}).one_or_none()
    if account is None or (account.status == "deactivated" and viewer_id != account_id):
        raise NotFound(f"account {account_id} does not exist", field="account_id")
    if account.status == "deleted":
        raise Gone(f"account {account_id} was deleted", field="account_id")
    reader = viewer_id if viewer_id is not None and viewer_id != account_id else None
    if reader is not None and not blocked_can_read and blocks(session, account_id, reader):
        raise Forbidden(f"@{account.handle} has blocked you: you cannot read their posts")
    everything = viewer_id == account_id or (
        viewer_id is not None and follows(session, viewer_id, account_id)
    )
    if account.protected and not everything:
        return AccountPosts(account, [], complete=False, next_before=None)
    values = {"account_id": account_id, "before": before, "limit": limit + 1}
    found = rows(session, _page(everything, before is not None), values).all()
    more = len(found) > limit
    found = found[:limit]
    return AccountPosts(
        account,
        post_views(session, found, handles={account.id: account.handle}),
        complete=everything,
        next_before=found[-1].id if more else None,
    )


def like_post(session: Session, *, account_id: int, post_id: int, at: datetime | None = None) -> bool:
    """Like a post (idempotent); returns whether a new like was recorded."""
    actor = acting_account(session, account_id)
    interaction_target(session, actor=actor, post_id=post_id, action="like", field="post_id", widens=False)
    return _insert_new(session, Like, account_id=account_id, post_id=post_id, created_at=at or utcnow())


def unlike_post(session: Session, *, account_id: int, post_id: int) -> bool:
    """Withdraw a like; returns whether there was one."""
    get_account(session, account_id)
    if session.get(Post, post_id) is None:
        raise invisible(post_id, "post_id")
    return _removed(session, delete(Like).where(Like.account_id == account_id, Like.post_id == post_id))


def repost_post(session: Session, *, account_id: int, post_id: int, at: datetime | None = None) -> bool:
    """Repost a public post (idempotent); returns whether a new repost was recorded."""
    actor = acting_account(session, account_id)
    interaction_target(session, actor=actor, post_id=post_id, action="repost", field="post_id", widens=True)
    return _insert_new(session, Repost, account_id=account_id, post_id=post_id, created_at=at or utcnow())


def unrepost_post(session: Session, *, account_id: int, post_id: int) -> bool:
    """Withdraw a repost; returns whether there was one."""
    get_account(session, account_id)
    if session.get(Post, post_id) is None:
        raise invisible(post_id, "post_id")
    return _removed(session, delete(Repost).where(Repost.account_id == account_id, Repost.post_id == post_id))


# --- follows and blocks -----------------------------------------------------------------------------


def follow(
    session: Session, *, follower_id: int, followee_id: int, at: datetime | None = None
) -> tuple[Follow, bool]:
    """Follow an account (idempotent); returns the relation and whether it is new. Following a
    protected account is a request (``pending``) until it approves."""
    actor = acting_account(session, follower_id)
    if follower_id == followee_id:
        raise InvalidInput("an account cannot follow itself", field="account_id")
    target = visible_account(session, followee_id)
    no_block(session, actor, target.id, target.handle, "follow them")
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
    acting_account(session, account_id)
    row = _pending(session, account_id=account_id, follower_id=follower_id)
    row.pending, row.created_at = False, at or utcnow()
    return row


def decline_follower(session: Session, *, account_id: int, follower_id: int) -> None:
    """Decline a pending follow request."""
    session.delete(_pending(session, account_id=account_id, follower_id=follower_id))


def block(session: Session, *, blocker_id: int, blocked_id: int, at: datetime | None = None) -> bool:
    """Block an account (idempotent); follows between the two, either way, end. Whether it is new."""
    acting_account(session, blocker_id)
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
