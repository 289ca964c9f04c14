"""Retention: legal holds, the purge plan (a dry run) and the purge itself.

Rules run in the order of ``consentry.retention.rules.RULES``; a row removed by one rule is not counted by
a later one, so a plan's counts are exactly what a run at the same ``at`` removes (tested):

``posts``
    Posts with ``deleted_at < at - after_deletion`` (or ``created_at < at - max_age`` when set), except
    those of held accounts. Likes and reposts of them go too (they point at a post that no longer
    exists); replies and quotes of them that stay lose the link (``reply_to``/``quote_of`` set to null,
    reported as ``links_cleared``).
``assistant_interactions``
    The same for assistant interactions (nothing refers to them).
``deactivated_accounts``
    Accounts ``deactivated`` before ``at - after_deactivation`` and not held lose everything: posts (with
    likes and reposts of them), assistant interactions, follows and blocks either way, their likes and
    reposts, notifications, API tokens (revoked) and their ledger subject mapping. The account row stays
    as a tombstone so the ids in revocations, lineage and the lake still resolve, but it is anonymised:
    ``status`` becomes ``deleted`` (``status_changed_at`` keeps the deactivation time, so consent was
    already denied from then on), ``handle`` becomes ``purged_<id>`` and ``birth_year`` is cleared.
``access_log``
    Metering rows whose ``minute`` is before ``at - max_age`` (holds do not apply: rows name
    organisations, not accounts).
``subject_mappings``
    Deleted accounts keep no ledger subject mapping (``delete_account`` removes it at once; the rule makes
    sure and reports any left), so their consent events are anonymous while the chain still verifies.
``consent_events``
    Never removed (life of the ledger); the report counts them, and how many are anonymous.

Released records that a run purges get revocations (``revoke_records(reason="retention_purge")``) in the
same transaction as their deletion. A run works in batches of ``batch`` rows, one transaction each, in id
order; interrupted, the next run carries on where it stopped (each batch re-reads the rules' conditions).
Every run is recorded in ``retention_runs`` with its per-rule counts.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    CursorResult,
    MetaData,
    Select,
    String,
    Table,
    and_,
    delete,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from consentry.auth.models import ApiToken
from consentry.auth.service import note_revocation
from consentry.config import Settings
from consentry.consent.models import ConsentEvent, Notification, Subject
from consentry.db import Database, utcnow
from consentry.errors import Conflict, InvalidInput, NotFound
from consentry.metering.models import AccessRecord
from consentry.retention.models import RUN_TRIGGERS, LegalHold, RetentionRun
from consentry.retention.rules import DESCRIPTIONS, RULES, Cutoffs, Rules, load_rules
from consentry.retention.schemas import RetentionPlan, RetentionReport, RuleOutcome
from consentry.social.models import Account, AssistantInteraction, Block, Follow, Like, Post, Repost

BATCH = 50_000
"""Rows per transaction of a run."""
ACCOUNT_GROUP = 500
"""Deactivated accounts purged together (their relations in one transaction)."""
EXAMPLES = 5
"""Example ids per table in plans and reports (the smallest)."""
TOMBSTONE = "purged-"
"""Handle prefix of anonymised accounts (a hyphen: no real handle can take it)."""
FUTURE_SLACK = timedelta(minutes=5)
"""How far ahead of the clock a run's ``at`` may be (clock skew); later is refused."""

Progress = Callable[[str, int], None]
"""Called as ``progress(rule, rows_removed_so_far_by_that_rule)`` after each batch."""


def _exec(session: Session, statement: Any) -> int:
    """Run a bulk UPDATE or DELETE (no ORM session synchronisation); the rows it touched."""
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(cast("CursorResult[Any]", result).rowcount or 0)


# --- legal holds ------------------------------------------------------------------------------------


def _account(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist", field="account_id")
    return account


def active_hold(session: Session, account_id: int) -> LegalHold | None:
    """The account's active legal hold, if any."""
    return session.scalar(
        select(LegalHold).where(LegalHold.account_id == account_id, LegalHold.released_at.is_(None))
    )


def add_hold(
    session: Session, *, account_id: int, reason: str, by: str = "", at: datetime | None = None
) -> LegalHold:
    """Put an account on legal hold: no retention rule removes its data until the hold is released.

    ``NotFound`` (field ``account_id``) for an unknown account, ``Conflict`` when it is already held;
    nothing is written then.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a legal hold needs a reason", field="reason")
    if len(reason) > 2000:
        raise InvalidInput("reason is limited to 2,000 characters", field="reason")
    _account(session, account_id)
    existing = active_hold(session, account_id)
    if existing is not None:
        raise Conflict(
            f"account {account_id} is already on legal hold since {existing.created_at:%Y-%m-%d} "
            f"({existing.reason})",
            field="account_id",
        )
    hold = LegalHold(
        account_id=account_id, reason=reason.strip(), created_at=at or utcnow(), created_by=by[:200]
    )
    session.add(hold)
    try:
        session.flush()
    except IntegrityError as error:  # a concurrent hold won the partial unique index
        raise Conflict(f"account {account_id} is already on legal hold", field="account_id") from error
    return hold


def release_hold(session: Session, *, account_id: int, by: str = "", at: datetime | None = None) -> LegalHold:
    """Release an account's legal hold (the row stays, with ``released_at``); ``NotFound`` (field
    ``account_id``) for an unknown account or one without an active hold."""
    _account(session, account_id)
    hold = active_hold(session, account_id)
    if hold is None:
        raise NotFound(f"account {account_id} has no active legal hold", field="account_id")
    hold.released_at, hold.released_by = at or utcnow(), by[:200]
    session.flush()
    return hold


def list_holds(session: Session, *, include_released: bool = False) -> list[LegalHold]:
    """Legal holds, oldest first (active ones only unless ``include_released``)."""
    query = select(LegalHold).order_by(LegalHold.created_at, LegalHold.id)
    if not include_released:
        query = query.where(LegalHold.released_at.is_(None))
    return list(session.scalars(query))


def held_account_ids(session: Session) -> list[int]:
    """Accounts under an active legal hold, ascending."""
    return sorted(session.scalars(select(LegalHold.account_id).where(LegalHold.released_at.is_(None))))


# --- the conditions of the rules, shared by plans and runs --------------------------------------------


def _held() -> Select[Any]:
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
class _Conditions:
    """SQL conditions of every rule at one set of cutoffs."""

    cut: Cutoffs

    def posts_due(self, post: Any) -> ColumnElement[bool]:
        return _due(post, self.cut.posts_deleted, self.cut.posts_created)

    def interactions_due(self, row: Any) -> ColumnElement[bool]:
        return _due(row, self.cut.interactions_deleted, self.cut.interactions_created)

    def purged_posts(self) -> Select[Any]:
        """Ids of the posts the ``posts`` rule removes."""
        post = aliased(Post)
        return select(post.id).where(self.posts_due(post), post.author_id.not_in(_held()))

    def deactivated(self, *, held: bool, among: Sequence[int] | None = None) -> Select[Any]:
        """Accounts past their deactivation window: those the rule purges, or (``held``) those a hold
        keeps."""
        account = aliased(Account)
        if self.cut.deactivated is None:
            return select(account.id).where(false())
        holds = account.id.in_(_held()) if held else account.id.not_in(_held())
        query = select(account.id).where(
            account.status == "deactivated", account.status_changed_at < self.cut.deactivated, holds
        )
        return query.where(account.id.in_(among)) if among is not None else query

    def deleted_accounts(self, *, held: bool) -> Select[Any]:
        account = aliased(Account)
        holds = account.id.in_(_held()) if held else account.id.not_in(_held())
        return select(account.id).where(account.status == "deleted", holds)


def _count(session: Session, query: Select[Any]) -> int:
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def _smallest(session: Session, column: Any, where: ColumnElement[bool]) -> list[int]:
    return [int(v) for v in session.scalars(select(column).where(where).order_by(column).limit(EXAMPLES))]


def _plan_posts(session: Session, c: _Conditions) -> RuleOutcome:
    outcome = _outcome("posts", c)
    if c.cut.posts_deleted is None and c.cut.posts_created is None:
        return outcome
    due, purged = c.posts_due(Post), c.purged_posts()
    outcome.removed["posts"] = _count(session, purged)
    outcome.removed["likes"] = _count(session, select(Like.post_id).where(Like.post_id.in_(purged)))
    outcome.removed["reposts"] = _count(session, select(Repost.post_id).where(Repost.post_id.in_(purged)))
    outcome.examples["posts"] = _smallest(session, Post.id, and_(due, Post.author_id.not_in(_held())))
    outcome.held.update(_held_counts(session, c, "posts"))
    return outcome


def _plan_interactions(session: Session, c: _Conditions) -> RuleOutcome:
    outcome = _outcome("assistant_interactions", c)
    if c.cut.interactions_deleted is None and c.cut.interactions_created is None:
        return outcome
    row = AssistantInteraction
    due = c.interactions_due(row)
    mine = and_(due, row.account_id.not_in(_held()))
    outcome.removed["assistant_interactions"] = _count(session, select(row.id).where(mine))
    outcome.examples["assistant_interactions"] = _smallest(session, row.id, mine)
    outcome.held.update(_held_counts(session, c, "assistant_interactions"))
    return outcome


def _plan_deactivated(session: Session, c: _Conditions) -> RuleOutcome:
    outcome = _outcome("deactivated_accounts", c)
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
    outcome.held.update(_held_counts(session, c, "deactivated_accounts"))
    return outcome


def _plan_access_log(session: Session, c: _Conditions) -> RuleOutcome:
    outcome = _outcome("access_log", c)
    if c.cut.access_log is None:
        return outcome
    old = AccessRecord.minute < c.cut.access_log
    outcome.removed["access_log"] = _count(session, select(AccessRecord.id).where(old))
    outcome.examples["access_log"] = _smallest(session, AccessRecord.id, old)
    return outcome


def _plan_subjects(session: Session, c: _Conditions) -> RuleOutcome:
    outcome = _outcome("subject_mappings", c)
    mine = Subject.account_id.in_(c.deleted_accounts(held=False))
    outcome.removed["subject_mappings"] = _count(session, select(Subject.account_id).where(mine))
    outcome.examples["subject_mappings"] = _smallest(session, Subject.account_id, mine)
    outcome.held.update(_held_counts(session, c, "subject_mappings"))
    return outcome


def _held_counts(session: Session, c: _Conditions, rule: str) -> dict[str, int]:
    """What legal holds keep from a rule: rows it would remove but for the hold. Held rows are never
    touched by a run, so a run counts them the same way before or after its deletions."""
    if rule == "posts":
        due = c.posts_due(Post)
        return {"posts": _count(session, select(Post.id).where(due, Post.author_id.in_(_held())))}
    if rule == "assistant_interactions":
        row = AssistantInteraction
        due = c.interactions_due(row)
        return {
            "assistant_interactions": _count(session, select(row.id).where(due, row.account_id.in_(_held())))
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


def _plan_events(session: Session, c: _Conditions) -> RuleOutcome:
    """Consent events stay; counts them and how many will be anonymous once the run removed mappings."""
    outcome = _outcome("consent_events", c)
    surviving = select(Subject.subject_key).where(
        Subject.account_id.not_in(c.deactivated(held=False)),
        Subject.account_id.not_in(c.deleted_accounts(held=False)),
    )
    outcome.kept["consent_events"] = _count(session, select(ConsentEvent.seq))
    outcome.kept["anonymous"] = _count(
        session, select(ConsentEvent.seq).where(ConsentEvent.subject_key.not_in(surviving))
    )
    return outcome


def _events_after(session: Session, c: _Conditions) -> RuleOutcome:
    outcome = _outcome("consent_events", c)
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


def _outcome(rule: str, c: _Conditions) -> RuleOutcome:
    return RuleOutcome(rule=rule, description=DESCRIPTIONS[rule], window=None, cutoff=_cutoff(rule, c.cut))


def _finish_outcomes(outcomes: list[RuleOutcome], rules: Rules) -> list[RuleOutcome]:
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
    c = _Conditions(rules.cutoffs(at))
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
        outcomes=_finish_outcomes(outcomes, rules),
        seconds=time.perf_counter() - started,
    )


# --- runs -------------------------------------------------------------------------------------------

_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "posts": {"removed": ("posts", "likes", "reposts"), "examples": ("posts",)},
    "assistant_interactions": {
        "removed": ("assistant_interactions",),
        "examples": ("assistant_interactions",),
    },
    "deactivated_accounts": {
        "removed": (
            "posts",
            "assistant_interactions",
            "likes",
            "reposts",
            "follows",
            "blocks",
            "notifications",
            "subject_mappings",
        ),
        "changed": ("accounts", "tokens"),
        "examples": ("accounts", "posts", "assistant_interactions"),
    },
    "access_log": {"removed": ("access_log",), "examples": ("access_log",)},
    "subject_mappings": {"removed": ("subject_mappings",), "examples": ("subject_mappings",)},
}
"""The tables a rule reports on (a run reports zeros where a plan would)."""


@dataclass
class _Tally:
    """Counts of one rule while it runs."""

    outcome: RuleOutcome
    progress: Progress | None
    revocations: int = 0

    def __post_init__(self) -> None:
        keys = _KEYS.get(self.outcome.rule, {})
        for kind in ("removed", "changed"):
            getattr(self.outcome, kind).update(dict.fromkeys(keys.get(kind, ()), 0))
        self.outcome.examples.update({key: [] for key in keys.get("examples", ())})

    def add(self, table: str, count: int, *, kind: str = "removed") -> None:
        bucket = getattr(self.outcome, kind)
        bucket[table] = bucket.get(table, 0) + count

    def example(self, table: str, ids: Iterable[int]) -> None:
        merged = {*self.outcome.examples.get(table, []), *(int(i) for i in ids)}
        self.outcome.examples[table] = sorted(merged)[:EXAMPLES]

    def tick(self) -> None:
        if self.progress is not None:
            self.progress(self.outcome.rule, self.outcome.total)


def _released(session: Session, category: str) -> bool:
    """Whether any published release holds records of ``category`` (else nothing can be revoked)."""
    from consentry.partners.revocations import holders

    return bool(holders(session, category=category))


def _revoke(session: Session, *, category: str, ids: np.ndarray, authors: np.ndarray) -> int:
    from consentry.partners.revocations import revoke_records

    created = revoke_records(
        session, category=category, record_ids=ids, account_ids=authors, reason="retention_purge"
    )
    return len(created)


Where = Callable[[Any], ColumnElement[bool]]
"""A rule's condition on a table or an alias of it."""


def _next_batch(session: Session, table: Any, where: Where, last: int, batch: int) -> tuple[int, int] | None:
    """The id range ``[low, high]`` of the next ``batch`` rows of ``table`` matching ``where`` after id
    ``last`` (the ids stay in the database), or ``None`` when none is left."""
    row = aliased(table)
    ids = select(row.id.label("id")).where(row.id > last, where(row)).order_by(row.id).limit(batch).subquery()
    low, high = session.execute(select(func.min(ids.c.id), func.max(ids.c.id))).one()
    return None if low is None else (int(low), int(high))


def _in_batch(table: Any, where: Where, low: int, high: int) -> ColumnElement[bool]:
    return and_(table.id >= low, table.id <= high, where(table))


def _pairs(session: Session, table: Any, author: str, where: Where, low: int, high: int) -> np.ndarray:
    """(id, author) of a batch's rows as a 2 x n array (only fetched when a release may hold them)."""
    row = aliased(table)
    query = select(row.id, getattr(row, author)).where(_in_batch(row, where, low, high)).order_by(row.id)
    flat = itertools.chain.from_iterable(session.execute(query))
    return np.fromiter(flat, dtype=np.int64).reshape(-1, 2).T


def _examples(session: Session, tally: _Tally, table: Any, name: str, where: ColumnElement[bool]) -> None:
    """Keep the smallest ids a rule removes (only the first batches can hold them)."""
    if len(tally.outcome.examples.get(name, [])) < EXAMPLES:
        tally.example(name, session.scalars(select(table.id).where(where).order_by(table.id).limit(EXAMPLES)))


_BATCH = Table("retention_batch", MetaData(), Column("id", BigInteger, primary_key=True))
"""SQLite: a temporary table (one per connection) naming the posts of the current batch."""


def _batch_posts(session: Session, where: Where, low: int, high: int) -> Select[Any]:
    """The ids of a batch's posts as a subquery for the cascades.

    On SQLite they go into a temporary table once, so the cascades probe its primary key instead of
    re-evaluating the rule (and rebuilding an ephemeral index) for each statement. PostgreSQL plans the
    rule's range condition well and would have no statistics for a temporary table, so it uses that."""
    post = aliased(Post)
    batch = select(post.id).where(_in_batch(post, where, low, high))
    if session.get_bind().dialect.name != "sqlite":
        return batch
    session.execute(text("CREATE TEMPORARY TABLE IF NOT EXISTS retention_batch (id INTEGER PRIMARY KEY)"))
    session.execute(_BATCH.delete())
    session.execute(_BATCH.insert().from_select(["id"], batch))
    return select(_BATCH.c.id)


def _purge_posts(database: Database, *, where: Where, tally: _Tally, batch: int) -> None:
    """Delete the posts matching ``where`` in id order, ``batch`` per transaction, with the likes and
    reposts of them; surviving replies and quotes of them lose the link; revocations for released ones."""
    last = -(2**63)
    while True:
        with database.write() as session:
            bounds = _next_batch(session, Post, where, last, batch)
            if bounds is None:
                return
            low, high = bounds
            _examples(session, tally, Post, "posts", _in_batch(Post, where, low, high))
            revoked = (
                _pairs(session, Post, "author_id", where, low, high) if _released(session, "posts") else None
            )
            chunk = _batch_posts(session, where, low, high)
            tally.add("likes", _exec(session, delete(Like).where(Like.post_id.in_(chunk))))
            tally.add("reposts", _exec(session, delete(Repost).where(Repost.post_id.in_(chunk))))
            outside = not_(_in_batch(Post, where, low, high))
            cleared = _exec(
                session, update(Post).where(Post.reply_to.in_(chunk), outside).values(reply_to=None)
            )
            cleared += _exec(
                session, update(Post).where(Post.quote_of.in_(chunk), outside).values(quote_of=None)
            )
            if cleared:
                tally.add("links_cleared", cleared, kind="changed")
            tally.add("posts", _exec(session, delete(Post).where(_in_batch(Post, where, low, high))))
            if revoked is not None:
                tally.revocations += _revoke(session, category="posts", ids=revoked[0], authors=revoked[1])
        last = high
        tally.tick()


def _purge_interactions(database: Database, *, where: Where, tally: _Tally, batch: int) -> None:
    """Delete the assistant interactions matching ``where`` in id order, with revocations."""
    last = -(2**63)
    target, category = AssistantInteraction, "assistant_interactions"
    while True:
        with database.write() as session:
            bounds = _next_batch(session, target, where, last, batch)
            if bounds is None:
                return
            low, high = bounds
            _examples(session, tally, target, category, _in_batch(target, where, low, high))
            released = _released(session, category)
            revoked = _pairs(session, target, "account_id", where, low, high) if released else None
            tally.add(category, _exec(session, delete(target).where(_in_batch(target, where, low, high))))
            if revoked is not None:
                tally.revocations += _revoke(session, category=category, ids=revoked[0], authors=revoked[1])
        last = high
        tally.tick()


def _purge_accounts(database: Database, *, purged: Select[Any], tally: _Tally, batch: int) -> None:
    """Everything of the accounts ``purged`` names (re-read by every statement, so a hold added or a
    reactivation since they were listed wins); their rows become anonymised tombstones."""
    _purge_posts(database, where=lambda p: p.author_id.in_(purged), tally=tally, batch=batch)
    _purge_interactions(database, where=lambda i: i.account_id.in_(purged), tally=tally, batch=batch)
    with database.write() as session:
        for model in (Like, Repost):
            tally.add(model.__tablename__, _exec(session, delete(model).where(model.account_id.in_(purged))))
        follows = or_(Follow.follower_id.in_(purged), Follow.followee_id.in_(purged))
        tally.add("follows", _exec(session, delete(Follow).where(follows)))
        blocks = or_(Block.blocker_id.in_(purged), Block.blocked_id.in_(purged))
        tally.add("blocks", _exec(session, delete(Block).where(blocks)))
        mine = Notification.account_id.in_(purged)
        tally.add("notifications", _exec(session, delete(Notification).where(mine)))
        tally.add("subject_mappings", _exec(session, delete(Subject).where(Subject.account_id.in_(purged))))
        tokens = update(ApiToken).where(ApiToken.account_id.in_(purged), ApiToken.revoked_at.is_(None))
        tally.add("tokens", _exec(session, tokens.values(revoked_at=utcnow())), kind="changed")
        note_revocation()  # this process's token caches verify again at once
        anonymise = (
            update(Account)
            .where(Account.id.in_(purged))
            .values(
                status="deleted", handle=literal(TOMBSTONE) + sql_cast(Account.id, String), birth_year=None
            )
        )
        tally.add("accounts", _exec(session, anonymise), kind="changed")


def _run_deactivated(database: Database, c: _Conditions, tally: _Tally, batch: int) -> None:
    with database.read() as session:
        query = c.deactivated(held=False)
        accounts = [int(i) for i in session.scalars(query.order_by(query.selected_columns[0]))]
    for start in range(0, len(accounts), ACCOUNT_GROUP):
        group = accounts[start : start + ACCOUNT_GROUP]
        tally.example("accounts", group[:EXAMPLES])
        _purge_accounts(database, purged=c.deactivated(held=False, among=group), tally=tally, batch=batch)
        tally.tick()


def _run_access_log(database: Database, c: _Conditions, tally: _Tally, batch: int) -> None:
    cutoff, last = c.cut.access_log, -(2**63)
    assert cutoff is not None

    def old(row: Any) -> ColumnElement[bool]:
        return cast("ColumnElement[bool]", row.minute < cutoff)

    while True:
        with database.write() as session:
            bounds = _next_batch(session, AccessRecord, old, last, batch)
            if bounds is None:
                return
            low, high = bounds
            window = _in_batch(AccessRecord, old, low, high)
            _examples(session, tally, AccessRecord, "access_log", window)
            tally.add("access_log", _exec(session, delete(AccessRecord).where(window)))
        last = high
        tally.tick()


def _run_subjects(database: Database, c: _Conditions, tally: _Tally, batch: int) -> None:
    last = -(2**63)
    mine = Subject.account_id.in_(c.deleted_accounts(held=False))
    while True:
        with database.write() as session:
            query = select(Subject.account_id).where(Subject.account_id > last, mine)
            ids = list(session.scalars(query.order_by(Subject.account_id).limit(batch)))
            if not ids:
                return
            low, high = ids[0], ids[-1]
            window = and_(Subject.account_id >= low, Subject.account_id <= high, mine)
            tally.add("subject_mappings", _exec(session, delete(Subject).where(window)))
            tally.example("subject_mappings", ids[:EXAMPLES])
        last = high
        tally.tick()


def _enabled(rule: str, cut: Cutoffs) -> bool:
    return {
        "posts": cut.posts_deleted is not None or cut.posts_created is not None,
        "assistant_interactions": cut.interactions_deleted is not None
        or cut.interactions_created is not None,
        "deactivated_accounts": cut.deactivated is not None,
        "access_log": cut.access_log is not None,
        "subject_mappings": True,
        "consent_events": True,
    }[rule]


def _store(database: Database, run_id: int, report: RetentionReport) -> None:
    with database.write() as session:
        run = session.get(RetentionRun, run_id)
        assert run is not None
        run.status, run.finished_at, run.error = report.status, report.finished_at, report.error
        run.rows_removed, run.revocations = report.rows_removed, report.revocations
        run.report = report.model_dump(mode="json")


def apply(
    database: Database,
    *,
    rules: Rules,
    at: datetime | None = None,
    trigger: str = "cli",
    batch: int = BATCH,
    progress: Progress | None = None,
) -> RetentionReport:
    """Run every rule at ``at`` (default now): remove what the plan names, create revocations for
    released purged records, and record the run in ``retention_runs``; returns the purge report.

    A future ``at`` or a bad batch size is refused before anything is written.
    """
    if batch < 1:
        raise InvalidInput("batch must be at least 1", field="batch")
    if trigger not in RUN_TRIGGERS:
        raise InvalidInput(f"trigger must be one of {', '.join(RUN_TRIGGERS)}", field="trigger")
    at = check_at(at, apply=True)
    c = _Conditions(rules.cutoffs(at))
    started, clock = utcnow(), time.perf_counter()
    with database.write() as session:
        holds = len(held_account_ids(session))
        run = RetentionRun(
            at=at,
            started_at=started,
            status="running",
            trigger=trigger,
            rules=rules.describe(),
            report={},
            rows_removed=0,
            revocations=0,
        )
        session.add(run)
        session.flush()
        run_id = run.id
    report = RetentionReport(
        run_id=run_id,
        at=at,
        trigger=trigger,
        status="running",
        started_at=started,
        finished_at=None,
        rules=rules.describe(),
        holds=holds,
        outcomes=[],
        rows_removed=0,
        revocations=0,
        seconds=0.0,
        rows_per_second=None,
    )
    steps: dict[str, Callable[[_Tally], None]] = {
        "posts": lambda t: _purge_posts(
            database, where=lambda p: and_(c.posts_due(p), p.author_id.not_in(_held())), tally=t, batch=batch
        ),
        "assistant_interactions": lambda t: _purge_interactions(
            database,
            where=lambda i: and_(c.interactions_due(i), i.account_id.not_in(_held())),
            tally=t,
            batch=batch,
        ),
        "deactivated_accounts": lambda t: _run_deactivated(database, c, t, batch),
        "access_log": lambda t: _run_access_log(database, c, t, batch),
        "subject_mappings": lambda t: _run_subjects(database, c, t, batch),
    }
    try:
        for rule in RULES:
            if rule == "consent_events":
                with database.read() as session:
                    report.outcomes.append(_events_after(session, c))
                continue
            if not _enabled(rule, c.cut):
                report.outcomes.append(_outcome(rule, c))
                continue
            tally = _Tally(_outcome(rule, c), progress)
            with database.read() as session:
                tally.outcome.held.update(_held_counts(session, c, rule))
            steps[rule](tally)
            report.outcomes.append(tally.outcome)
            report.revocations += tally.revocations
            report.rows_removed = sum(o.total for o in report.outcomes)
            report.seconds = time.perf_counter() - clock
            _store(database, run_id, report)
        report.status = "finished"
    except BaseException as error:
        report.status, report.error = "failed", f"{error.__class__.__name__}: {error}"
        raise
    finally:
        report.finished_at = utcnow()
        report.seconds = time.perf_counter() - clock
        report.rows_removed = sum(o.total for o in report.outcomes)
        report.rows_per_second = report.rows_removed / report.seconds if report.seconds > 0 else None
        _finish_outcomes(report.outcomes, rules)
        _store(database, run_id, report)
    return report


def run_scheduled(database: Database, settings: Settings) -> RetentionReport:
    """One scheduled run with the configured rules (the worker calls this every
    ``settings.retention_interval_hours``); bad rules raise ``InvalidInput`` before anything changes."""
    return apply(database, rules=load_rules(settings.retention_file), trigger="schedule")


def next_due(session: Session, settings: Settings) -> datetime:
    """When the next scheduled run is due: the interval after the last finished run (now if none)."""
    last = session.scalar(select(func.max(RetentionRun.started_at)).where(RetentionRun.status == "finished"))
    if last is None:
        return utcnow()
    return last + timedelta(hours=settings.retention_interval_hours)


def list_runs(session: Session, *, limit: int = 20) -> list[RetentionRun]:
    """The latest runs, newest first."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    return list(session.scalars(select(RetentionRun).order_by(RetentionRun.id.desc()).limit(limit)))


def get_run(session: Session, run_id: int) -> RetentionRun:
    """One run, or ``NotFound``."""
    run = session.get(RetentionRun, run_id)
    if run is None:
        raise NotFound(f"retention run {run_id} does not exist", field="run_id")
    return run


# --- plans over a lake ------------------------------------------------------------------------------


def plan_lake(
    lake: Path, *, rules: Rules, at: datetime | None = None, held: Sequence[int] = ()
) -> RetentionPlan:
    """What the rules would remove from a lake folder (data contract), computed by DuckDB over the
    Parquet files (rows never become Python objects). ``held``: accounts under legal hold (from the
    database). Tables the contract has no folder for (likes, reposts, notifications, the access log,
    subject mappings) are not counted."""
    import duckdb

    from consentry.datasets.eligibility import DUCKDB
    from consentry.lake.source import parquet_files

    started = time.perf_counter()
    at = check_at(at, apply=False)
    if not lake.is_dir():
        raise InvalidInput(f"{lake} is not a folder", field="lake")
    cut = rules.cutoffs(at)
    c = _Conditions(cut)
    connection = duckdb.connect(":memory:")
    try:
        connection.execute("SET preserve_insertion_order = false")
        present: set[str] = set()
        for folder in ("accounts", "posts", "assistant_interactions", "follows", "blocks", "consent_events"):
            files = parquet_files(lake / folder)
            if files:
                listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
                connection.execute(
                    f"CREATE VIEW {folder} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)"
                )
                present.add(folder)
        if "accounts" not in present:
            raise InvalidInput(f"{lake} has no accounts/ Parquet files; is it a lake?", field="lake")
        connection.execute("CREATE TEMP TABLE held (account_id BIGINT)")
        if held:
            connection.execute("INSERT INTO held SELECT unnest(?::BIGINT[])", [[int(i) for i in held]])
        ts = DUCKDB.timestamp
        deactivated = (
            f"a.status = 'deactivated' AND a.status_changed_at < {ts(cut.deactivated)}"
            if cut.deactivated is not None
            else "false"
        )
        connection.execute(
            "CREATE TEMP TABLE d AS SELECT account_id, account_id IN (SELECT account_id FROM held) AS held "
            f"FROM accounts a WHERE {deactivated}"
        )

        def due(deleted: datetime | None, created: datetime | None) -> str:
            parts = []
            if deleted is not None:
                parts.append(f"(deleted_at IS NOT NULL AND deleted_at < {ts(deleted)})")
            if created is not None:
                parts.append(f"created_at < {ts(created)}")
            return "(" + " OR ".join(parts) + ")" if parts else "false"

        def records(
            folder: str, id_column: str, author: str, deleted: datetime | None, created: datetime | None
        ) -> dict[str, Any]:
            if folder not in present:
                return {}
            row = connection.execute(
                f"""
                WITH r AS (
                    SELECT {id_column} AS id, {due(deleted, created)} AS due,
                           {author} IN (SELECT account_id FROM held) AS held,
                           {author} IN (SELECT account_id FROM d WHERE NOT held) AS purged_account,
                           {author} IN (SELECT account_id FROM d WHERE held) AS held_account
                    FROM {folder}
                )
                SELECT count(*) FILTER (WHERE due AND NOT held),
                       min(id, {EXAMPLES}) FILTER (WHERE due AND NOT held),
                       count(*) FILTER (WHERE due AND held),
                       count(*) FILTER (WHERE purged_account AND NOT due),
                       min(id, {EXAMPLES}) FILTER (WHERE purged_account AND NOT due),
                       count(*) FILTER (WHERE held_account)
                FROM r
                """
            ).fetchone()
            assert row is not None
            return {
                "removed": int(row[0]),
                "examples": [int(i) for i in row[1] or []],
                "held": int(row[2]),
                "account_removed": int(row[3]),
                "account_examples": [int(i) for i in row[4] or []],
                "account_held": int(row[5]),
            }

        posts = records("posts", "post_id", "author_id", cut.posts_deleted, cut.posts_created)
        chats = records(
            "assistant_interactions",
            "interaction_id",
            "account_id",
            cut.interactions_deleted,
            cut.interactions_created,
        )
        outcomes: list[RuleOutcome] = []
        for rule, found in (("posts", posts), ("assistant_interactions", chats)):
            name = rule
            outcome = _outcome(rule, c)
            enabled = (
                cut.posts_deleted is not None or cut.posts_created is not None
                if rule == "posts"
                else cut.interactions_deleted is not None or cut.interactions_created is not None
            )
            if found and enabled:
                outcome.removed[name] = found["removed"]
                outcome.examples[name] = found["examples"]
                outcome.held[name] = found["held"]
            if not found:
                outcome.note = f"the lake has no {name}/ folder"
            outcomes.append(outcome)
        outcome = _outcome("deactivated_accounts", c)
        if cut.deactivated is not None:
            counts = connection.execute(
                "SELECT count(*) FILTER (WHERE NOT held), count(*) FILTER (WHERE held), "
                f"min(account_id, {EXAMPLES}) FILTER (WHERE NOT held) FROM d"
            ).fetchone()
            assert counts is not None
            outcome.changed["accounts"] = int(counts[0])
            outcome.held["accounts"] = int(counts[1])
            outcome.examples["accounts"] = [int(i) for i in counts[2] or []]
            for name, found in (("posts", posts), ("assistant_interactions", chats)):
                if found:
                    outcome.removed[name] = found["account_removed"]
                    outcome.examples[name] = found["account_examples"]
                    outcome.held[name] = found["account_held"]
            for folder, left, right in (
                ("follows", "follower_id", "followee_id"),
                ("blocks", "blocker_id", "blocked_id"),
            ):
                if folder in present:
                    purged = "(SELECT account_id FROM d WHERE NOT held)"
                    value = connection.execute(
                        f"SELECT count(*) FROM {folder} WHERE {left} IN {purged} OR {right} IN {purged}"
                    ).fetchone()
                    outcome.removed[folder] = int(value[0]) if value else 0
        outcome.note = "likes, reposts, notifications and subject mappings are not in the lake"
        outcomes.append(outcome)
        outcomes.append(
            _outcome("access_log", c).model_copy(update={"note": "the access log is not in the lake"})
        )
        outcomes.append(
            _outcome("subject_mappings", c).model_copy(
                update={"note": "subject mappings live in the database, not in the lake"}
            )
        )
        events = _outcome("consent_events", c)
        if "consent_events" in present:
            value = connection.execute("SELECT count(*) FROM consent_events").fetchone()
            events.kept["consent_events"] = int(value[0]) if value else 0
        outcomes.append(events)
    finally:
        connection.close()
    return RetentionPlan(
        at=at,
        source="lake",
        lake=str(lake),
        rules=rules.describe(),
        holds=len(set(held)),
        outcomes=_finish_outcomes(outcomes, rules),
        seconds=time.perf_counter() - started,
    )
