"""The web session cookie and protection against cross-site request forgery (CSRF).

The pages sign a holder in with an account or admin token and keep it in the ``consentry_token`` cookie
(HttpOnly, SameSite=Strict, Secure over HTTPS), which ``consentry.api_deps.bearer_token`` also accepts.
A cookie is ambient: the browser sends it with any request to this origin. So every state-changing
request made with it must also prove that it comes from a page of ours:

* Web forms and the settings page's script send a per-session CSRF token (form field ``csrf_token`` or
  header ``X-CSRF-Token``): an HMAC of the session token under a key derived from the operator's
  receipt-signing key, so it is the same in every worker process, differs per session, and reveals
  nothing about the session token. The web routes check it on every non-GET request, whatever
  authenticated it (a proxy that injects ``Authorization`` is as ambient as a cookie).
* ``CookieCSRFMiddleware`` closes the JSON API: a non-GET request authenticated by the cookie alone (no
  ``Authorization`` header) must carry a valid ``X-CSRF-Token`` header, else 403. Requests with an
  ``Authorization: Bearer`` header are not forgeable cross-site (the header needs a CORS preflight), and
  they are authenticated by that header, never by the cookie. Any other ``Authorization`` header
  (``Basic``, ``Negotiate``, a bare ``Bearer``, two headers) is a 401 (``consentry.auth.credentials``),
  so no header can switch the CSRF check off.
* The sign-in form, before any session exists, uses a double-submit token: a random value in the
  ``consentry_signin`` cookie that the form must repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives import serialization
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from consentry import problems
from consentry.auth.credentials import SESSION_COOKIE as SESSION_COOKIE
from consentry.auth.credentials import header_token
from consentry.consent.receipts import Signer
from consentry.errors import Forbidden, Unauthenticated

SIGNIN_COOKIE = "consentry_signin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM_PATHS = ("/signin", "/signout", "/settings")
"""Web routes that check the CSRF token themselves (it may come in the form body)."""
SESSION_HOURS = 8


def csrf_key(signer: Signer) -> bytes:
    """The CSRF key: derived from the operator's signing key, so every worker process agrees on it."""
    raw = signer.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return hashlib.sha256(b"consentry-web-csrf\0" + raw).digest()


def csrf_token(key: bytes, session_token: str) -> str:
    """The CSRF token of one session."""
    digest = hashlib.sha256(session_token.encode()).digest()
    return hmac.new(key, b"csrf\0" + digest, hashlib.sha256).hexdigest()


def csrf_valid(key: bytes, session_token: str, given: str | None) -> bool:
    """Whether ``given`` is the CSRF token of the session (constant-time comparison)."""
    if not given:
        return False
    return hmac.compare_digest(csrf_token(key, session_token), given)


def new_signin_nonce() -> str:
    """A random double-submit value for the sign-in form."""
    return secrets.token_urlsafe(24)


def same_nonce(cookie: str | None, field: str | None) -> bool:
    """Whether the sign-in form repeated the value of its cookie."""
    return bool(cookie) and bool(field) and hmac.compare_digest(str(cookie), str(field))


def safe_next(target: str | None, default: str) -> str:
    """A local path to go to after signing in; anything else (other hosts, ``//``) gives ``default``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(c) < 32 for c in target):
        return default
    return target


class CookieCSRFMiddleware:
    """Refuse (403) state-changing requests authenticated only by the session cookie unless they carry
    the session's ``X-CSRF-Token``, and (401) those that carry the cookie with an ``Authorization``
    header that is not one bearer token. The web form routes (``FORM_PATHS``) check the token
    themselves, because a form without script sends it in the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._key: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        token = _cookie(headers.get("cookie", ""), SESSION_COOKIE)
        path: str = scope.get("path", "")
        web_form = any(path == p or path.startswith(p + "/") for p in FORM_PATHS)
        if token is None or web_form:
            await self.app(scope, receive, send)
            return
        try:
            presented = header_token(headers.getlist("authorization"))
        except Unauthenticated as error:
            refused = Unauthenticated(error.detail, field="Authorization")
            await problems.send(refused, scope, receive, send)
            return
        if presented is not None:  # authenticated by the header alone, which no other site can add
            await self.app(scope, receive, send)
            return
        if self._key is None:
            self._key = csrf_key(scope["app"].state.consent.signer)
        if csrf_valid(self._key, token, headers.get(CSRF_HEADER)):
            await self.app(scope, receive, send)
            return
        detail = (
            "a request authenticated by the session cookie must carry the session's X-CSRF-Token header "
            "(or use 'Authorization: Bearer <token>')"
        )
        await problems.send(Forbidden(detail, field="X-CSRF-Token"), scope, receive, send)


def _cookie(header: str, name: str) -> str | None:
    """One cookie of a ``Cookie`` header, parsed as Starlette parses ``request.cookies``."""
    value = cookie_parser(header).get(name) if header else None
    return value or None
