"""Every error answered over HTTP, rendered in one place as an RFC 9457 problem (problem+json).

The application's exception handlers (``consentry.api``) and the ASGI middlewares that answer before a
route runs (body limit, CSRF, metering) all turn a ``consentry.errors`` error into a response here:
``{"type", "title", "status", "detail", "instance", "field", "errors", ...extensions}`` with the
error's own headers (``WWW-Authenticate``, ``Retry-After``, ``Content-Range``, ``Allow``...).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from consentry.errors import ConsentryError, InvalidInput

PROBLEM = "application/problem+json"
TYPE_PREFIX = "urn:consentry:problem:"


def document(error: ConsentryError, instance: str | None) -> dict[str, Any]:
    """The problem document of ``error`` (``instance``: the request path, or None to leave it out)."""
    kind = error.problem_type or error.title.lower().replace(" ", "-")
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + kind,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if instance is not None:
        body["instance"] = instance
    if error.field is not None:
        body["field"] = error.field
    errors = [{"field": e.field, "message": e.message} for e in error.errors]
    if not errors and error.field is not None and isinstance(error, InvalidInput):
        errors = [{"field": error.field, "message": error.detail}]
    if errors:
        body["errors"] = errors
    body.update(error.extensions)
    return body


def encode(error: ConsentryError, instance: str | None) -> bytes:
    """The problem document of ``error`` as compact JSON bytes."""
    return json.dumps(
        document(error, instance), ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode()


def response(error: ConsentryError, instance: str | None) -> Response:
    """The HTTP response of ``error``: its status, its headers, its problem document."""
    return Response(
        encode(error, instance), status_code=error.status, media_type=PROBLEM, headers=error.headers
    )


async def send(error: ConsentryError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer an ASGI request with ``error`` (for middlewares that refuse before a route runs)."""
    await response(error, scope.get("path", ""))(scope, receive, send)
