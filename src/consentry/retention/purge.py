"""Retention runs: the purge itself, rule by rule, in batches of one transaction each, with revocations for
released records that go, and the record of every run in ``retention_runs``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
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
    func,
    literal,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session, aliased

from consentry.auth.models import ApiToken
from consentry.auth.service import note_revocation
from consentry.consent.models import Notification, Subject
from consentry.db import Database, utcnow
from consentry.errors import InvalidInput
from consentry.metering.models import AccessRecord
from consentry.retention.holds import held_account_ids
from consentry.retention.models import RUN_TRIGGERS, RetentionRun
from consentry.retention.plan import (
    EXAMPLES,
    Conditions,
    check_at,
    events_after,
    finish_outcomes,
    held_counts,
    held_ids,
    outcome_of,
)
from consentry.retention.rules import RULES, Cutoffs, Rules
from consentry.retention.schemas import RetentionReport, RuleOutcome
from consentry.social.changes import record_account_changes
from consentry.social.models import Account, AssistantInteraction, Block, Follow, Like, Post, Repost

BATCH = 50_000
"""Rows per transaction of a run."""

ACCOUNT_GROUP = 500
"""Deactivated accounts purged together (their relations in one transaction)."""

TOMBSTONE = "purged-"
"""Handle prefix of anonymised accounts (a hyphen: no real handle can take it)."""

Progress = Callable[[str, int], None]
"""Called as ``progress(rule, rows_removed_so_far_by_that_rule)`` after each batch."""


def _exec(session: Session, statement: Any) -> int:
    """Run a bulk UPDATE or DELETE (no ORM session synchronisation); the rows it touched."""
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(cast("CursorResult[Any]", result).rowcount or 0)


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
        anonymised = _exec(session, anonymise)
        if anonymised:  # a bulk change: eligibility state re-reads every account
            record_account_changes(session.connection(), [None])
        tally.add("accounts", anonymised, kind="changed")


def _run_deactivated(database: Database, c: Conditions, tally: _Tally, batch: int) -> None:
    with database.read() as session:
        query = c.deactivated(held=False)
        accounts = [int(i) for i in session.scalars(query.order_by(query.selected_columns[0]))]
    for start in range(0, len(accounts), ACCOUNT_GROUP):
        group = accounts[start : start + ACCOUNT_GROUP]
        tally.example("accounts", group[:EXAMPLES])
        _purge_accounts(database, purged=c.deactivated(held=False, among=group), tally=tally, batch=batch)
        tally.tick()


def _run_access_log(database: Database, c: Conditions, tally: _Tally, batch: int) -> None:
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


def _run_subjects(database: Database, c: Conditions, tally: _Tally, batch: int) -> None:
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


def _start(database: Database, *, rules: Rules, at: datetime, trigger: str) -> RetentionReport:
    """Record a run as ``running``; its report so far (nothing removed yet)."""
    started = utcnow()
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
    return RetentionReport(
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


def _steps(database: Database, c: Conditions, batch: int) -> dict[str, Callable[[_Tally], None]]:
    """How each rule (but ``consent_events``, which removes nothing) purges."""
    return {
        "posts": lambda t: _purge_posts(
            database,
            where=lambda p: and_(c.posts_due(p), p.author_id.not_in(held_ids())),
            tally=t,
            batch=batch,
        ),
        "assistant_interactions": lambda t: _purge_interactions(
            database,
            where=lambda i: and_(c.interactions_due(i), i.account_id.not_in(held_ids())),
            tally=t,
            batch=batch,
        ),
        "deactivated_accounts": lambda t: _run_deactivated(database, c, t, batch),
        "access_log": lambda t: _run_access_log(database, c, t, batch),
        "subject_mappings": lambda t: _run_subjects(database, c, t, batch),
    }


def _run_rule(
    database: Database,
    rule: str,
    c: Conditions,
    step: Callable[[_Tally], None] | None,
    progress: Progress | None,
) -> tuple[RuleOutcome, int]:
    """One rule's outcome and the revocations it created (``step`` is ``None`` for the rule that
    removes nothing, ``consent_events``)."""
    if step is None:
        with database.read() as session:
            return events_after(session, c), 0
    if not _enabled(rule, c.cut):
        return outcome_of(rule, c), 0
    tally = _Tally(outcome_of(rule, c), progress)
    with database.read() as session:
        tally.outcome.held.update(held_counts(session, c, rule))
    step(tally)
    return tally.outcome, tally.revocations


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
    c = Conditions(rules.cutoffs(at))
    clock = time.perf_counter()
    report = _start(database, rules=rules, at=at, trigger=trigger)
    steps = _steps(database, c, batch)
    try:
        for rule in RULES:
            outcome, revocations = _run_rule(database, rule, c, steps.get(rule), progress)
            report.outcomes.append(outcome)
            if rule in steps and _enabled(rule, c.cut):
                report.revocations += revocations
                report.rows_removed = sum(o.total for o in report.outcomes)
                report.seconds = time.perf_counter() - clock
                _store(database, report.run_id, report)
        report.status = "finished"
    except BaseException as error:
        report.status, report.error = "failed", f"{error.__class__.__name__}: {error}"
        raise
    finally:
        report.finished_at = utcnow()
        report.seconds = time.perf_counter() - clock
        report.rows_removed = sum(o.total for o in report.outcomes)
        report.rows_per_second = report.rows_removed / report.seconds if report.seconds > 0 else None
        finish_outcomes(report.outcomes, rules)
        _store(database, report.run_id, report)
    return report
