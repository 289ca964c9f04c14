"""What every web page shares: the templates and their filters, the security headers, the signed-in
visitor (``web_session``) and the CSRF-checked forms it posts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from consentry.api_deps import bearer_token
from consentry.auth.service import Principal, resolve_token
from consentry.consent.service import ConsentContext
from consentry.db import Database
from consentry.errors import (
    SignInRequired,
    Unauthenticated,
)
from consentry.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    csrf_key,
    csrf_token,
    csrf_valid,
)

HERE = Path(__file__).parent

templates = Jinja2Templates(directory=str(HERE / "templates"))
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

MAX_FORM_BYTES = 8 * 1024


@dataclass(frozen=True)
class WebSession:
    """A signed-in visitor: who, the token used, and the session's CSRF token."""

    principal: Principal
    token: str
    csrf: str


def csrf_secret(request: Request) -> bytes:
    """The key the session CSRF tokens are derived with (from the operator's signing key, once)."""
    key: bytes | None = getattr(request.app.state, "web_csrf_key", None)
    if key is None:
        key = csrf_key(request.app.state.consent.signer)
        request.app.state.web_csrf_key = key
    return key


def database_of(request: Request) -> Database:
    """The application's database."""
    database: Database = request.app.state.database
    return database


def ctx_of(request: Request) -> ConsentContext:
    """The application's consent context (catalog, jurisdictions, signer)."""
    ctx: ConsentContext = request.app.state.consent
    return ctx


def secure(response: Response, *, cache: bool = False) -> Response:
    """``response`` with the pages' security headers (and ``no-store`` unless ``cache``)."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if not cache:
        response.headers["Cache-Control"] = "no-store"
    return response


def render(request: Request, name: str, context: dict[str, Any], *, status: int = 200) -> Response:
    """A template rendered as a page with the security headers."""
    response = templates.TemplateResponse(request, name, context, status_code=status)
    return secure(response)


def wants_json(request: Request) -> bool:
    """Whether the request is the page's script asking for JSON."""
    return "application/json" in request.headers.get("accept", "")


def is_https(request: Request) -> bool:
    """Whether the visitor reached us over HTTPS (directly or through a proxy)."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


def web_session(request: Request) -> WebSession:
    """The signed-in visitor, or ``SignInRequired``."""
    token = bearer_token(request)
    if not token:
        raise SignInRequired()
    try:
        with database_of(request).read() as session:
            principal = resolve_token(session, token)
    except Unauthenticated as error:
        raise SignInRequired("expired") from error
    return WebSession(principal=principal, token=token, csrf=csrf_token(csrf_secret(request), token))


SessionDep = Annotated[WebSession, Depends(web_session)]


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the pages send nothing else); first value of each field."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in parsed.items() if values}


def csrf_ok(request: Request, session: WebSession, fields: dict[str, str]) -> bool:
    """Whether the request carries the session's CSRF token (header or form field)."""
    given = request.headers.get(CSRF_HEADER) or fields.get(CSRF_FIELD)
    return csrf_valid(csrf_secret(request), session.token, given)


def error_context(message: str, *, title: str = "Something went wrong") -> dict[str, Any]:
    """The context of the error page."""
    return {"title": title, "message": message}


def day_text(at: datetime) -> str:
    """A date as the pages show it (``6 Dec 2026``)."""
    return f"{at.day} {at:%b %Y}"


def _filters() -> None:
    env = templates.env

    def when(value: datetime | str | None) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return f"{value.day} {value:%b %Y, %H:%M} UTC"

    def day(value: datetime | None) -> str:
        return "" if value is None else day_text(value)

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
