"""HTTP routes of the consent domain: translate requests into service calls, nothing more."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from consentry.api_deps import AdminDep, ClientDep, DatabaseDep, database_call, model_response
from consentry.consent import ledger, service
from consentry.consent.deps import AccountDep
from consentry.consent.schemas import (
    ChangeOut,
    EventOut,
    HistoryOut,
    ImpactOut,
    LinkedChangeOut,
    NotificationOut,
    PolicyIn,
    PolicyOut,
    SettingOut,
    SettingsOut,
    SettingsUpdate,
    SignedReceipt,
    impact_out,
)
from consentry.consent.writer import ConsentWriter
from consentry.db import utcnow
from consentry.errors import Conflict
from consentry.ids import Id32, Id64
from consentry.links.service import linked_ids
from consentry.openapi import raises

router = APIRouter()


def context(request: Request) -> service.ConsentContext:
    """The application's consent context."""
    ctx: service.ConsentContext = request.app.state.consent
    return ctx


def aware(at: datetime | None) -> datetime:
    """A query time, UTC when no offset is given; now when absent."""
    if at is None:
        return utcnow()
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _settings_out(states: list[service.SettingState]) -> list[SettingOut]:
    return [SettingOut.model_validate(state, from_attributes=True) for state in states]


@router.get("/v1/me/settings", tags=["settings"], response_model=SettingsOut)
async def my_settings(request: Request, principal: AccountDep, database: DatabaseDep) -> Response:
    """Every setting of the caller: its value, whether explicit or default, and which policy."""
    account_id, ctx = principal.account_id, context(request)
    assert account_id is not None

    def read() -> Response:
        with database.read() as session:
            at = service.current_time(session)
            states = service.settings_view(session, account_id=account_id, ctx=ctx, at=at)
        return model_response(SettingsOut(account_id=account_id, as_of=at, settings=_settings_out(states)))

    return await database_call(database, read)


@router.put("/v1/me/settings", tags=["settings"], response_model=ChangeOut)
async def change_my_settings(
    request: Request, body: SettingsUpdate, principal: AccountDep, client: ClientDep, database: DatabaseDep
) -> Response:
    """Record one or many choices; returns a signed receipt per change (the client kind is recorded).

    With ``"scope": "linked"`` the same choices are recorded for every account the caller has a
    confirmed link with, in the same transaction: one event and one receipt per account and setting,
    each naming the caller's subject key as ``chosen_by``; ``accounts`` says what each account got."""
    me = principal.account_id
    assert me is not None
    ctx = context(request)
    writer: ConsentWriter = request.app.state.consent_writer
    change = service.ChangeRequest(account_id=me, changes=body.settings, client=client, scope=body.scope)
    receipts = await asyncio.wait_for(asyncio.wrap_future(writer.submit(change)), timeout=60)

    def read() -> Response:
        with database.read() as session:
            states = service.settings_view(session, account_id=me, ctx=ctx)
            accounts: list[LinkedChangeOut] = []
            if body.scope == "linked":
                covered = [me, *linked_ids(session, account_id=me)]
                keys = ledger.subject_keys(session, covered)
                for account_id in covered:
                    seqs = [
                        int(item["receipt"]["chain"]["seq"])
                        for item in receipts
                        if item["receipt"]["subject"] == keys.get(account_id)
                    ]
                    view = service.settings_view(session, account_id=account_id, ctx=ctx)
                    accounts.append(
                        LinkedChangeOut(
                            account_id=account_id,
                            changed=bool(seqs),
                            receipt_seqs=seqs,
                            settings=_settings_out(view),
                        )
                    )
        out = ChangeOut(
            receipts=receipts, settings=_settings_out(states), scope=body.scope, accounts=accounts
        )
        return model_response(out)

    return await database_call(database, read)


@router.get("/v1/me/consent-history", tags=["settings"])
def my_history(
    principal: AccountDep,
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_seq: Annotated[Id64 | None, Query(ge=1)] = None,
) -> HistoryOut:
    """The caller's consent events, newest first."""
    assert principal.account_id is not None
    with database.read() as session:
        rows = service.history(session, account_id=principal.account_id, limit=limit, before_seq=before_seq)
        events = [EventOut.model_validate(row, from_attributes=True) for row in rows]
    return HistoryOut(events=events, next_before_seq=events[-1].seq if len(events) == limit else None)


@router.get("/v1/me/receipts/{seq}", tags=["settings"])
def my_receipt(request: Request, seq: Id64, principal: AccountDep, database: DatabaseDep) -> SignedReceipt:
    """The signed receipt of one of the caller's own consent events."""
    assert principal.account_id is not None
    with database.read() as session:
        signed = service.receipt_for(session, account_id=principal.account_id, seq=seq, ctx=context(request))
    return SignedReceipt.model_validate(signed)


@router.get("/v1/me/notifications", tags=["settings"])
def my_notifications(
    principal: AccountDep, database: DatabaseDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[NotificationOut]:
    """The caller's notifications, newest first (policy changes that change their effective consent)."""
    assert principal.account_id is not None
    with database.read() as session:
        rows = service.notifications(session, account_id=principal.account_id, limit=limit)
        return [NotificationOut.model_validate(row) for row in rows]


@router.get("/.well-known/consentry/receipt-key", tags=["receipts"])
def receipt_key(request: Request) -> dict[str, Any]:
    """The operator's public receipt-signing key as a JWK Set."""
    return {"keys": [context(request).signer.jwk]}


@router.get("/.well-known/gpc.json", tags=["signals"])
def gpc_support() -> dict[str, Any]:
    """Global Privacy Control support resource: this service honours ``Sec-GPC: 1``."""
    return {"gpc": True, "lastUpdate": "2026-11-22"}


@router.post("/v1/policies/impact", tags=["policies"])
def policy_impact(request: Request, body: PolicyIn, principal: AdminDep, database: DatabaseDep) -> ImpactOut:
    """Measure, without adding it, how many accounts' consent a candidate version would change (admin)."""
    ctx = context(request)
    with database.read() as session:
        candidate = service.candidate_policy(
            session,
            effective_at=aware(body.effective_at),
            applies_to=body.applies_to,
            defaults=body.defaults,
            title=body.title,
            ctx=ctx,
        )
        return impact_out(service.policy_impact(session, candidate=candidate, ctx=ctx))


@router.post("/v1/policies", status_code=201, tags=["policies"])
@raises(Conflict)
def add_policy(request: Request, body: PolicyIn, principal: AdminDep, database: DatabaseDep) -> PolicyOut:
    """Add a policy version (admin): in the future, announced ahead if it changes defaults, never a
    silent opt-in unless ``allow_opt_in``."""
    with database.write() as session:
        row, impact = service.add_policy(
            session,
            effective_at=aware(body.effective_at),
            applies_to=body.applies_to,
            defaults=body.defaults,
            title=body.title,
            summary=body.summary,
            created_by=f"token:{principal.token_id}",
            ctx=context(request),
            allow_opt_in=body.allow_opt_in,
        )
        out = PolicyOut.model_validate(row)
    out.impact = impact_out(impact)
    return out


@router.get("/v1/policies", tags=["policies"])
def list_policies(database: DatabaseDep) -> list[PolicyOut]:
    """Every policy version (public: account holders may read the policies that bind them)."""
    with database.read() as session:
        return [PolicyOut.model_validate(row) for row in service.list_policies(session)]


@router.get("/v1/policies/{version}", tags=["policies"])
def get_policy(version: Id32, database: DatabaseDep) -> PolicyOut:
    """One policy version."""
    with database.read() as session:
        return PolicyOut.model_validate(service.get_policy(session, version))


@router.get("/v1/accounts/{account_id}/consent", tags=["accounts"])
def account_consent(
    request: Request,
    account_id: Id64,
    principal: AdminDep,
    database: DatabaseDep,
    as_of: datetime | None = None,
) -> SettingsOut:
    """An account's effective consent at ``as_of`` (default now), for operators."""
    at = aware(as_of)
    with database.read() as session:
        states = service.settings_view(session, account_id=account_id, ctx=context(request), at=at)
    return SettingsOut(account_id=account_id, as_of=at, settings=_settings_out(states))
