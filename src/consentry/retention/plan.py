"""The retention rules' conditions over the database, shared by plans and runs, and the plan: what every
rule would remove at a given time, counted without changing anything.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    false,
    func,
    not_,
    or_,
    select,
)
from sqlalchemy.orm import Session, aliased

from consentry.auth.models import ApiToken
from consentry.consent.models import ConsentEvent, Notification, Subject
from consentry.db import utcnow
from consentry.errors import InvalidInput
from consentry.metering.models import AccessRecord
from consentry.retention.holds import held_account_ids
from consentry.retention.models import LegalHold
from consentry.retention.rules import DESCRIPTIONS, Cutoffs, Rules
from consentry.retention.schemas import RetentionPlan, RuleOutcome
from consentry.social.models import Account, AssistantInteraction, Block, Follow, Like, Post, Repost

EXAMPLES = 5
"""Example ids per table in plans and reports (the smallest)."""

FUTURE_SLACK = timedelta(minutes=5)
"""How far ahead of the clock a run's ``at`` may be (clock skew); later is refused."""


def held_ids() -> Select[Any]:
    hold = aliased(LegalHold)
    return select(hold.account_id).where(hold.released_at.is_(None))


def _due(table: Any, deleted: datetime | None, created: datetime | None) -> ColumnElement[bool]:
    """Records of ``table`` whose window has passed: deleted before ``deleted`` or created before
    ``created`` (``false`` when the rule keeps everything)."""
    conditions: list[ColumnElement[bool]] = []
    if deleted is not None:
        conditions.append(and_(table.deleted_at.is_not(None), table.deleted_at < deleted))
    if created is not None:
        conditions.append(table.created_at < created)
    return or_(*conditions) if conditions else false()


@dataclass(frozen=True)
class Conditions:
    """SQL conditions of every rule at one set of cutoffs."""

    cut: Cutoffs

    def posts_due(self, post: Any) -> ColumnElement[bool]:
        return _due(post, self.cut.posts_deleted, self.cut.posts_created)

    def interactions_due(self, row: Any) -> ColumnElement[bool]:
        return _due(row, self.cut.interactions_deleted, self.cut.interactions_created)

    def purged_posts(self) -> Select[Any]:
        """Ids of the posts the ``posts`` rule removes."""
        post = aliased(Post)
        return select(post.id).where(self.posts_due(post), post.author_id.not_in(held_ids()))

    def deactivated(self, *, held: bool, among: Sequence[int] | None = None) -> Select[Any]:
        """Accounts past their deactivation window: those the rule purges, or (``held``) those a hold
        keeps."""
        account = aliased(Account)
        if self.cut.deactivated is None:
            return select(account.id).where(false())
        holds = account.id.in_(held_ids()) if held else account.id.not_in(held_ids())
        query = select(account.id).where(
            account.status == "deactivated", account.status_changed_at < self.cut.deactivated, holds
        )
        return query.where(account.id.in_(among)) if among is not None else query

    def deleted_accounts(self, *, held: bool) -> Select[Any]:
        account = aliased(Account)
        holds = account.id.in_(held_ids()) if held else account.id.not_in(held_ids())
        return select(account.id).where(account.status == "deleted", holds)


def _count(session: Session, query: Select[Any]) -> int:
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def _smallest(session: Session, column: Any, where: ColumnElement[bool]) -> list[int]:
    return [int(v) for v in session.scalars(select(column).where(where).order_by(column).limit(EXAMPLES))]


def _plan_posts(session: Session, c: Conditions) -> RuleOutcome:
    outcome = outcome_of("posts", c)
    if c.cut.posts_deleted is None and c.cut.posts_created is None:
        return outcome
    due, purged = c.posts_due(Post), c.purged_posts()
    outcome.removed["posts"] = _count(session, purged)
    outcome.removed["likes"] = _count(session, select(Like.post_id).where(Like.post_id.in_(purged)))
    outcome.removed["reposts"] = _count(session, select(Repost.post_id).where(Repost.post_id.in_(purged)))
    outcome.examples["posts"] = _smallest(session, Post.id, and_(due, Post.author_id.not_in(held_ids())))
    outcome.held.update(held_counts(session, c, "posts"))
    return outcome


def _plan_interactions(session: Session, c: Conditions) -> RuleOutcome:
    outcome = outcome_of("assistant_interactions", c)
    if c.cut.interactions_deleted is None and c.cut.interactions_created is None:
        return outcome
    row = AssistantInteraction
    due = c.interactions_due(row)
    mine = and_(due, row.account_id.not_in(held_ids()))
    outcome.removed["assistant_interactions"] = _count(session, select(row.id).where(mine))
    outcome.examples["assistant_interactions"] = _smallest(session, row.id, mine)
    outcome.held.update(held_counts(session, c, "assistant_interactions"))
    return outcome


def _plan_deactivated(session: Session, c: Conditions) -> RuleOutcome:
    outcome = outcome_of("deactivated_accounts", c)
    if c.cut.deactivated is None:
        return outcome
    purged = c.deactivated(held=False)
    post = aliased(Post)
    their_posts = select(post.id).where(post.author_id.in_(purged))
    posts = and_(Post.author_id.in_(purged), not_(c.posts_due(Post)))
    interactions = and_(
        AssistantInteraction.account_id.in_(purged), not_(c.interactions_due(AssistantInteraction))
    )
    removed = outcome.removed
    removed["posts"] = _count(session, select(Post.id).where(posts))
    removed["assistant_interactions"] = _count(session, select(AssistantInteraction.id).where(interactions))
    for model in (Like, Repost):
        mine = or_(model.account_id.in_(purged), model.post_id.in_(their_posts))
        removed[model.__tablename__] = _count(
            session, select(model.post_id).where(mine, model.post_id.not_in(c.purged_posts()))
        )
    removed["follows"] = _count(
        session,
        select(Follow.follower_id).where(or_(Follow.follower_id.in_(purged), Follow.followee_id.in_(purged))),
    )
    removed["blocks"] = _count(
        session,
        select(Block.blocker_id).where(or_(Block.blocker_id.in_(purged), Block.blocked_id.in_(purged))),
    )
    removed["notifications"] = _count(
        session, select(Notification.id).where(Notification.account_id.in_(purged))
    )
    removed["subject_mappings"] = _count(
        session, select(Subject.account_id).where(Subject.account_id.in_(purged))
    )
    outcome.changed["accounts"] = _count(session, purged)
    outcome.changed["tokens"] = _count(
        session, select(ApiToken.id).where(ApiToken.account_id.in_(purged), ApiToken.revoked_at.is_(None))
    )
    outcome.examples["accounts"] = [
        int(i) for i in session.scalars(purged.order_by(purged.selected_columns[0]).limit(EXAMPLES))
    ]
    outcome.examples["posts"] = _smallest(session, Post.id, posts)
    outcome.examples["assistant_interactions"] = _smallest(session, AssistantInteraction.id, interactions)
    outcome.held.update(held_counts(session, c, "deactivated_accounts"))
    return outcome


def _plan_access_log(session: Session, c: Conditions) -> RuleOutcome:
    outcome = outcome_of("access_log", c)
    if c.cut.access_log is None:
        return outcome
    old = AccessRecord.minute < c.cut.access_log
    outcome.removed["access_log"] = _count(session, select(AccessRecord.id).where(old))
    outcome.examples["access_log"] = _smallest(session, AccessRecord.id, old)
    return outcome


def _plan_subjects(session: Session, c: Conditions) -> RuleOutcome:
    outcome = outcome_of("subject_mappings", c)
    mine = Subject.account_id.in_(c.deleted_accounts(held=False))
    outcome.removed["subject_mappings"] = _count(session, select(Subject.account_id).where(mine))
    outcome.examples["subject_mappings"] = _smallest(session, Subject.account_id, mine)
    outcome.held.update(held_counts(session, c, "subject_mappings"))
    return outcome


def held_counts(session: Session, c: Conditions, rule: str) -> dict[str, int]:
    """What legal holds keep from a rule: rows it would remove but for the hold. Held rows are never
    touched by a run, so a run counts them the same way before or after its deletions."""
    if rule == "posts":
        due = c.posts_due(Post)
        return {"posts": _count(session, select(Post.id).where(due, Post.author_id.in_(held_ids())))}
    if rule == "assistant_interactions":
        row = AssistantInteraction
        due = c.interactions_due(row)
        return {
            "assistant_interactions": _count(
                session, select(row.id).where(due, row.account_id.in_(held_ids()))
            )
        }
    if rule == "deactivated_accounts":
        kept = c.deactivated(held=True)
        return {
            "accounts": _count(session, kept),
            "posts": _count(session, select(Post.id).where(Post.author_id.in_(kept))),
            "assistant_interactions": _count(
                session, select(AssistantInteraction.id).where(AssistantInteraction.account_id.in_(kept))
            ),
        }
    if rule == "subject_mappings":
        kept = c.deleted_accounts(held=True)
        return {
            "subject_mappings": _count(
                session, select(Subject.account_id).where(Subject.account_id.in_(kept))
            )
        }
    return {}


def _plan_events(session: Session, c: Conditions) -> RuleOutcome:
    """Consent events stay; counts them and how many will be anonymous once the run removed mappings."""
    outcome = outcome_of("consent_events", c)
    surviving = select(Subject.subject_key).where(
        Subject.account_id.not_in(c.deactivated(held=False)),
        Subject.account_id.not_in(c.deleted_accounts(held=False)),
    )
    outcome.kept["consent_events"] = _count(session, select(ConsentEvent.seq))
    outcome.kept["anonymous"] = _count(
        session, select(ConsentEvent.seq).where(ConsentEvent.subject_key.not_in(surviving))
    )
    return outcome


def events_after(session: Session, c: Conditions) -> RuleOutcome:
    outcome = outcome_of("consent_events", c)
    outcome.kept["consent_events"] = _count(session, select(ConsentEvent.seq))
    outcome.kept["anonymous"] = _count(
        session,
        select(ConsentEvent.seq).where(ConsentEvent.subject_key.not_in(select(Subject.subject_key))),
    )
    return outcome


def _cutoff(rule: str, cut: Cutoffs) -> datetime | None:
    return {
        "posts": cut.posts_deleted or cut.posts_created,
        "assistant_interactions": cut.interactions_deleted or cut.interactions_created,
        "deactivated_accounts": cut.deactivated,
        "access_log": cut.access_log,
    }.get(rule)


def outcome_of(rule: str, c: Conditions) -> RuleOutcome:
    return RuleOutcome(rule=rule, description=DESCRIPTIONS[rule], window=None, cutoff=_cutoff(rule, c.cut))


def finish_outcomes(outcomes: list[RuleOutcome], rules: Rules) -> list[RuleOutcome]:
    windows = rules.windows()
    for outcome in outcomes:
        outcome.window = windows.get(outcome.rule)
    return outcomes


def check_at(at: datetime | None, *, apply: bool) -> datetime:
    """The time a plan or run evaluates windows at (now by default). A run may not look into the
    future (it would purge records whose window has not passed); a plan may."""
    now = utcnow()
    if at is None:
        return now
    if at.tzinfo is None:
        raise InvalidInput("at must carry a time zone (or be given as UTC)", field="at")
    if apply and at > now + FUTURE_SLACK:
        raise InvalidInput(
            f"a retention run cannot be applied as of a future time ({at.isoformat()}); plan it instead",
            field="at",
        )
    return at


def plan(session: Session, *, rules: Rules, at: datetime | None = None) -> RetentionPlan:
    """What every rule would remove at ``at`` (default now) from the database; changes nothing."""
    started = time.perf_counter()
    at = check_at(at, apply=False)
    c = Conditions(rules.cutoffs(at))
    outcomes = [
        _plan_posts(session, c),
        _plan_interactions(session, c),
        _plan_deactivated(session, c),
        _plan_access_log(session, c),
        _plan_subjects(session, c),
        _plan_events(session, c),
    ]
    return RetentionPlan(
        at=at,
        source="database",
        rules=rules.describe(),
        holds=len(held_account_ids(session)),
        outcomes=finish_outcomes(outcomes, rules),
        seconds=time.perf_counter() - started,
    )
