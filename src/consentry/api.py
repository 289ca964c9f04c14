"""The FastAPI application: mounts each domain's router and renders every error as problem+json.

Errors follow RFC 9457: ``{"type", "title", "status", "detail", "instance", "field", "errors"}`` with the
media type ``application/problem+json``. Domain errors carry their status and headers
(``consentry.errors``); the handlers here turn everything else (validation, routing, unexpected errors)
into one of them, and ``consentry.problems`` renders every one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import consentry.wiring  # noqa: F401  (the domains wired together: consent.events' subscribers)
from consentry import __version__, problems
from consentry.api_deps import refuse_nul
from consentry.config import Settings, get_settings
from consentry.consent.service import ConsentContext
from consentry.consent.writer import ConsentWriter
from consentry.db import Database, unreachable
from consentry.errors import (
    ConsentryError,
    FieldError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from consentry.metering.meter import MemoryMeter, Meter
from consentry.metering.redis_meter import RedisMeter
from consentry.metering.service import AccessLogWriter
from consentry.openapi import describe_errors
from consentry.partners.revocations import warm as warm_lineage
from consentry.transparency.publisher import Publisher
from consentry.transparency.service import LogContext

log = logging.getLogger(__name__)
PROBLEM = problems.PROBLEM
METERED_PATHS = ("/v1/platform/",)
"""Content routes whose responses count posts served, per organisation (the scraping meter)."""


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie") and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts)


async def _domain_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ConsentryError)
    if error.status >= 500:
        log.error("%s on %s: %s", error.__class__.__name__, request.url.path, error.detail)
    return problems.response(error, request.url.path)


def _validation_problem(error: dict[str, Any]) -> dict[str, Any]:
    if error.get("type") == "json_invalid":  # its location is a character offset, not a field
        at = f" at character {error['loc'][-1]}" if len(error.get("loc", ())) > 1 else ""
        reason = error.get("ctx", {}).get("error", "")
        return {
            "field": "body",
            "message": f"the body is not valid JSON{at}" + (f": {reason}" if reason else ""),
        }
    return {"field": _field(error.get("loc", ())), "message": error.get("msg", "")}


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    errors = [_validation_problem(e) for e in error.errors()]
    first = errors[0] if errors else {"field": None, "message": "invalid request"}
    invalid = InvalidInput(
        f"{first['field']}: {first['message']}" if first["field"] else str(first["message"]),
        field=first["field"],
        errors=[FieldError(e["field"], e["message"]) for e in errors],
    )
    return problems.response(invalid, request.url.path)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 400 and error.__cause__ is not None:  # FastAPI could not read the body
        cause = "is not UTF-8 text" if isinstance(error.__cause__, UnicodeDecodeError) else "cannot be read"
        return await _domain_error(request, InvalidInput(f"the request body {cause}", field="body"))
    if error.status_code == 405:  # every method of the path, not only those of the first route matched
        return problems.response(
            MethodNotAllowed(str(error.detail), allow=_allowed_methods(request)), request.url.path
        )
    if error.status_code == 404:
        return problems.response(NotFound(str(error.detail)), request.url.path)
    other = ConsentryError(str(error.detail), headers=dict(error.headers) if error.headers else None)
    other.status, other.title = error.status_code, "HTTP error"
    return problems.response(other, request.url.path)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return sorted(methods)


async def _unexpected(request: Request, error: Exception) -> Response:
    if unreachable(error):  # an outage, not a bug: say so, and when to try again
        log.warning("database unreachable on %s: %s", request.url.path, error.__class__.__name__)
        return await _domain_error(request, Unavailable("the database is unreachable; try again shortly"))
    log.exception("unexpected error on %s", request.url.path)
    return problems.response(ConsentryError("an unexpected error occurred"), request.url.path)


class BodyLimit:
    """ASGI middleware refusing request bodies larger than ``limit`` bytes with a 413 problem.

    A declared ``Content-Length`` over the limit is refused before reading. A body without one (chunked)
    is read here up to the limit and handed on whole, so one over the limit gets the same 413 rather
    than whatever error a route's body parser would make of an interrupted read."""

    def __init__(self, app: ASGIApp, *, limit: int, paths: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.paths = paths or {}  # larger limits for the few routes that need them

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope.get("path", ""), self.limit)
        length = next((value for name, value in scope.get("headers", []) if name == b"content-length"), None)
        if length is not None:
            if length.isdigit() and int(length) > limit:
                await self._refuse(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)  # the server delivers no more than it declared
            return
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > limit:
                await self._refuse(scope, receive, send, limit)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        error = PayloadTooLarge(f"request bodies are limited to {limit} bytes", field="body")
        await problems.send(error, scope, receive, send)


def create_app(
    settings: Settings | None = None, *, database: Database | None = None, migrate: bool = True
) -> FastAPI:
    """Build the application; applies migrations first unless ``migrate`` is false."""
    from consentry.migrate import upgrade

    settings = settings or get_settings()
    database = database or Database(settings.resolved_database_url)
    if migrate:
        upgrade(database)
    parts = _Parts.build(settings, database)
    app = FastAPI(
        lifespan=parts.lifespan,
        dependencies=[Depends(refuse_nul)],
        title="Consentry",
        version=__version__,
        description="Decide whose content may flow into AI, enforce it, and prove it.",
    )
    app.state.settings = settings
    app.state.database = database
    app.state.consent = parts.ctx
    app.state.consent_writer = parts.writer
    app.state.tlog = parts.tlog
    app.state.publisher = parts.publisher
    app.state.meter = parts.meter
    app.add_exception_handler(ConsentryError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    _add_middleware(app, settings, database, parts)
    _include_routers(app)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness: the service answers."""
        return {"status": "ok", "version": __version__}

    return app


@dataclass(frozen=True)
class _Parts:
    """What one application owns besides its routes: the consent context and writer, the transparency
    log and its publisher, the meter and the access log."""

    database: Database
    ctx: ConsentContext
    tlog: LogContext
    publisher: Publisher
    writer: ConsentWriter
    meter: Meter
    access_log: AccessLogWriter

    @classmethod
    def build(cls, settings: Settings, database: Database) -> _Parts:
        ctx = ConsentContext.from_settings(settings)
        tlog = LogContext.from_settings(settings)
        publisher = Publisher(database, tlog)
        return cls(
            database=database,
            ctx=ctx,
            tlog=tlog,
            publisher=publisher,
            writer=ConsentWriter(database, ctx, on_commit=publisher.nudge),
            meter=RedisMeter(settings.redis_url) if settings.redis_url else MemoryMeter(),
            access_log=AccessLogWriter(database, interval=1.0),
        )

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        """Warm the caches on threads and start the publisher; on the way out, stop what was started."""
        from consentry.eligibility.service import warm as warm_eligibility

        database = self.database
        threading.Thread(target=warm_lineage, args=(database,), name="lineage-warm", daemon=True).start()
        threading.Thread(
            target=warm_eligibility, args=(database, self.ctx), name="eligibility-warm", daemon=True
        ).start()
        self.publisher.start()
        yield
        self.writer.close()
        self.publisher.close()
        self.access_log.close()
        await self.meter.aclose()


def _add_middleware(app: FastAPI, settings: Settings, database: Database, parts: _Parts) -> None:
    from consentry.eligibility.router import MAX_BODY_BYTES as ELIGIBILITY_MAX_BODY_BYTES
    from consentry.metering.middleware import DatabaseDirectory, MeteringMiddleware
    from consentry.metering.webbotauth import SignatureVerifier

    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        paths={"/v1/eligibility": max(settings.max_body_bytes, ELIGIBILITY_MAX_BODY_BYTES)},
    )
    app.add_middleware(
        MeteringMiddleware,
        meter=parts.meter,
        directory=DatabaseDirectory(database, ttl=30),
        access_log=parts.access_log,
        threshold=settings.damages_threshold_posts,
        unregistered_mode=settings.unregistered_mode,
        include=METERED_PATHS,
        signatures=SignatureVerifier.for_service(settings.operator_url),
    )


def _include_routers(app: FastAPI) -> None:
    from consentry.consent.router import router as consent_router
    from consentry.datasets.router import router as datasets_router
    from consentry.eligibility.router import router as eligibility_router
    from consentry.exports.router import router as exports_router
    from consentry.links.router import router as links_router
    from consentry.metering.router import router as metering_router
    from consentry.partners.router import router as partners_router
    from consentry.retention.router import router as retention_router
    from consentry.signals.router import router as signals_router
    from consentry.social.router import router as social_router
    from consentry.transparency.router import router as transparency_router
    from consentry.web.router import mount as mount_web

    for router in (
        consent_router,
        social_router,
        metering_router,
        signals_router,
        datasets_router,
        eligibility_router,
        exports_router,
        links_router,
        retention_router,
        partners_router,
        transparency_router,
    ):
        app.include_router(router)
    mount_web(app)  # the settings page, the dashboard, /static/ and the cookie CSRF check
    describe_errors(app, metered=METERED_PATHS)  # every operation's problems, in the OpenAPI
