"""The OpenAPI description of the errors: every operation lists the problems it can answer.

Each error status an operation can answer is declared with the shared ``Problem`` schema under
``application/problem+json``. The statuses are derived once, here, from what a route is made of, so no
route lists them by hand:

- every operation: 422 (its parameters and body are validated, and text with a NUL is refused anywhere)
  and 503 (the database cannot be reached; ``Retry-After`` says when to try again);
- an operation with a request body: 413 (``CONSENTRY_MAX_BODY_BYTES``);
- an operation with a path parameter: 404 (the path names nothing);
- an operation on a metered path (``/v1/platform/``): 402, 403 and 429 from the scraping meter;
- the errors its dependencies and its endpoint declare with ``@raises(...)``: the authentication
  dependencies declare 401 and 403 (``consentry.api_deps``), an endpoint its own 409, 410 or 416.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field

from consentry.errors import ConsentryError, Forbidden, InvalidInput, NotFound, PayloadTooLarge, Unavailable

PROBLEM = "application/problem+json"
RAISES = "__consentry_raises__"
F = TypeVar("F", bound=Callable[..., Any])
Raised = type[ConsentryError] | int


class FieldProblem(BaseModel):
    """One problem with one input."""

    field: str = Field(description="The input, dotted (a body field, a path or query parameter, a header).")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong, and which input caused it."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:consentry:problem:invalid-input"])
    title: str = Field(examples=["Invalid input"])
    status: int = Field(examples=[422])
    detail: str
    instance: str | None = Field(default=None, description="The request path.")
    field: str | None = Field(default=None, description="The offending input (the first, if several).")
    errors: list[FieldProblem] | None = Field(default=None, description="Every problem found, in order.")


def raises(*errors: Raised) -> Callable[[F], F]:
    """Declare the errors an endpoint or a dependency can answer, beyond those its inputs imply."""

    def mark(func: F) -> F:
        setattr(func, RAISES, (*getattr(func, RAISES, ()), *errors))
        return func

    return mark


def _title(error: Raised) -> tuple[int, str]:
    if isinstance(error, int):
        return error, HTTPStatus(error).phrase
    return error.status, error.title


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


METERED: tuple[Raised, ...] = (402, Forbidden, 429)
"""What the scraping meter answers on metered paths: payment required, blocked, throttled."""


def route_errors(
    *, path: str, dependant: Dependant, has_body: bool, metered: Iterable[str] = ()
) -> dict[int, str]:
    """The error statuses (with titles) an operation can answer, derived as the module says."""
    found: list[Raised] = [InvalidInput, Unavailable]
    if has_body:
        found.append(PayloadTooLarge)
    if any(d.path_params for d in _dependants(dependant)):
        found.append(NotFound)
    if any(path.startswith(prefix) for prefix in metered):
        found.extend(METERED)
    for sub in _dependants(dependant):
        found.extend(getattr(sub.call, RAISES, ()))
    return dict(sorted(_title(error) for error in found))


def _component_schemas() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {"Problem": schema, **definitions}


def describe_errors(app: FastAPI, *, metered: Iterable[str] = ()) -> None:
    """Make ``app``'s OpenAPI declare every operation's problems (computed once, on first request)."""
    prefixes = tuple(metered)
    content = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = FastAPI.openapi(app)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(_component_schemas())
        for route in iter_route_contexts(app.routes):
            dependant = getattr(route, "dependant", None)
            path = route.path_format
            if dependant is None or path is None or not getattr(route, "include_in_schema", False):
                continue
            operations = schema["paths"].get(path, {})
            for method in route.methods or ():
                operation = operations.get(method.lower())
                if operation is None:
                    continue
                errors = route_errors(
                    path=path,
                    dependant=dependant,
                    has_body="requestBody" in operation,
                    metered=prefixes,
                )
                responses = operation.setdefault("responses", {})
                for status, title in errors.items():
                    responses[str(status)] = {"description": title, "content": content}
                operation["responses"] = dict(sorted(responses.items()))
        for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422, replaced above
            components.pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
