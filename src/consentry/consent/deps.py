"""The account holder's dependency for every router: ``AccountDep``, which applies Global Privacy Control.

A request from an account holder carrying ``Sec-GPC: 1`` records the GPC opt-out before the route runs,
where the rule of DESIGN.md says it applies (never twice, never over a later explicit choice). It is a
consent rule, so it lives here and not in ``consentry.api_deps``; every route that serves an account
holder takes ``AccountDep`` from this module (``api_deps`` offers no other).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from consentry.api_deps import AccountPrincipalDep
from consentry.auth.service import Principal, check_client
from consentry.consent.service import gpc_request
from consentry.consent.writer import ConsentWriter
from consentry.errors import Forbidden
from consentry.openapi import raises


@raises(Forbidden)
async def require_account(request: Request, principal: AccountPrincipalDep) -> Principal:
    """The caller, who must be an account holder; a ``Sec-GPC: 1`` request records its opt-out first."""
    if request.headers.get("sec-gpc", "").strip() == "1":
        assert principal.account_id is not None  # AccountPrincipalDep guarantees it
        writer: ConsentWriter = request.app.state.consent_writer
        client = request.headers.get("x-consentry-client")
        kind = check_client(client, field="X-Consentry-Client") if client else principal.client
        change = gpc_request(principal.account_id, ctx=request.app.state.consent, client=kind or "web")
        await run_in_threadpool(writer.change, change)
    return principal


AccountDep = Annotated[Principal, Depends(require_account)]
