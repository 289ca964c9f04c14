"""API shapes of the reference platform: accounts, posts, relations, assistant chats."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from consentry.ids import Id64

if TYPE_CHECKING:
    from consentry.social.service import PostView


class AccountIn(BaseModel):
    """A new account."""

    model_config = ConfigDict(extra="forbid")

    handle: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")
    country: str | None = Field(default=None, min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$")
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    protected: bool = False


class AccountOut(BaseModel):
    """An account."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    handle: str
    created_at: datetime
    country: str | None
    birth_year: int | None
    protected: bool
    status: str
    status_changed_at: datetime | None


# --- the platform -----------------------------------------------------------------------------------

Visibility = Literal["public", "followers"]
Media = Literal["none", "image", "video"]


class PostIn(BaseModel):
    """A new post; a reply names ``reply_to``, a quote ``quote_of``. Text: 1 to 4,000 characters."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(examples=["Finally tried the new ramen place. 10/10"])
    visibility: Visibility = Field(default="public", description="public, or followers (approved only)")
    media: Media = "none"
    reply_to: Id64 | None = Field(default=None, description="id of the post this replies to")
    quote_of: Id64 | None = Field(default=None, description="id of the post this quotes")


class PostOut(BaseModel):
    """A post as its reader may see it."""

    id: int
    author_id: int
    author_handle: str
    created_at: datetime
    text: str
    visibility: Visibility
    media: Media
    reply_to: int | None
    quote_of: int | None
    likes: int
    reposts: int
    replies: int

    @classmethod
    def of(cls, view: PostView) -> PostOut:
        """Build from the service's view of a post."""
        post = view.post
        return cls(
            id=post.id,
            author_id=post.author_id,
            author_handle=view.author_handle,
            created_at=post.created_at,
            text=post.text,
            visibility=post.visibility,
            media=post.media,
            reply_to=post.reply_to,
            quote_of=post.quote_of,
            likes=view.likes,
            reposts=view.reposts,
            replies=view.replies,
        )


class ProfileOut(BaseModel):
    """What anybody may see of an account."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    handle: str
    created_at: datetime
    protected: bool


class PostPage(BaseModel):
    """A page of an account's posts, newest first."""

    account: ProfileOut
    posts: list[PostOut]
    complete: bool = Field(
        description="false unless you are the account or its approved follower: followers-only posts "
        "(and every post of a protected account) are then left out"
    )
    next_before: int | None = Field(description="pass as ?before= for the next page; null at the end")


class ActionOut(BaseModel):
    """The state of a relation after a like, repost, follow or block (or their undoing)."""

    account_id: int
    target_id: int
    state: Literal["liked", "not_liked", "reposted", "not_reposted", "following", "requested",
                   "not_following", "blocking", "not_blocking", "declined"]  # fmt: skip
    changed: bool = Field(description="false when the request changed nothing (it was already so)")


class FollowRequestOut(BaseModel):
    """A pending request to follow the caller."""

    follower_id: int
    handle: str
    requested_at: datetime


class ChatIn(BaseModel):
    """A prompt for the assistant (1 to 4,000 characters)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(examples=["What are people saying about sourdough?"])


class InteractionOut(BaseModel):
    """One recorded exchange with the assistant."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: int
    created_at: datetime
    prompt: str
    response: str


class ChatOut(InteractionOut):
    """The assistant's answer, recorded as an interaction, with the posts it drew on."""

    source_post_ids: list[int]
