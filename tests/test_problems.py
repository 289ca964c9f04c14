"""Every error is rendered in one place: its status, its own headers and its problem document."""

from __future__ import annotations

import json

import pytest

from consentry import problems
from consentry.errors import (
    ConsentryError,
    FieldError,
    Forbidden,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PaymentRequired,
    RangeNotSatisfiable,
    SignInRequired,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)


@pytest.mark.parametrize(
    ("error", "status", "headers"),
    [
        (Unauthenticated("no token"), 401, {"WWW-Authenticate": "Bearer"}),
        (SignInRequired("expired"), 401, {"WWW-Authenticate": "Bearer"}),
        (Unavailable("database down", retry_after=7), 503, {"Retry-After": "7"}),
        (
            TooManyRequests("quota", retry_after=30, headers={"RateLimit": "r=0"}),
            429,
            {"Retry-After": "30", "RateLimit": "r=0"},
        ),
        (
            RangeNotSatisfiable("none of it", size=10, headers={"ETag": '"x"'}),
            416,
            {"ETag": '"x"', "Content-Range": "bytes */10"},
        ),
        (MethodNotAllowed("no", allow=["GET", "HEAD"]), 405, {"Allow": "GET, HEAD"}),
        (
            PaymentRequired("pay", headers={"Consentry-Price-Per-Post": "USD 0.001"}),
            402,
            {"Consentry-Price-Per-Post": "USD 0.001"},
        ),
        (NotFound("gone"), 404, {}),
    ],
)
def test_errors_carry_their_status_and_headers_into_the_response(
    error: ConsentryError, status: int, headers: dict[str, str]
) -> None:
    response = problems.response(error, "/v1/x")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    for name, value in headers.items():
        assert response.headers[name] == value
    body = json.loads(bytes(response.body))
    assert body["status"] == status and body["title"] == error.title and body["instance"] == "/v1/x"
    assert body["type"].startswith("urn:consentry:problem:")


def test_the_document_names_fields_problems_and_extensions() -> None:
    invalid = InvalidInput.of([FieldError("a", "bad"), FieldError("b.c", "worse")])
    body = problems.document(invalid, "/p")
    assert body["field"] == "a" and [e["field"] for e in body["errors"]] == ["a", "b.c"]
    throttled = TooManyRequests(
        "used up", retry_after=5, problem_type="quota-exceeded", extensions={"limit": 3}
    )
    body = problems.document(throttled, None)
    assert body["type"] == "urn:consentry:problem:quota-exceeded" and body["limit"] == 3
    assert "instance" not in body
    assert problems.document(Forbidden("no", field="X-CSRF-Token"), "/p")["field"] == "X-CSRF-Token"


def test_sign_in_required_is_part_of_the_tree() -> None:
    error = SignInRequired("expired")
    assert isinstance(error, Unauthenticated) and isinstance(error, ConsentryError)
    assert error.reason == "expired" and error.status == 401
