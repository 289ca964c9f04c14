"""The effective settings of one account: single checks and the settings view."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from consentry.consent import ledger
from consentry.consent.context import ConsentContext
from consentry.consent.evaluate import (
    AccountFacts,
    Decision,
    ExplicitEvent,
    effective_consent,
)
from consentry.consent.models import ConsentEvent, Subject
from consentry.consent.policies import load_policies
from consentry.social.models import Account
from consentry.social.service import get_account

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SettingState:
    """The effective state of one setting for one account."""

    key: str
    label: str
    value: str
    basis: str
    explicit: bool
    policy_version: int | None
    seq: int | None


_EXPLICIT_EVENTS = (  # an account's events, through its subject key, in one query
    select(ConsentEvent.setting, ConsentEvent.value, ConsentEvent.recorded_at, ConsentEvent.seq)
    .join(Subject, Subject.subject_key == ConsentEvent.subject_key)
    .where(Subject.account_id == bindparam("account_id"))
)


def facts(account: Account) -> AccountFacts:
    """What consent evaluation needs of a platform account."""
    return AccountFacts(
        account_id=account.id,
        created_at=account.created_at,
        country=account.country,
        birth_year=account.birth_year,
        status=account.status,
        status_changed_at=account.status_changed_at,
    )


def _explicit_events(session: Session, account_id: int) -> list[ExplicitEvent]:
    rows = session.execute(_EXPLICIT_EVENTS, {"account_id": account_id}).all()
    return [ExplicitEvent(setting=s, value=v, recorded_at=r, seq=q) for s, v, r, q in rows]


def decide(
    session: Session, *, account: Account, setting: str, at: datetime, ctx: ConsentContext
) -> Decision:
    """The effective consent of one account for one setting at ``at`` (the single-check implementation)."""
    ctx.catalog.get(setting)
    return effective_consent(
        account=facts(account),
        setting=setting,
        at=at,
        events=_explicit_events(session, account.id),
        policies=load_policies(session),
        jurisdictions=ctx.jurisdictions,
    )


def current_time(session: Session) -> datetime:
    """The time at which "now" is read: the clock, but never before the last event in the ledger."""
    return ledger.current_time(session)


def settings_view(
    session: Session, *, account_id: int, ctx: ConsentContext, at: datetime | None = None
) -> list[SettingState]:
    """Every catalog setting of an account with its effective value and its basis (now, by default)."""
    at = at or current_time(session)
    account = get_account(session, account_id)
    events = _explicit_events(session, account_id)
    policies = load_policies(session)
    states = []
    for setting in ctx.catalog.settings:
        decision = effective_consent(
            account=facts(account),
            setting=setting.key,
            at=at,
            events=events,
            policies=policies,
            jurisdictions=ctx.jurisdictions,
        )
        states.append(
            SettingState(
                key=setting.key,
                label=setting.label,
                value=decision.value,
                basis=decision.basis,
                explicit=decision.basis == "explicit",
                policy_version=decision.policy_version,
                seq=decision.seq,
            )
        )
    return states
