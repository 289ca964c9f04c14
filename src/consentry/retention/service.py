"""Retention, the domain's public face: legal holds (``holds``), the purge plan over the database
(``plan``) or a lake (``lake``), the purge itself (``purge``), and the schedule and record of runs.

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

from datetime import datetime, timedelta

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.orm import Session

from consentry.config import Settings
from consentry.db import Database, utcnow
from consentry.errors import InvalidInput, NotFound
from consentry.retention.holds import (
    active_hold,
    add_hold,
    held_account_ids,
    list_holds,
    release_hold,
)
from consentry.retention.lake import plan_lake
from consentry.retention.models import RetentionRun
from consentry.retention.plan import EXAMPLES, check_at, plan
from consentry.retention.purge import BATCH, TOMBSTONE, Progress, apply
from consentry.retention.rules import load_rules
from consentry.retention.schemas import RetentionReport

__all__ = [
    "BATCH",
    "EXAMPLES",
    "TOMBSTONE",
    "Progress",
    "active_hold",
    "add_hold",
    "apply",
    "check_at",
    "get_run",
    "held_account_ids",
    "list_holds",
    "list_runs",
    "next_due",
    "plan",
    "plan_lake",
    "release_hold",
    "run_scheduled",
]


# --- runs -------------------------------------------------------------------------------------------


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
