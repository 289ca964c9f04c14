"""The reference platform's rules: who may see a post or an account, who may act on it, and the limits of
what they write.

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

from collections.abc import Mapping
from typing import Any, TypeAlias

from sqlalchemy import CompoundSelect, Result, Row, Select, bindparam, select
from sqlalchemy.orm import Session

from consentry.errors import Forbidden, Gone, InvalidInput, NotFound
from consentry.social.models import Account, Block, Follow, Post

AnyRow: TypeAlias = Row[*tuple[Any, ...]]
"""A result row read by column name (``row.author_id``)."""
Rows: TypeAlias = Select[*tuple[Any, ...]]
"""A statement of such rows."""

TEXT_LIMIT = 4000
"""Longest post text, in characters."""
PROMPT_LIMIT = 4000
"""Longest assistant prompt, in characters."""
PAGE_LIMIT = 100
"""Most posts or interactions one page holds."""


def check_text(text: object, *, field: str, limit: int) -> str:
    """``text`` if it is a non-empty string of at most ``limit`` characters, else ``InvalidInput``."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{field} must be a non-empty string", field=field)
    if len(text) > limit:
        raise InvalidInput(f"{field} is limited to {limit:,} characters, got {len(text):,}", field=field)
    return text


def get_account(session: Session, account_id: int) -> Account:
    """The account with this id, or ``NotFound``."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist", field="account_id")
    return account


# --- relations --------------------------------------------------------------------------------------


def rows(
    session: Session, statement: Rows | CompoundSelect[*tuple[Any, ...]], values: Mapping[str, Any]
) -> Result[*tuple[Any, ...]]:
    """Run a Core statement of columns on the session's connection: the ORM's execution path costs more
    than the query itself on the read routes. Changes pending in the session are flushed first, as the
    ORM's autoflush would."""
    if session.new or session.dirty or session.deleted:
        session.flush()
    return session.connection().execute(statement, values)


_BLOCK: Rows = select(Block.blocker_id).where(
    Block.blocker_id == bindparam("blocker"), Block.blocked_id == bindparam("blocked")
)
_FOLLOW: Rows = select(Follow.pending).where(
    Follow.follower_id == bindparam("follower"), Follow.followee_id == bindparam("followee")
)


def blocks(session: Session, blocker_id: int, blocked_id: int) -> bool:
    """Whether ``blocker_id`` blocks ``blocked_id``."""
    return rows(session, _BLOCK, {"blocker": blocker_id, "blocked": blocked_id}).first() is not None


def follows(session: Session, follower_id: int, followee_id: int) -> bool:
    """Whether ``follower_id`` is an approved follower of ``followee_id``."""
    found = rows(session, _FOLLOW, {"follower": follower_id, "followee": followee_id}).first()
    return found is not None and not found.pending


def acting_account(session: Session, account_id: int) -> Account:
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


def no_block(session: Session, actor: Account, other_id: int, other_handle: str, action: str) -> None:
    """``Forbidden`` naming the block when either account blocks the other."""
    if blocks(session, other_id, actor.id):
        raise Forbidden(f"@{other_handle} has blocked you: you cannot {action}")
    if blocks(session, actor.id, other_id):
        raise Forbidden(f"you have blocked @{other_handle}: unblock them to {action}")


# --- visibility -------------------------------------------------------------------------------------


def restricted(visibility: str, protected: bool) -> bool:
    """Whether a post of this visibility, by an author who is ``protected`` or not, is for the author's
    approved followers only."""
    return visibility != "public" or protected


def invisible(post_id: int, field: str) -> NotFound:
    """The answer for a post that does not exist or the reader may not see (the same, so nothing leaks)."""
    return NotFound(f"post {post_id} does not exist or is not visible to you", field=field)


POST_COLUMNS = (
    Post.id,
    Post.author_id,
    Post.created_at,
    Post.text,
    Post.visibility,
    Post.media,
    Post.reply_to,
    Post.quote_of,
    Post.deleted_at,
)
"""The columns of a post as readers see it (rows, not ORM objects: reading is most of the traffic)."""

_POST_AND_AUTHOR: Rows = (  # built once: building a statement costs more than running it
    select(
        *POST_COLUMNS,
        Account.handle.label("author_handle"),
        Account.status.label("author_status"),
        Account.protected.label("author_protected"),
    )
    .join(Account, Account.id == Post.author_id)
    .where(Post.id == bindparam("post_id"))
)


def readable_post(
    session: Session,
    *,
    post_id: int,
    viewer_id: int | None,
    blocked_can_read: bool = True,
    field: str = "post_id",
) -> AnyRow:
    """The post (``POST_COLUMNS``, with ``author_handle``, ``author_status`` and ``author_protected``), if
    ``viewer_id`` (``None``: anonymous) may read it (see the module doc)."""
    # one query for the post and its author (foreign key: every post has one)
    found = rows(session, _POST_AND_AUTHOR, {"post_id": post_id}).one_or_none()
    if found is None:
        raise invisible(post_id, field)
    if found.deleted_at is not None:
        raise Gone(f"post {post_id} was deleted", field=field)
    if found.author_status == "deleted":
        raise Gone(f"post {post_id} was deleted with its author's account", field=field)
    author_id = found.author_id
    if viewer_id == author_id:
        return found
    if found.author_status != "active":
        raise invisible(post_id, field)
    if viewer_id is not None and not blocked_can_read and blocks(session, author_id, viewer_id):
        raise Forbidden(f"@{found.author_handle} has blocked you: you cannot read their posts")
    if restricted(found.visibility, found.author_protected) and (
        viewer_id is None or not follows(session, viewer_id, author_id)
    ):
        raise invisible(post_id, field)
    return found


def interaction_target(
    session: Session, *, actor: Account, post_id: int, action: str, field: str, widens: bool
) -> AnyRow:
    """A post ``actor`` may act on: readable, no block either way, public when ``widens`` the audience."""
    found = readable_post(session, post_id=post_id, viewer_id=actor.id, field=field)
    handle = found.author_handle
    if found.author_id != actor.id:
        no_block(session, actor, found.author_id, handle, f"{action} their posts")
    if widens and restricted(found.visibility, found.author_protected):
        done = {"repost": "reposted", "quote": "quoted"}.get(action, action)
        raise Forbidden(f"post {post_id} is for @{handle}'s followers only: it cannot be {done}")
    return found
