"""Routes of the web pages: sign-in, the settings page, receipts, policies and the operator dashboard.

Each route only turns the request into service calls and renders a template. Pages are signed in with
the ``consentry_token`` cookie (or an ``Authorization`` header a fronting proxy adds); a missing, expired
or revoked token sends the browser to ``/signin``. Every state-changing request checks the session's CSRF
token (``consentry.web.security``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from consentry import problems
from consentry.api_deps import bearer_token
from consentry.auth.service import Principal, resolve_token
from consentry.consent import service as consent
from consentry.consent.service import ChangeRequest, ConsentContext, SettingState
from consentry.db import Database
from consentry.errors import (
    ConsentryError,
    Forbidden,
    NotFound,
    SignInRequired,
    Unauthenticated,
    Unavailable,
)
from consentry.ids import Id32, Id64
from consentry.transparency.cite import inclusion_of
from consentry.web import charts
from consentry.web import service as web
from consentry.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    SESSION_HOURS,
    SIGNIN_COOKIE,
    CookieCSRFMiddleware,
    csrf_key,
    csrf_token,
    csrf_valid,
    new_signin_nonce,
    safe_next,
    same_nonce,
)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
REGIONS = {
    "default": "your region",
    "EEA": "the European Economic Area",
    "UK": "the United Kingdom",
    "CH": "Switzerland",
}
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
SHORT_REGIONS = {"default": "Rest of world", "EEA": "EEA", "UK": "UK", "CH": "Switzerland"}
MAX_FORM_BYTES = 8 * 1024


# --- helpers ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebSession:
    """A signed-in visitor: who, the token used, and the session's CSRF token."""

    principal: Principal
    token: str
    csrf: str


def _key(request: Request) -> bytes:
    key: bytes | None = getattr(request.app.state, "web_csrf_key", None)
    if key is None:
        key = csrf_key(request.app.state.consent.signer)
        request.app.state.web_csrf_key = key
    return key


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _ctx(request: Request) -> ConsentContext:
    ctx: ConsentContext = request.app.state.consent
    return ctx


def _secure(response: Response, *, cache: bool = False) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if not cache:
        response.headers["Cache-Control"] = "no-store"
    return response


def _page(request: Request, name: str, context: dict[str, Any], *, status: int = 200) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    return _secure(response)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


def web_session(request: Request) -> WebSession:
    """The signed-in visitor, or ``SignInRequired``."""
    token = bearer_token(request)
    if not token:
        raise SignInRequired()
    try:
        with _database(request).read() as session:
            principal = resolve_token(session, token)
    except Unauthenticated as error:
        raise SignInRequired("expired") from error
    return WebSession(principal=principal, token=token, csrf=csrf_token(_key(request), token))


SessionDep = Annotated[WebSession, Depends(web_session)]


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the pages send nothing else); first value of each field."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in parsed.items() if values}


def _csrf_ok(request: Request, session: WebSession, fields: dict[str, str]) -> bool:
    given = request.headers.get(CSRF_HEADER) or fields.get(CSRF_FIELD)
    return csrf_valid(_key(request), session.token, given)


async def _signin_redirect(request: Request, error: Exception) -> Response:
    assert isinstance(error, SignInRequired)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/settings" if request.url.path.startswith("/settings") else "/dashboard"
    url = f"/signin?next={quote(target, safe='/')}" + (f"&reason={error.reason}" if error.reason else "")
    response: Response
    if _wants_json(request):  # the page's script: a problem naming where to sign in
        error.extensions["signin"] = url
        response = problems.response(error, request.url.path)
    else:
        response = RedirectResponse(url, status_code=303)
    if error.reason:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return _secure(response)


# --- sign-in ----------------------------------------------------------------------------------------------


def _signin_page(
    request: Request, *, next_url: str, message: str = "", error: str = "", status: int = 200
) -> Response:
    nonce = new_signin_nonce()
    response = _page(
        request,
        "signin.html",
        {"next": next_url, "nonce": nonce, "message": message, "error": error, "title": "Sign in"},
        status=status,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        nonce,
        max_age=3600,
        path="/signin",
        httponly=True,
        samesite="strict",
        secure=_https(request),
    )
    return response


SIGNIN_MESSAGES = {
    "expired": "Your session has ended: the token is unknown, expired or revoked. Sign in again.",
    "signed-out": "You are signed out.",
}


@router.get("/", response_class=HTMLResponse)
def home() -> Response:
    """The settings page is the front page."""
    return _secure(RedirectResponse("/settings", status_code=303))


@router.get("/signin", response_class=HTMLResponse)
def signin_form(
    request: Request,
    next: Annotated[str | None, Query(max_length=500)] = None,
    reason: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """The demo sign-in form: paste an account or admin token."""
    return _signin_page(request, next_url=safe_next(next, ""), message=SIGNIN_MESSAGES.get(reason or "", ""))


@router.post("/signin", response_class=HTMLResponse)
async def signin(request: Request) -> Response:
    """Check the token; keep it in an HttpOnly cookie and go to the page for its kind."""
    fields = await _form(request)
    next_url = safe_next(fields.get("next"), "")
    if not same_nonce(request.cookies.get(SIGNIN_COOKIE), fields.get(CSRF_FIELD)):
        return _signin_page(
            request,
            next_url=next_url,
            error="This form has expired. Please try again.",
            status=403,
        )
    token = fields.get("token", "").strip()
    if not token:
        return _signin_page(request, next_url=next_url, error="Enter your access token.", status=422)
    try:
        with _database(request).read() as session:
            principal = await run_in_threadpool(resolve_token, session, token)
    except Unauthenticated:
        return _signin_page(
            request,
            next_url=next_url,
            error="That token is not valid: it is unknown, expired or revoked.",
            status=401,
        )
    home_page = "/dashboard" if principal.is_admin else "/settings"
    target = next_url or home_page
    if not target.startswith(home_page) and not target.startswith("/policies"):
        target = home_page
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_HOURS * 3600,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_https(request),
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return _secure(response)


@router.post("/signout")
async def signout(request: Request, session: SessionDep) -> Response:
    """Forget the session cookie."""
    fields = await _form(request)
    if not _csrf_ok(request, session, fields):
        return _page(
            request, "error.html", _error_context("This form has expired. Reload and try again."), status=403
        )
    response = RedirectResponse("/signin?reason=signed-out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return _secure(response)


def _error_context(message: str, *, title: str = "Something went wrong") -> dict[str, Any]:
    return {"title": title, "message": message}


# --- the settings page ------------------------------------------------------------------------------------


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


def _date(at: datetime) -> str:
    return f"{at.day} {at:%b %Y}"


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
        return f"{who}, {_date(when)}" if when else who
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
    ctx = _ctx(request)
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
    with _database(request).read() as session:
        return web.settings_page(session, account_id=account_id, ctx=_ctx(request))


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
    with _database(request).read() as session:
        return consent.receipt_for(session, account_id=account_id, seq=seq, ctx=_ctx(request))


@router.get("/settings", response_class=HTMLResponse)
def settings_page(
    request: Request,
    session: SessionDep,
    receipt: Annotated[Id64 | None, Query(ge=1)] = None,
) -> Response:
    """The account holder's settings, the receipt of the last change, history and data usage."""
    principal = session.principal
    if principal.is_admin or principal.account_id is None:
        return _secure(RedirectResponse("/dashboard", status_code=303))
    if request.headers.get("sec-gpc", "").strip() == "1":
        request.app.state.consent_writer.change(
            consent.gpc_request(principal.account_id, ctx=_ctx(request), client="web")
        )
    page = _load_page(request, principal.account_id)
    shown = None
    if receipt is not None:
        try:
            shown = _receipt_view(_account_receipt(request, principal.account_id, receipt))
        except ConsentryError:
            shown = None
    return _page(request, "settings.html", _settings_context(request, session, page, receipt=shown))


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
    as_json = _wants_json(request)
    if principal.is_admin or principal.account_id is None:
        return _secure(RedirectResponse("/dashboard", status_code=303))
    account_id = principal.account_id
    fields = await _form(request)
    error: str | None = None
    status, error_title, error_field = 200, "Internal error", None
    receipts: list[dict[str, Any]] = []
    if not _csrf_ok(request, session, fields):
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
            return _secure(RedirectResponse(f"/settings?receipt={seq}#receipt", status_code=303))
        if page is None:
            return _page(request, "error.html", _error_context(error or "Please try again."), status=status)
        context = _settings_context(request, session, page, error=error)
        return _page(request, "settings.html", context, status=status)
    body: dict[str, Any] = {"ok": error is None}
    if page is not None:
        cards = _cards(page, _ctx(request))
        body["settings"] = _states_json(cards)
        body["history_html"] = _fragment("_history.html", page=page, sources=SOURCES)
    if error is not None:  # a problem document, with the real state for the page to show
        refused = ConsentryError(error, field=error_field, extensions=body)
        refused.status, refused.title = status, error_title
        return _secure(problems.response(refused, request.url.path))
    if receipts:
        view = _receipt_view(receipts[0])  # the holder's own: the chooser's receipts come first
        body["receipt_html"] = _fragment("_receipt.html", receipt=view)
        body["message"] = f"Saved. {view['description']}: {'On' if view['value'] == 'allow' else 'Off'}."
        if len(receipts) > 1:
            body["message"] += f" Recorded for {len(receipts)} accounts, each with its own receipt."
    return _secure(JSONResponse(body, status_code=status))


async def _link_action(request: Request, session: WebSession, action: str, other: int | None) -> Response:
    """Ask for, confirm or remove a link from the settings page; back to the page, or the page with
    the error when refused (nothing stored)."""
    from consentry.links import service as links
    from consentry.social.models import Account

    principal = session.principal
    if principal.is_admin or principal.account_id is None:
        return _secure(RedirectResponse("/dashboard", status_code=303))
    account_id = principal.account_id
    fields = await _form(request)
    error: str | None = None
    status = 200
    if not _csrf_ok(request, session, fields):
        error, status = "Nothing was changed: this page has expired. Reload it and try again.", 403
    else:
        try:
            with _database(request).write() as db:
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
        return _secure(RedirectResponse("/settings#links", status_code=303))
    page = await run_in_threadpool(_load_page, request, account_id)
    context = _settings_context(request, session, page, link_error=error)
    return _page(request, "settings.html", context, status=status)


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
        return _secure(RedirectResponse("/dashboard", status_code=303))
    try:
        receipt = _account_receipt(request, principal.account_id, seq)
    except ConsentryError as error:
        return _page(
            request,
            "error.html",
            _error_context(error.detail, title="Receipt not found"),
            status=error.status,
        )
    response = Response(
        json.dumps(receipt, indent=2, sort_keys=True) + "\n",
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="consentry-receipt-{seq}.json"'},
    )
    return _secure(response)


@router.get("/settings/receipts/{seq}.tlog-proof")
def download_proof(request: Request, seq: Id64, session: SessionDep) -> Response:
    """The proof that one of the holder's own events is in the public transparency log (C2SP
    tlog-proof against the latest checkpoint, with its cosignatures), as a file."""
    principal = session.principal
    if principal.account_id is None:
        return _secure(RedirectResponse("/dashboard", status_code=303))
    try:
        _account_receipt(request, principal.account_id, seq)  # the holder's own event, or not found
        with _database(request).read() as db:
            found = inclusion_of(db, seq=seq)
    except ConsentryError as error:
        return _page(
            request, "error.html", _error_context(error.detail, title="Proof not found"), status=error.status
        )
    if found is None:
        seconds = request.app.state.tlog.interval.total_seconds()
        detail = (
            f"Your change #{seq} is saved, and it enters the public log within {seconds:g} seconds. "
            "Go back and download the proof again in a moment."
        )
        return _page(request, "error.html", _error_context(detail, title="Proof not ready yet"), status=409)
    response = Response(
        found.text,
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="consentry-receipt-{seq}.tlog-proof"'},
    )
    return _secure(response)


# --- policies ---------------------------------------------------------------------------------------------


@router.get("/policies/{version}", response_class=HTMLResponse)
def policy_page(request: Request, version: Id32) -> Response:
    """A policy version in plain words: when it applies, and each setting's default per region."""
    ctx = _ctx(request)
    try:
        with _database(request).read() as session:
            row = consent.get_policy(session, version)
            policy = consent.policy_of(row)
            summary, created_at = row.summary, row.created_at
    except ConsentryError as error:
        return _page(
            request, "error.html", _error_context(error.detail, title="Policy not found"), status=error.status
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
    return _page(request, "policy.html", context)


# --- the operator dashboard -------------------------------------------------------------------------------


def _cache(request: Request) -> web.ConsentStateCache:
    cache: web.ConsentStateCache | None = getattr(request.app.state, "web_consent_cache", None)
    if cache is None:
        ctx = _ctx(request)
        cache = web.ConsentStateCache(settings=ctx.catalog.keys, jurisdictions=ctx.jurisdictions)
        request.app.state.web_consent_cache = cache
    return cache


def _dashboard_data(request: Request, range_key: str) -> dict[str, Any]:
    ctx = _ctx(request)
    threshold = request.app.state.settings.damages_threshold_posts
    with _database(request).read() as session:
        overview = web.consent_overview(session, cache=_cache(request), ctx=ctx, range_key=range_key)
        policies = consent.load_policies(session)
        releases = web.recent_releases(session)
        partners = web.partner_revocations(session)
        board = web.leaderboard(session, threshold=threshold)
    return {
        "overview": overview,
        "policies": policies,
        "releases": releases,
        "partners": partners,
        "board": board,
    }


def _charts(overview: web.ConsentOverview, ctx: ConsentContext, range_key: str) -> list[dict[str, Any]]:
    names = [web.ALL, *overview.groups]
    styles = charts.styled(names)
    fmt = "%d %b" if range_key == "90d" else "%b %Y"
    panels = []
    for key in overview.rates:
        lines = overview.rates[key]
        series = [
            charts.Series(
                name=SHORT_REGIONS.get(name, name),
                values=lines[name],
                color=color,
                dash=dash,
                strong=name == web.ALL,
            )
            for name, color, dash in styles
        ]
        label = ctx.catalog.get(key).label
        panels.append(
            {
                "key": key,
                "label": label,
                "svg": charts.line_chart(
                    title=f"Share of active accounts allowing: {label}",
                    times=overview.times,
                    series=series,
                    label_format=fmt,
                ),
            }
        )
    return panels


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(
    request: Request,
    session: SessionDep,
    range: Annotated[str, Query(pattern="^(90d|12m|5y)$")] = "12m",
) -> Response:
    """The operator's view: consent over time and now, policies, releases, partners, scrapers."""
    if not session.principal.is_admin:
        return _page(
            request,
            "error.html",
            _error_context(
                "The dashboard is for the platform's operators. Sign in with an admin token, or go to "
                "your own settings.",
                title="Operators only",
            )
            | {"signed_in": True, "csrf": session.csrf, "settings_link": True},
            status=403,
        )
    ctx = _ctx(request)
    data = _dashboard_data(request, range)
    overview: web.ConsentOverview = data["overview"]
    legend = [
        (SHORT_REGIONS.get(name, name), charts.swatch(color, dash, strong=name == web.ALL))
        for name, color, dash in charts.styled([web.ALL, *overview.groups])
    ]
    context = {
        **data,
        "title": "Operator dashboard",
        "csrf": session.csrf,
        "signed_in": True,
        "range": range,
        "ranges": web.RANGES,
        "panels": _charts(overview, ctx, range),
        "legend": legend,
        "regions": SHORT_REGIONS,
        "bar": charts.bar,
        "labels": {s.key: s.label for s in ctx.catalog.settings},
        "now": overview.as_of,
    }
    return _page(request, "dashboard.html", context)


# --- mounting ---------------------------------------------------------------------------------------------


def _filters() -> None:
    env = templates.env

    def when(value: datetime | str | None) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return f"{value.day} {value:%b %Y, %H:%M} UTC"

    def day(value: datetime | None) -> str:
        return "" if value is None else _date(value)

    def number(value: int | float) -> str:
        return f"{value:,}"

    def pct(value: float) -> str:
        return f"{value * 100:.1f}%"

    def iso(value: datetime | str | None) -> str:
        if value is None:
            return ""
        return value if isinstance(value, str) else value.isoformat()

    env.filters.update(when=when, day=day, number=number, pct=pct, iso=iso)
    env.globals["Markup"] = Markup


_filters()


def mount(app: FastAPI) -> None:
    """Add the pages, their static files and the cookie CSRF check to the application."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_exception_handler(SignInRequired, _signin_redirect)
    app.add_middleware(CookieCSRFMiddleware)
