"""Routes of the web pages: sign-in, the settings page, receipts, policies and the operator dashboard.

Each route only turns the request into service calls and renders a template. Pages are signed in with
the ``consentry_token`` cookie (or an ``Authorization`` header a fronting proxy adds); a missing, expired
or revoked token sends the browser to ``/signin``. Every state-changing request checks the session's CSRF
token (``consentry.web.security``).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from consentry.errors import SignInRequired
from consentry.web import dashboard_pages, settings_pages, signin
from consentry.web.pages import HERE
from consentry.web.security import CookieCSRFMiddleware

router = APIRouter(include_in_schema=False)
router.include_router(signin.router)
router.include_router(settings_pages.router)
router.include_router(dashboard_pages.router)


def mount(app: FastAPI) -> None:
    """Add the pages, their static files and the cookie CSRF check to the application."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_exception_handler(SignInRequired, signin.signin_redirect)
    app.add_middleware(CookieCSRFMiddleware)
