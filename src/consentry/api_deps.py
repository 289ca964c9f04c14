"""FastAPI dependencies shared by every router: the database, the caller, the client kind, and the
refusal of text no database can store.

They are ``async``: FastAPI runs a plain ``def`` dependency in the thread pool, a hand-off that costs more
than what most of them do. The few that query the database do it through ``database_call``: on the event
loop for SQLite, in the thread pool for PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from datetime import timedelta
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, Header, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from consentry.auth.credentials import SESSION_COOKIE, request_token
from consentry.auth.service import Principal, RecentTokens, check_client, revocations, verify_token
from consentry.config import Settings
from consentry.db import Database, unreachable, utcnow
from consentry.errors import FieldError, Forbidden, InvalidInput, Unauthenticated, Unavailable
from consentry.openapi import raises


async def get_database(request: Request) -> Database:
    """The application's database."""
    database: Database = request.app.state.database
    return database


async def get_settings_dep(request: Request) -> Settings:
    """The application's settings."""
    settings: Settings = request.app.state.settings
    return settings


DatabaseDep = Annotated[Database, Depends(get_database)]

P = ParamSpec("P")
T = TypeVar("T")


async def database_call(database: Database, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``function``, a short piece of blocking database work, for an ``async`` route: on the event loop
    when the database is SQLite (a local file read in microseconds, less than a hand-off to a thread costs),
    in the thread pool when it is PostgreSQL (a stalled network must not stall every request)."""
    if database.dialect == "sqlite":
        return function(*args, **kwargs)
    return await run_in_threadpool(function, *args, **kwargs)


NUL = "\x00"
NUL_MESSAGE = "must not contain the NUL character (U+0000)"


def _nul_fields(value: Any, where: tuple[str, ...]) -> Iterator[FieldError]:
    if isinstance(value, str):
        if NUL in value:
            yield FieldError(".".join(where) or "body", NUL_MESSAGE)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_fields(item, (*where, str(index)))
    elif isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                yield FieldError(".".join(where) or "body", f"a key {NUL_MESSAGE}")
            else:
                yield from _nul_fields(item, (*where, key))


async def refuse_nul(request: Request) -> None:
    """Refuse text holding a NUL character anywhere in a request (path, query, JSON body), with one 422
    listing every field that does: PostgreSQL cannot store it in text, and SQLite would, so without this
    the same request would fail on one database and be stored on the other. Runs for every route."""
    problems = [
        FieldError(name, NUL_MESSAGE)
        for name, value in request.path_params.items()
        if isinstance(value, str) and NUL in value
    ]
    problems += [
        FieldError(name.replace(NUL, "") or "query", NUL_MESSAGE)
        for name, value in request.query_params.multi_items()
        if NUL in name or NUL in value
    ]
    if "json" in request.headers.get("content-type", ""):
        body = await request.body()
        if b"\\u0000" in body:  # JSON spells NUL only so; a raw NUL byte is invalid JSON anyway
            with suppress(ValueError, RecursionError):  # not JSON: the route's own validation says so
                problems += _nul_fields(json.loads(body), ())
    if problems:
        raise InvalidInput.of(problems)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def bearer_token(request: Request) -> str | None:
    """The bearer token of a request: its ``Authorization: Bearer`` header, else the ``consentry_token``
    cookie of the web pages. An ``Authorization`` header that is not one bearer token is
    ``Unauthenticated`` (401), never a fall-back to the cookie (``consentry.auth.credentials``)."""
    return request_token(request.headers.getlist("authorization"), request.cookies.get(SESSION_COOKIE))


def recent_tokens(request: Request) -> RecentTokens:
    """The application's memory of recently verified tokens (created on first use)."""
    recent: RecentTokens | None = getattr(request.app.state, "recent_tokens", None)
    if recent is None:
        recent = request.app.state.recent_tokens = RecentTokens()
    return recent


def verified_principal(request: Request, database: Database, token: str, *, cache: bool = True) -> Principal:
    """The principal of ``token``: from this process's short cache of verifications when ``cache`` and it
    was verified within ``token_cache_seconds``, has not expired and no token was revoked here since;
    else looked up (``Unauthenticated`` when unknown, expired or revoked; 503 when the database that
    would verify it cannot be reached)."""
    recent = recent_tokens(request)
    now = utcnow()
    settings: Settings = request.app.state.settings
    ttl = settings.token_cache_seconds
    if cache and ttl > 0:
        cached = recent.fresh(token, now=now, max_age=timedelta(seconds=ttl))
        if cached is not None:
            return cached
    generation = revocations()  # read before the lookup: a revocation meanwhile discards the entry
    try:
        with database.read() as session:
            principal, expires_at = verify_token(session, token)
    except Unauthenticated:
        recent.forget(token)
        raise
    except Exception as error:
        if not unreachable(error):
            raise
        raise Unavailable(
            "the database is unreachable, so the token cannot be verified; try again shortly"
        ) from error
    recent.remember(token, principal, at=now, expires_at=expires_at, generation=generation)
    return principal


async def verified_principal_async(request: Request, database: Database, token: str) -> Principal:
    """``verified_principal`` for the event loop: a cached verification is answered on the loop, a lookup
    runs through ``database_call``."""
    settings: Settings = request.app.state.settings
    if settings.token_cache_seconds > 0:
        max_age = timedelta(seconds=settings.token_cache_seconds)
        cached = recent_tokens(request).fresh(token, now=utcnow(), max_age=max_age)
        if cached is not None:
            return cached
    return await database_call(database, verified_principal, request, database, token)


@raises(Unauthenticated)
async def get_principal(request: Request, database: DatabaseDep) -> Principal:
    """The authenticated caller; 401 without a valid bearer token, 503 (``Retry-After``) when the
    database that would verify it cannot be reached."""
    return await _principal(request, database, cache=True)


async def _principal(request: Request, database: Database, *, cache: bool) -> Principal:
    token = bearer_token(request)
    if not token:
        raise Unauthenticated(
            "send 'Authorization: Bearer <token>' (create one with 'consentry token create')",
            field="Authorization",
        )
    if not cache:
        return await run_in_threadpool(verified_principal, request, database, token, cache=False)
    return await verified_principal_async(request, database, token)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


@raises(Forbidden)
async def require_admin(principal: PrincipalDep) -> Principal:
    """The caller, who must be an operator."""
    if not principal.is_admin:
        raise Forbidden("this needs an admin token")
    return principal


@raises(Forbidden)
async def require_account_principal(principal: PrincipalDep) -> Principal:
    """The caller, who must be an account holder. Routes take ``consentry.consent.deps.AccountDep``,
    which adds Global Privacy Control on top of this."""
    if principal.kind != "account" or principal.account_id is None:
        raise Forbidden("this needs an account token; admins act on accounts through /v1/accounts")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


@raises(Unauthenticated, Forbidden)
async def require_admin_in_outage(
    request: Request, database: DatabaseDep, settings: SettingsDep
) -> Principal:
    """An operator, as ``AdminDep``; but while the database is unreachable, a token this process
    verified within ``token_grace_seconds`` still counts (503 for any other). Only for routes whose
    answer during an outage grants nothing (eligibility: ``allowed: []``). Never from the short cache of
    verifications: while the database answers, every call verifies the token again, and during an outage
    only ``token_grace_seconds`` decides."""
    try:
        principal = await _principal(request, database, cache=False)
    except Unavailable:
        token = bearer_token(request)
        grace = timedelta(seconds=settings.token_grace_seconds)
        known = recent_tokens(request).recall(token or "", now=utcnow(), max_age=grace)
        if known is None:
            raise
        principal = known
    return await require_admin(principal)


AdminInOutageDep = Annotated[Principal, Depends(require_admin_in_outage)]
AccountPrincipalDep = Annotated[Principal, Depends(require_account_principal)]


async def client_kind(
    principal: PrincipalDep,
    x_consentry_client: Annotated[str | None, Header()] = None,
) -> str:
    """The client kind of a request: the ``X-Consentry-Client`` header, else the token's, else ``api``."""
    client = check_client(x_consentry_client, field="X-Consentry-Client") if x_consentry_client else None
    return client or principal.client or "api"


ClientDep = Annotated[str, Depends(client_kind)]


def model_response(
    model: BaseModel, *, headers: Mapping[str, str] | None = None, status_code: int = 200
) -> Response:
    """``model`` as a JSON response, serialised once by its own schema. For routes that declare
    ``response_model`` and build the model themselves: FastAPI would validate it a second time."""
    body = model.__pydantic_serializer__.to_json(model, by_alias=True)
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")
