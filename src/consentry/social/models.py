"""Tables of the reference platform: accounts, posts, follows, blocks, likes, reposts, assistant chats.

Column names follow the data contract (``consentry.lake.schema``) where it has the column; a table's own
id is ``id`` (exported as ``account_id``, ``post_id``, ``interaction_id``). Nothing is ever hard-deleted
except relations (follows, blocks, likes, reposts): posts and interactions get ``deleted_at``, accounts a
status.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from consentry.db import Base, UTCDateTime

ACCOUNT_STATUSES = ("active", "deactivated", "deleted")
VISIBILITIES = ("public", "followers")
MEDIA_KINDS = ("none", "image", "video")

BigId = BigInteger().with_variant(Integer, "sqlite")


class Account(Base):
    """An account holder of the platform."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("status IN ('active', 'deactivated', 'deleted')", name="status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    country: Mapped[str | None] = mapped_column(String(2))
    birth_year: Mapped[int | None] = mapped_column(SmallInteger)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Post(Base):
    """A post; a reply names ``reply_to``, a quote ``quote_of``. Deleting sets ``deleted_at``."""

    __tablename__ = "posts"
    __table_args__ = (
        CheckConstraint("visibility IN ('public', 'followers')", name="visibility"),
        CheckConstraint("media IN ('none', 'image', 'video')", name="media"),
        Index("ix_posts_author_created", "author_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    author_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    text: Mapped[str] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    reply_to: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("posts.id"), index=True)
    quote_of: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("posts.id"), index=True)
    media: Mapped[str] = mapped_column(String(8), default="none")
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Follow(Base):
    """``follower_id`` follows ``followee_id``; ``pending`` while a protected account has not approved."""

    __tablename__ = "follows"
    __table_args__ = (
        CheckConstraint("follower_id <> followee_id", name="not_self"),
        Index("ix_follows_followee", "followee_id", "pending"),
    )

    follower_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"), primary_key=True)
    followee_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    pending: Mapped[bool] = mapped_column(Boolean, default=False)


class Block(Base):
    """``blocker_id`` blocks ``blocked_id``."""

    __tablename__ = "blocks"
    __table_args__ = (CheckConstraint("blocker_id <> blocked_id", name="not_self"),)

    blocker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"), primary_key=True)
    blocked_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("accounts.id"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Like(Base):
    """``account_id`` likes ``post_id``."""

    __tablename__ = "likes"

    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"), primary_key=True)
    post_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("posts.id"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Repost(Base):
    """``account_id`` reposts ``post_id`` to its followers."""

    __tablename__ = "reposts"

    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"), primary_key=True)
    post_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("posts.id"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AssistantInteraction(Base):
    """One exchange with the platform's assistant: a prompt and its response."""

    __tablename__ = "assistant_interactions"
    __table_args__ = (Index("ix_assistant_interactions_account_created", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    prompt: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
