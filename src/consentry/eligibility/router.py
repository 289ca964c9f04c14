"""HTTP route of real-time eligibility (first party, admin token): which accounts allow a use now.

The route reads and answers its JSON itself: the body is parsed and validated in one pass by pydantic's
JSON parser and the answer is encoded by pydantic-core, because 10,000 ids through the generic path
(``json.loads``, validation of Python objects, ``json.dumps``) would cost more than the lookup.
Errors are the usual problem+json responses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from pydantic_core import to_json

from consentry.api_deps import AdminInOutageDep, DatabaseDep
from consentry.consent.service import ConsentContext
from consentry.db import Database, unreachable, utcnow
from consentry.eligibility import service
from consentry.eligibility.schemas import EligibilityIn, EligibilityOut
from consentry.errors import Conflict, NotFound
from consentry.openapi import raises

router = APIRouter(tags=["eligibility"])

MAX_BODY_BYTES = 256 * 1024
"""Request bodies of ``POST /v1/eligibility`` may be this large (10,000 ids of up to 20 digits)."""

_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": EligibilityIn.model_json_schema()}},
    }
}


@router.post("/v1/eligibility", response_model=EligibilityOut, openapi_extra=_BODY)
@raises(NotFound, Conflict)
async def eligibility(request: Request, principal: AdminInOutageDep, database: DatabaseDep) -> Response:
    """The accounts among ``account_ids`` (at most 10,000) that allow the use now, distinct and ascending.

    Name a ``setting``, or a ``purpose`` and a ``recipient`` (a registered recipient or ``first_party`` /
    ``third_party``; ``category`` defaults to posts): every catalog setting covering them must allow.
    Unknown ids are not allowed; if evaluation fails, none is (``error`` says so): during a database
    outage the answer is 200 with ``allowed: []`` and ``error`` for an admin token this process verified
    within ``CONSENTRY_TOKEN_GRACE_SECONDS``, and 503 with ``Retry-After`` for any other. Needs an admin
    token: this is the platform's own (first-party) service interface."""
    raw = await request.body()
    try:
        body = EligibilityIn.model_validate_json(raw or b"null")
    except ValidationError as error:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        raise RequestValidationError(errors) from None
    ctx: ConsentContext = request.app.state.consent
    payload = await run_in_threadpool(_answer, database, ctx, body)
    return Response(to_json(payload), media_type="application/json")


def _answer(database: Database, ctx: ConsentContext, body: EligibilityIn) -> dict[str, Any]:
    ids = np.fromiter(body.account_ids, dtype=np.int64, count=len(body.account_ids))
    try:
        keys = _settings(database, ctx, body)
    except Exception as error:  # the recipient cannot be looked up: nobody is allowed
        if not unreachable(error):
            raise
        return _nobody(ids, error)
    outcome = service.check_ids(
        database, ids=ids, settings=keys, catalog=ctx.catalog, jurisdictions=ctx.jurisdictions
    )
    return {
        "allowed": np.unique(ids[outcome.mask]).tolist(),
        "as_of": outcome.as_of,
        "settings": list(outcome.settings),
        "ledger_seq": outcome.ledger_seq,
        "asked": int(ids.size),
        "error": outcome.error,
    }


def _nobody(ids: np.ndarray, error: Exception) -> dict[str, Any]:
    """The answer when the settings asked for cannot even be resolved (the database is unreachable)."""
    return {
        "allowed": [],
        "as_of": utcnow(),
        "settings": [],
        "ledger_seq": None,
        "asked": int(ids.size),
        "error": error.__class__.__name__,
    }


def _settings(database: Database, ctx: ConsentContext, body: EligibilityIn) -> tuple[str, ...]:
    if body.setting is not None:
        return (ctx.catalog.get(body.setting).key,)
    with database.read() as session:
        return service.resolve_settings(
            session,
            catalog=ctx.catalog,
            setting=body.setting,
            purpose=body.purpose,
            recipient=body.recipient,
            category=body.category,
        )
