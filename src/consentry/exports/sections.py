"""What an export holds of one account, section by section: each reader streams its rows page by page
from the export's read snapshot into the ZIP (``write_sections``), and ``count_records`` sizes the whole
for progress.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from consentry.consent.models import ConsentEvent, Notification, PolicyVersion
from consentry.consent.receipts import build_receipt
from consentry.consent.service import ConsentContext, settings_view
from consentry.errors import InvalidInput
from consentry.exports.archive import PAGE, ZipWriter
from consentry.social.models import Account, AssistantInteraction, Block, Follow, Like, Post, Repost


def _stream(session: Session, query: Any) -> Iterator[Any]:
    yield from session.execute(query.execution_options(yield_per=PAGE))


def _profile(account: Account, ctx: ConsentContext) -> dict[str, Any]:
    return {
        "account_id": account.id,
        "handle": account.handle,
        "created_at": account.created_at,
        "country": account.country,
        "jurisdiction": ctx.jurisdictions.group_of(account.country),
        "birth_year": account.birth_year,
        "protected": account.protected,
        "status": account.status,
        "status_changed_at": account.status_changed_at,
    }


def _posts(session: Session, account_id: int) -> Iterator[dict[str, Any]]:
    query = select(Post).where(Post.author_id == account_id).order_by(Post.id)
    for (post,) in _stream(session, query):
        deleted = post.deleted_at is not None
        yield {
            "post_id": post.id,
            "created_at": post.created_at,
            "text": None if deleted else post.text,
            "visibility": post.visibility,
            "reply_to": post.reply_to,
            "quote_of": post.quote_of,
            "media": post.media,
            "deleted_at": post.deleted_at,
        }


def _interactions(session: Session, account_id: int) -> Iterator[dict[str, Any]]:
    query = (
        select(AssistantInteraction)
        .where(AssistantInteraction.account_id == account_id)
        .order_by(AssistantInteraction.id)
    )
    for (row,) in _stream(session, query):
        deleted = row.deleted_at is not None
        yield {
            "interaction_id": row.id,
            "created_at": row.created_at,
            "prompt": None if deleted else row.prompt,
            "response": None if deleted else row.response,
            "deleted_at": row.deleted_at,
        }


def _follows(session: Session, account_id: int) -> Iterator[dict[str, Any]]:
    other = aliased(Account)
    following = (
        select(Follow.followee_id, other.handle, Follow.pending, Follow.created_at)
        .join(other, other.id == Follow.followee_id)
        .where(Follow.follower_id == account_id)
        .order_by(Follow.created_at, Follow.followee_id)
    )
    for other_id, handle, pending, created_at in _stream(session, following):
        yield {
            "direction": "following",
            "account_id": other_id,
            "handle": handle,
            "pending": pending,
            "created_at": created_at,
        }
    followers = (
        select(Follow.follower_id, other.handle, Follow.pending, Follow.created_at)
        .join(other, other.id == Follow.follower_id)
        .where(Follow.followee_id == account_id)
        .order_by(Follow.created_at, Follow.follower_id)
    )
    for other_id, handle, pending, created_at in _stream(session, followers):
        yield {
            "direction": "follower",
            "account_id": other_id,
            "handle": handle,
            "pending": pending,
            "created_at": created_at,
        }


def _blocks(session: Session, account_id: int) -> Iterator[dict[str, Any]]:
    query = (
        select(Block.blocked_id, Account.handle, Block.created_at)
        .join(Account, Account.id == Block.blocked_id)
        .where(Block.blocker_id == account_id)
        .order_by(Block.created_at, Block.blocked_id)
    )
    for blocked_id, handle, created_at in _stream(session, query):
        yield {"account_id": blocked_id, "handle": handle, "created_at": created_at}


def _marks(session: Session, model: type[Like] | type[Repost], account_id: int) -> Iterator[dict[str, Any]]:
    query = (
        select(model.post_id, model.created_at)
        .where(model.account_id == account_id)
        .order_by(model.created_at, model.post_id)
    )
    for post_id, created_at in _stream(session, query):
        yield {"post_id": post_id, "created_at": created_at}


def _notifications(session: Session, account_id: int) -> Iterator[dict[str, Any]]:
    query = select(Notification).where(Notification.account_id == account_id).order_by(Notification.id)
    for (row,) in _stream(session, query):
        yield {
            "id": row.id,
            "kind": row.kind,
            "payload": row.payload,
            "created_at": row.created_at,
            "delivered_at": row.delivered_at,
        }


def _events(session: Session, subject_key: str | None) -> list[ConsentEvent]:
    if subject_key is None:
        return []
    query = select(ConsentEvent).where(ConsentEvent.subject_key == subject_key).order_by(ConsentEvent.seq)
    return list(session.scalars(query))


def _history(events: list[ConsentEvent]) -> Iterator[dict[str, Any]]:
    for event in events:
        yield {
            "seq": event.seq,
            "setting": event.setting,
            "value": event.value,
            "source": event.source,
            "client": event.client,
            "policy_version": event.policy_version,
            "recorded_at": event.recorded_at,
            "subject_key": event.subject_key,
            "chosen_by": event.chosen_by,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        }


def _receipts(
    session: Session, events: list[ConsentEvent], *, jurisdiction: str, ctx: ConsentContext
) -> Iterator[dict[str, Any]]:
    titles: dict[int, str] = {
        version: title
        for version, title in session.execute(select(PolicyVersion.version, PolicyVersion.title))
    }
    for event in events:
        try:
            setting = ctx.catalog.get(event.setting)
        except InvalidInput:
            yield {"seq": event.seq, "receipt": None, "note": "the setting is no longer in the catalog"}
            continue
        receipt = build_receipt(
            event=event,
            setting=setting,
            jurisdiction=jurisdiction,
            operator_name=ctx.operator_name,
            operator_url=ctx.operator_url,
            policy_title=titles.get(event.policy_version) if event.policy_version is not None else None,
        )
        yield ctx.signer.sign(receipt)


def _data_usage(session: Session, account_id: int) -> list[Any]:
    from consentry.partners.usage import data_usage

    return list(data_usage(session, account_id=account_id))


def count_records(session: Session, account_id: int, subject_key: str | None) -> int:
    """How many records the export will hold (for progress)."""
    counts = [
        select(func.count()).select_from(Post).where(Post.author_id == account_id),
        select(func.count())
        .select_from(AssistantInteraction)
        .where(AssistantInteraction.account_id == account_id),
        select(func.count())
        .select_from(Follow)
        .where(or_(Follow.follower_id == account_id, Follow.followee_id == account_id)),
        select(func.count()).select_from(Block).where(Block.blocker_id == account_id),
        select(func.count()).select_from(Like).where(Like.account_id == account_id),
        select(func.count()).select_from(Repost).where(Repost.account_id == account_id),
        select(func.count()).select_from(Notification).where(Notification.account_id == account_id),
    ]
    total = sum(int(session.scalar(query) or 0) for query in counts)
    if subject_key is not None:
        events = select(func.count()).select_from(ConsentEvent).where(ConsentEvent.subject_key == subject_key)
        total += 2 * int(session.scalar(events) or 0)  # history and receipts
    return total + 6  # account, settings, receipt key, data usage, manifest, README


def write_sections(
    writer: ZipWriter,
    session: Session,
    *,
    account: Account,
    subject_key: str | None,
    ctx: ConsentContext,
    generated_at: datetime,
    cited: Any,
    prefix: str = "",
) -> None:
    """Write the files of one account (everything but the key, README and manifest) under ``prefix``."""
    account_id = account.id
    jurisdiction = ctx.jurisdictions.group_of(account.country)
    writer.document(prefix + "account.json", _profile(account, ctx))
    states = settings_view(session, account_id=account_id, ctx=ctx, at=generated_at)
    writer.document(
        prefix + "settings.json",
        {
            "as_of": generated_at,
            "settings": [
                {
                    "key": s.key,
                    "label": s.label,
                    "value": s.value,
                    "basis": s.basis,
                    "source": "explicit" if s.explicit else "default",
                    "policy_version": s.policy_version,
                    "seq": s.seq,
                }
                for s in states
            ],
        },
        records=len(states),
    )
    events = _events(session, subject_key)
    writer.lines(prefix + "consent_history.jsonl", _history(events))
    writer.lines(prefix + "receipts.jsonl", _receipts(session, events, jurisdiction=jurisdiction, ctx=ctx))
    if not prefix:
        writer.document("receipt-key.json", {"keys": [ctx.signer.jwk]})
    writer.lines(prefix + "posts.jsonl", _posts(session, account_id))
    writer.lines(prefix + "assistant_interactions.jsonl", _interactions(session, account_id))
    writer.lines(prefix + "follows.jsonl", _follows(session, account_id))
    writer.lines(prefix + "blocks.jsonl", _blocks(session, account_id))
    writer.lines(prefix + "likes.jsonl", _marks(session, Like, account_id))
    writer.lines(prefix + "reposts.jsonl", _marks(session, Repost, account_id))
    writer.lines(prefix + "notifications.jsonl", _notifications(session, account_id))
    usage = _data_usage(session, account_id)
    writer.document(prefix + "data_usage.json", {"releases": usage, "checkpoint": cited}, records=len(usage))
