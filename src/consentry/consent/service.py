"""Consent use cases: read and change settings, history, receipts, policies, bulk evaluation.

The use cases live in modules by responsibility (``changes``, ``state``, ``policies``, ``tables``,
``context``); this module holds history, receipts and bulk evaluation, and names every use case, so
the other domains reach the consent domain through ``consentry.consent.service``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent import ledger
from consentry.consent.changes import (
    SCOPES as SCOPES,
)
from consentry.consent.changes import (
    ChangeRequest as ChangeRequest,
)
from consentry.consent.changes import (
    change_settings as change_settings,
)
from consentry.consent.changes import (
    change_settings_many as change_settings_many,
)
from consentry.consent.changes import (
    gpc_applies as gpc_applies,
)
from consentry.consent.changes import (
    gpc_request as gpc_request,
)
from consentry.consent.changes import (
    gpc_settings as gpc_settings,
)
from consentry.consent.changes import (
    sign_event as sign_event,
)

# the consent domain's use cases, each in the module of its responsibility, reachable from here
from consentry.consent.context import (
    ConsentContext as ConsentContext,
)
from consentry.consent.evaluate import (
    evaluate_many,
)
from consentry.consent.models import ConsentEvent
from consentry.consent.policies import (
    DEFAULT_NOTICE as DEFAULT_NOTICE,
)
from consentry.consent.policies import (
    add_policy as add_policy,
)
from consentry.consent.policies import (
    candidate_policy as candidate_policy,
)
from consentry.consent.policies import (
    get_policy as get_policy,
)
from consentry.consent.policies import (
    list_policies as list_policies,
)
from consentry.consent.policies import (
    load_policies as load_policies,
)
from consentry.consent.policies import (
    notifications as notifications,
)
from consentry.consent.policies import (
    policy_impact as policy_impact,
)
from consentry.consent.policies import (
    policy_of as policy_of,
)
from consentry.consent.state import (
    SettingState as SettingState,
)
from consentry.consent.state import (
    current_time as current_time,
)
from consentry.consent.state import (
    decide as decide,
)
from consentry.consent.state import (
    settings_view as settings_view,
)
from consentry.consent.tables import (
    accounts_table as accounts_table,
)
from consentry.consent.tables import (
    events_table as events_table,
)
from consentry.consent.tables import (
    load_accounts as load_accounts,
)
from consentry.consent.tables import (
    read_accounts as read_accounts,
)
from consentry.db import utcnow
from consentry.errors import InvalidInput, NotFound
from consentry.social.service import get_account

log = logging.getLogger(__name__)


def history(
    session: Session, *, account_id: int, limit: int = 100, before_seq: int | None = None
) -> list[ConsentEvent]:
    """An account's consent events, newest first."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    get_account(session, account_id)
    key = ledger.subject_key_for(session, account_id, create=False)
    if key is None:
        return []
    query = select(ConsentEvent).where(ConsentEvent.subject_key == key)
    if before_seq is not None:
        query = query.where(ConsentEvent.seq < before_seq)
    return list(session.scalars(query.order_by(ConsentEvent.seq.desc()).limit(limit)))


def receipt_for(session: Session, *, account_id: int, seq: int, ctx: ConsentContext) -> dict[str, Any]:
    """The signed receipt of one of the account's own events (regenerated; signatures are deterministic)."""
    account = get_account(session, account_id)
    key = ledger.subject_key_for(session, account_id, create=False)
    row = session.get(ConsentEvent, seq)
    if row is None or key is None or row.subject_key != key:
        raise NotFound(f"no consent event {seq} of this account", field="seq")
    title = get_policy(session, row.policy_version).title if row.policy_version is not None else None
    return sign_event(
        row, ctx=ctx, jurisdiction=ctx.jurisdictions.group_of(account.country), policy_title=title
    )


# --- bulk evaluation ---------------------------------------------------------------------------------


def evaluate_accounts(
    session: Session,
    *,
    account_ids: Sequence[int],
    settings: Sequence[str],
    at: datetime,
    ctx: ConsentContext,
) -> pa.Table:
    """Effective consent of the given accounts only: their rows and events are read, then evaluated
    vectorised. Unknown ids are simply absent from the result (callers treat absence as deny)."""
    accounts, events = read_accounts(session, account_ids=account_ids, settings=settings, until=at)
    return evaluate_many(
        accounts,
        events,
        settings=list(settings),
        at=at,
        policies=load_policies(session),
        jurisdictions=ctx.jurisdictions,
    )


def allowed_accounts(
    session: Session,
    *,
    account_ids: Sequence[int],
    setting: str,
    ctx: ConsentContext,
    at: datetime | None = None,
) -> set[int]:
    """The ids among ``account_ids`` whose effective consent for ``setting`` is allow; on error, none."""
    ctx.catalog.get(setting)
    try:
        table = evaluate_accounts(
            session, account_ids=account_ids, settings=[setting], at=at or utcnow(), ctx=ctx
        )
    except Exception:  # fail closed
        log.exception("consent evaluation failed for %d accounts; allowing none", len(account_ids))
        return set()
    return set(table.filter(table[setting])["account_id"].to_pylist())


def evaluate_all(
    session: Session, *, at: datetime, ctx: ConsentContext, settings: Sequence[str] | None = None
) -> pa.Table:
    """Effective consent of every account in the database (vectorised)."""
    return evaluate_many(
        accounts_table(session),
        events_table(session, until=at),
        settings=list(settings or ctx.catalog.keys),
        at=at,
        policies=load_policies(session),
        jurisdictions=ctx.jurisdictions,
    )
