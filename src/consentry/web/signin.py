"""Signing in and out of the web pages with a pasted token, and where a visitor without a session is sent."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from consentry import problems
from consentry.auth.service import resolve_token
from consentry.errors import (
    SignInRequired,
    Unauthenticated,
)
from consentry.web.pages import (
    SessionDep,
    csrf_ok,
    database_of,
    error_context,
    is_https,
    read_form,
    render,
    secure,
    wants_json,
)
from consentry.web.security import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SESSION_HOURS,
    SIGNIN_COOKIE,
    new_signin_nonce,
    safe_next,
    same_nonce,
)

router = APIRouter(include_in_schema=False)


async def signin_redirect(request: Request, error: Exception) -> Response:
    """Send a visitor without a valid session to the sign-in page (a problem naming it, for the
    page's script)."""
    assert isinstance(error, SignInRequired)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/settings" if request.url.path.startswith("/settings") else "/dashboard"
    url = f"/signin?next={quote(target, safe='/')}" + (f"&reason={error.reason}" if error.reason else "")
    response: Response
    if wants_json(request):  # the page's script: a problem naming where to sign in
        error.extensions["signin"] = url
        response = problems.response(error, request.url.path)
    else:
        response = RedirectResponse(url, status_code=303)
    if error.reason:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return secure(response)


def _signin_page(
    request: Request, *, next_url: str, message: str = "", error: str = "", status: int = 200
) -> Response:
    nonce = new_signin_nonce()
    response = render(
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
        secure=is_https(request),
    )
    return response


SIGNIN_MESSAGES = {
    "expired": "Your session has ended: the token is unknown, expired or revoked. Sign in again.",
    "signed-out": "You are signed out.",
}


@router.get("/", response_class=HTMLResponse)
def home() -> Response:
    """The settings page is the front page."""
    return secure(RedirectResponse("/settings", status_code=303))


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
    fields = await read_form(request)
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
        with database_of(request).read() as session:
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
        secure=is_https(request),
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return secure(response)


@router.post("/signout")
async def signout(request: Request, session: SessionDep) -> Response:
    """Forget the session cookie."""
    fields = await read_form(request)
    if not csrf_ok(request, session, fields):
        return render(
            request, "error.html", error_context("This form has expired. Reload and try again."), status=403
        )
    response = RedirectResponse("/signin?reason=signed-out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return secure(response)
