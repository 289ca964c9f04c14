"""The account holder's pages: the settings page and its changes, account links, receipts and their
transparency-log proofs, and the public policy pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from consentry import problems
from consentry.api_deps import bearer_token
from consentry.consent import service as consent
from consentry.consent.service import ChangeRequest, ConsentContext, SettingState
from consentry.errors import (
    ConsentryError,
    Forbidden,
    NotFound,
    Unavailable,
)
from consentry.ids import Id32, Id64
from consentry.transparency.cite import inclusion_of
from consentry.web import service as web
from consentry.web.pages import (
    REGIONS,
    SessionDep,
    WebSession,
    csrf_ok,
    ctx_of,
    database_of,
    day_text,
    error_context,
    read_form,
    render,
    secure,
    templates,
    wants_json,
)
from consentry.web.security import (
    CSRF_FIELD,
)

router = APIRouter(include_in_schema=False)
RECIPIENTS = {"first_party": "Us (our own AI assistant)", "third_party": "Third-party collaborators"}
PURPOSES = {
    "train-ai": "training AI models",
    "ai-train": "training AI models",
    "ai-input": "answering questions in real time",
    "search": "search",
}

CATEGORIES = {
    "posts": "public posts",
    "assistant_interactions": "conversations with the assistant",
    "profile": "profile",
}

SOURCES = {
    "user": "You",
    "gpc": "Your browser (Global Privacy Control)",
    "admin": "The platform operator",
    "import": "Imported from the platform",
}


@dataclass(frozen=True)
class Card:
    """One setting as the page shows it."""

    key: str
    label: str
    checked: bool
    locked: bool
    status: str
    basis: str
    explicit: bool
    policy_version: int | None
    recipient: str
    purposes: str
    categories: str


def _cards(page: web.SettingsPage, ctx: ConsentContext) -> list[Card]:
    region = REGIONS.get(page.group, f"your region ({page.group})")
    cards = []
    for state in page.states:
        setting = ctx.catalog.get(state.key)
        cards.append(
            Card(
                key=state.key,
                label=state.label,
                checked=state.value == "allow",
                locked=state.basis in ("minor", "inactive"),
                status="On" if state.value == "allow" else "Off",
                basis=_basis(state, page, region),
                explicit=state.explicit,
                policy_version=state.policy_version,
                recipient=RECIPIENTS.get(setting.recipient, setting.recipient),
                purposes=", ".join(PURPOSES.get(p, p) for p in setting.purposes),
                categories=", ".join(CATEGORIES.get(c, c) for c in setting.categories),
            )
        )
    return cards


def _basis(state: SettingState, page: web.SettingsPage, region: str) -> str:
    if state.basis == "explicit":
        when = page.choice_times.get(state.key)
        who = (
            "Set by your browser's Global Privacy Control signal"
            if state.key in page.gpc_choices
            else "Your choice"
        )
        return f"{who}, {day_text(when)}" if when else who
    if state.basis == "default":
        return f"Default for {region}" + (
            f" (policy v{state.policy_version})" if state.policy_version else ""
        )
    return {
        "minor": "Always off for accounts of people aged 18 or under",
        "inactive": "Off while the account is deactivated",
        "no_policy": "Off: no policy applies yet",
    }.get(state.basis, "Off: this setting could not be evaluated")


def _settings_context(
    request: Request, session: WebSession, page: web.SettingsPage, **extra: Any
) -> dict[str, Any]:
    ctx = ctx_of(request)
    return {
        "title": "Your data and AI settings",
        "csrf": session.csrf,
        "page": page,
        "cards": _cards(page, ctx),
        "region": REGIONS.get(page.group, page.group),
        "sources": SOURCES,
        "operator": ctx.operator_name,
        "signed_in": True,
        **extra,
    }


def _load_page(request: Request, account_id: int) -> web.SettingsPage:
    with database_of(request).read() as session:
        return web.settings_page(session, account_id=account_id, ctx=ctx_of(request))


def _receipt_view(receipt: dict[str, Any]) -> dict[str, Any]:
    inner = receipt.get("receipt", {})
    event = inner.get("event", {})
    return {
        "seq": inner.get("chain", {}).get("seq"),
        "setting": inner.get("service", {}).get("setting"),
        "description": inner.get("service", {}).get("description"),
        "value": event.get("value"),
        "recorded_at": inner.get("issued_at"),
        "receipt_id": inner.get("receipt_id"),
        "kid": receipt.get("signature", {}).get("kid"),
        "controller": inner.get("controller", {}).get("name"),
    }


def _account_receipt(request: Request, account_id: int, seq: int) -> dict[str, Any]:
    with database_of(request).read() as session:
        return consent.receipt_for(session, account_id=account_id, seq=seq, ctx=ctx_of(request))


@router.get("/settings", response_class=HTMLResponse)
def settings_page(
    request: Request,
    session: SessionDep,
    receipt: Annotated[Id64 | None, Query(ge=1)] = None,
) -> Response:
    """The account holder's settings, the receipt of the last change, history and data usage."""
    principal = session.principal
    if principal.is_admin or principal.account_id is None:
        return secure(RedirectResponse("/dashboard", status_code=303))
    if request.headers.get("sec-gpc", "").strip() == "1":
        request.app.state.consent_writer.change(
            consent.gpc_request(principal.account_id, ctx=ctx_of(request), client="web")
        )
    page = _load_page(request, principal.account_id)
    shown = None
    if receipt is not None:
        try:
            shown = _receipt_view(_account_receipt(request, principal.account_id, receipt))
        except ConsentryError:
            shown = None
    return render(request, "settings.html", _settings_context(request, session, page, receipt=shown))


def _fragment(name: str, **context: Any) -> str:
    return templates.env.get_template(name).render(**context)


def _states_json(cards: list[Card]) -> list[dict[str, Any]]:
    return [
        {"key": c.key, "checked": c.checked, "status": c.status, "basis": c.basis, "explicit": c.explicit}
        for c in cards
    ]


@router.post("/settings")
async def change_setting(request: Request, session: SessionDep) -> Response:
    """Record one choice (a toggle); answers JSON to the page's script, or redirects a plain form."""
    principal = session.principal
    as_json = wants_json(request)
    if principal.is_admin or principal.account_id is None:
        return secure(RedirectResponse("/dashboard", status_code=303))
    account_id = principal.account_id
    fields = await read_form(request)
    error: str | None = None
    status, error_title, error_field = 200, "Internal error", None
    receipts: list[dict[str, Any]] = []
    if not csrf_ok(request, session, fields):
        error, status = "Your change was not saved: this page has expired. Reload it and try again.", 403
        error_title, error_field = Forbidden.title, CSRF_FIELD
    else:
        key, value = fields.get("setting", ""), fields.get("value", "")
        scope = fields.get("scope", "account")
        writer = request.app.state.consent_writer
        change = ChangeRequest(account_id=account_id, changes={key: value}, client="web", scope=scope)
        try:
            receipts = await run_in_threadpool(writer.change, change)
        except ConsentryError as failure:
            error, status = f"Your change was not saved: {failure.detail}", failure.status
            error_title = failure.title  # its field names the API's input, not this form's
        except Exception:
            error, status = (
                "Your change was not saved because of a problem on our side. Please try again.",
                503,
            )
            error_title = Unavailable.title
    try:
        page = await run_in_threadpool(_load_page, request, account_id)
    except Exception:
        page = None
    if not as_json:
        if error is None and receipts:
            seq = receipts[0]["receipt"]["chain"]["seq"]
            return secure(RedirectResponse(f"/settings?receipt={seq}#receipt", status_code=303))
        if page is None:
            return render(request, "error.html", error_context(error or "Please try again."), status=status)
        context = _settings_context(request, session, page, error=error)
        return render(request, "settings.html", context, status=status)
    body: dict[str, Any] = {"ok": error is None}
    if page is not None:
        cards = _cards(page, ctx_of(request))
        body["settings"] = _states_json(cards)
        body["history_html"] = _fragment("_history.html", page=page, sources=SOURCES)
    if error is not None:  # a problem document, with the real state for the page to show
        refused = ConsentryError(error, field=error_field, extensions=body)
        refused.status, refused.title = status, error_title
        return secure(problems.response(refused, request.url.path))
    if receipts:
        view = _receipt_view(receipts[0])  # the holder's own: the chooser's receipts come first
        body["receipt_html"] = _fragment("_receipt.html", receipt=view)
        body["message"] = f"Saved. {view['description']}: {'On' if view['value'] == 'allow' else 'Off'}."
        if len(receipts) > 1:
            body["message"] += f" Recorded for {len(receipts)} accounts, each with its own receipt."
    return secure(JSONResponse(body, status_code=status))


async def _link_action(request: Request, session: WebSession, action: str, other: int | None) -> Response:
    """Ask for, confirm or remove a link from the settings page; back to the page, or the page with
    the error when refused (nothing stored)."""
    from consentry.links import service as links
    from consentry.social.models import Account

    principal = session.principal
    if principal.is_admin or principal.account_id is None:
        return secure(RedirectResponse("/dashboard", status_code=303))
    account_id = principal.account_id
    fields = await read_form(request)
    error: str | None = None
    status = 200
    if not csrf_ok(request, session, fields):
        error, status = "Nothing was changed: this page has expired. Reload it and try again.", 403
    else:
        try:
            with database_of(request).write() as db:
                if action == "request":
                    handle = fields.get("handle", "").strip().lstrip("@")
                    found = db.scalar(select(Account.id).where(Account.handle == handle)) if handle else None
                    if found is None:
                        raise NotFound(f"there is no account @{handle}" if handle else "enter a handle")
                    links.request_link(db, account_id=account_id, other_id=found)
                elif action == "confirm" and other is not None:
                    links.confirm_link(db, account_id=account_id, other_id=other)
                elif other is not None:
                    links.remove_link(db, account_id=account_id, other_id=other)
        except ConsentryError as failure:
            error, status = f"Nothing was changed: {failure.detail}", failure.status
    if error is None:
        return secure(RedirectResponse("/settings#links", status_code=303))
    page = await run_in_threadpool(_load_page, request, account_id)
    context = _settings_context(request, session, page, link_error=error)
    return render(request, "settings.html", context, status=status)


@router.post("/settings/links")
async def ask_link(request: Request, session: SessionDep) -> Response:
    """Ask to link the signed-in account with another one, named by handle."""
    return await _link_action(request, session, "request", None)


@router.post("/settings/links/{account_id}/confirm")
async def confirm_link(request: Request, account_id: Id64, session: SessionDep) -> Response:
    """Confirm a link another account asked for."""
    return await _link_action(request, session, "confirm", account_id)


@router.post("/settings/links/{account_id}/remove")
async def remove_link(request: Request, account_id: Id64, session: SessionDep) -> Response:
    """Unlink, withdraw or decline."""
    return await _link_action(request, session, "remove", account_id)


@router.get("/settings/receipts/{seq}.json")
def download_receipt(request: Request, seq: Id64, session: SessionDep) -> Response:
    """A signed receipt of one of the holder's own events, as a file."""
    principal = session.principal
    if principal.account_id is None:
        return secure(RedirectResponse("/dashboard", status_code=303))
    try:
        receipt = _account_receipt(request, principal.account_id, seq)
    except ConsentryError as error:
        return render(
            request,
            "error.html",
            error_context(error.detail, title="Receipt not found"),
            status=error.status,
        )
    response = Response(
        json.dumps(receipt, indent=2, sort_keys=True) + "\n",
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="consentry-receipt-{seq}.json"'},
    )
    return secure(response)


@router.get("/settings/receipts/{seq}.tlog-proof")
def download_proof(request: Request, seq: Id64, session: SessionDep) -> Response:
    """The proof that one of the holder's own events is in the public transparency log (C2SP
    tlog-proof against the latest checkpoint, with its cosignatures), as a file."""
    principal = session.principal
    if principal.account_id is None:
        return secure(RedirectResponse("/dashboard", status_code=303))
    try:
        _account_receipt(request, principal.account_id, seq)  # the holder's own event, or not found
        with database_of(request).read() as db:
            found = inclusion_of(db, seq=seq)
    except ConsentryError as error:
        return render(
            request, "error.html", error_context(error.detail, title="Proof not found"), status=error.status
        )
    if found is None:
        seconds = request.app.state.tlog.interval.total_seconds()
        detail = (
            f"Your change #{seq} is saved, and it enters the public log within {seconds:g} seconds. "
            "Go back and download the proof again in a moment."
        )
        return render(request, "error.html", error_context(detail, title="Proof not ready yet"), status=409)
    response = Response(
        found.text,
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="consentry-receipt-{seq}.tlog-proof"'},
    )
    return secure(response)


@router.get("/policies/{version}", response_class=HTMLResponse)
def policy_page(request: Request, version: Id32) -> Response:
    """A policy version in plain words: when it applies, and each setting's default per region."""
    ctx = ctx_of(request)
    try:
        with database_of(request).read() as session:
            row = consent.get_policy(session, version)
            policy = consent.policy_of(row)
            summary, created_at = row.summary, row.created_at
    except ConsentryError as error:
        return render(
            request, "error.html", error_context(error.detail, title="Policy not found"), status=error.status
        )
    groups = list(ctx.jurisdictions.names)
    table = [
        {
            "key": s.key,
            "label": s.label,
            "values": [policy.default(g, s.key) for g in groups],
        }
        for s in ctx.catalog.settings
    ]
    context = {
        "title": f"Policy v{policy.version}: {policy.title}",
        "policy": policy,
        "summary": summary,
        "created_at": created_at,
        "groups": [(g, REGIONS.get(g, g) if g != "default" else "Everywhere else") for g in groups],
        "table": table,
        "signed_in": bearer_token(request) is not None,
    }
    return render(request, "policy.html", context)
