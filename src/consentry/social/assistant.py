"""The platform's assistant: chats recorded as interactions, answered from posts whose authors allow
real-time AI use (the consent check is the caller's ``allowed``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from consentry.db import utcnow
from consentry.errors import Gone, InvalidInput, NotFound
from consentry.partners.revocations import revoke_records
from consentry.social.models import Account, AssistantInteraction, Block, Post
from consentry.social.rules import PAGE_LIMIT, PROMPT_LIMIT, acting_account, check_text

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
    check_text(prompt, field="prompt", limit=PROMPT_LIMIT)
    acting_account(session, account_id)
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
