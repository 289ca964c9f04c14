"""The application as a whole: every route refuses ids no column can hold, text with NUL characters and
bodies over the limit with a problem naming the input, and never answers 500 for them."""

from __future__ import annotations

import http.client
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from consentry.auth.service import create_token
from consentry.config import Settings
from consentry.db import Database
from consentry.partners import service as partners
from tests.conftest import make_account
from tests.test_serve import _start

OUT_OF_RANGE = [2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 10**30]
"""Beyond a 32-bit column (PostgreSQL ``INTEGER``: valid for 64-bit ids, refused for 32-bit ones), beyond
64 bits (SQLite, ``BIGINT``), and far beyond."""


@dataclass(frozen=True)
class IntParameter:
    """An integer path or query parameter of one route."""

    method: str
    path: str
    name: str
    where: str  # "path" or "query"
    path_params: tuple[str, ...]


def _is_int(annotation: object) -> bool:
    if annotation is int:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_int(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_int(arg) for arg in typing.get_args(annotation))
    return False


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def integer_parameters(app: FastAPI) -> list[IntParameter]:
    """Every integer path or query parameter of every route of ``app`` (the pages too), from its routes."""
    found = []
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        if dependant is None or route.path is None:
            continue
        path_names = tuple(f.name for d in _walk(dependant) for f in d.path_params)
        for method in sorted(route.methods or ()):
            if method == "HEAD" and "GET" in (route.methods or ()):
                continue
            for d in _walk(dependant):
                for where, fields in (("path", d.path_params), ("query", d.query_params)):
                    for field in fields:
                        if _is_int(field.field_info.annotation):
                            found.append(IntParameter(method, route.path, field.alias, where, path_names))
    return found


def _url(parameter: IntParameter, value: int) -> str:
    path = parameter.path.replace("{path:path}", "{path}")
    for name in parameter.path_params:
        path = path.replace("{" + name + "}", str(value) if name == parameter.name else "1")
    return path + (f"?{parameter.name}={value}" if parameter.where == "query" else "")


@pytest.fixture
def tokens(database: Database) -> dict[str, str]:
    """A token of each kind: no token, admin, account, partner API key."""
    _, account = make_account(database, handle="ada")
    with database.write() as session:
        admin = create_token(session, kind="admin", label="test")
        partners.add_partner(
            session, name="acme", kind="third_party", purposes=["train-ai"], categories=["posts"]
        )
        _, key = partners.create_key(session, partner="acme", label="test")
    return {"none": "", "admin": admin, "account": account, "partner": key}


def test_every_integer_parameter_refuses_ids_no_column_holds(app: FastAPI, tokens: dict[str, str]) -> None:
    client = TestClient(app, raise_server_exceptions=False)
    parameters = integer_parameters(app)
    named = {(p.path, p.name) for p in parameters}
    # the enumeration sees the routes the issue named, and the pages
    assert {("/v1/policies/{version}", "version"), ("/v1/me/consent-history", "before_seq")} <= named
    assert {
        ("/v1/platform/accounts/{account_id}/posts", "before"),
        ("/policies/{version}", "version"),
    } <= named
    assert len(parameters) >= 40
    failures = []
    for parameter in parameters:
        for value in OUT_OF_RANGE:
            statuses = {}
            handled = False
            for kind, token in tokens.items():
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                response = client.request(parameter.method, _url(parameter, value), headers=headers)
                statuses[kind] = response.status_code
                if response.status_code == 422:
                    handled |= response.headers["content-type"] == "application/problem+json" and any(
                        e["field"] == parameter.name for e in response.json().get("errors", [])
                    )
                handled |= response.status_code == 404
            beyond_64_bits = not -(2**63) <= value < 2**63  # no column holds it: refused, whoever asks
            if (beyond_64_bits and not handled) or any(status >= 500 for status in statuses.values()):
                failures.append(f"{parameter.method} {_url(parameter, value)}: {statuses}")
    assert not failures, "\n".join(failures)


def test_out_of_range_ids_keep_the_connection_alive(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    """Through a real server: a refused id is an ordinary answer, the kept-alive connection goes on."""
    server, base = _start(settings, database, tmp_path, workers=1)
    try:
        host, port = base.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        for path in (
            "/v1/policies/9223372036854775808",
            "/v1/platform/posts/-9223372036854775809",
            "/v1/platform/accounts/1/posts?before=9223372036854775808",
            "/v1/policies/2147483648",
        ):
            connection.request("GET", path)
            socket = connection.sock
            response = connection.getresponse()
            body = response.read()
            assert response.status == 422, (path, body)
            assert response.getheader("content-type") == "application/problem+json"
            connection.request("GET", "/healthz")
            follow_up = connection.getresponse()
            follow_up.read()
            assert follow_up.status == 200
            assert connection.sock is socket, f"the connection was closed after {path}"
        connection.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def _count(database: Database, table: str) -> int:
    with database.read() as session:
        return int(session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_text_with_a_nul_character_is_refused_alike_on_both_databases(
    client: TestClient, database: Database, tokens: dict[str, str]
) -> None:
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    account = {"Authorization": f"Bearer {tokens['account']}"}
    cases = [
        ("POST", "/v1/platform/posts", account, {"text": "hello\x00world"}, "text"),
        ("POST", "/v1/platform/assistant/chat", account, {"prompt": "sourdough\x00"}, "prompt"),
        ("POST", "/v1/admin/organisations", admin, {"name": "Evil\x00 AI"}, "name"),
        ("PUT", "/v1/me/settings", account, {"settings": {"assistant_realtime\x00": "deny"}}, "settings"),
        ("POST", "/v1/accounts", admin, {"handle": "nul\x00", "country": "US"}, "handle"),
        ("GET", "/v1/admin/partners/acme%00", admin, None, "name"),
        ("GET", "/v1/admin/organisations/x%00y", admin, None, "organisation"),
        ("GET", "/v1/admin/datasets/releases?recipient=a%00b", admin, None, "recipient"),
    ]
    before = {
        t: _count(database, t) for t in ("posts", "assistant_interactions", "organisations", "accounts")
    }
    for method, url, headers, body, field in cases:
        response = client.request(method, url, headers=headers, json=body)
        assert response.status_code == 422, (url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["field"] == field, (url, problem)
        assert "NUL" in problem["detail"], problem
        assert [e["field"] for e in problem["errors"]] == [field]
    after = {t: _count(database, t) for t in before}
    assert after == before


def _chunks(size: int, chunk: int = 4096) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        yield b"x" * min(chunk, size - sent)
        sent += chunk


def test_a_chunked_body_over_the_limit_is_413(
    client: TestClient, settings: Settings, tokens: dict[str, str]
) -> None:
    """Without Content-Length the limit is found while reading; the answer is the same documented 413."""
    limit = settings.max_body_bytes
    headers = {"Authorization": f"Bearer {tokens['account']}", "Content-Type": "application/json"}
    response = client.put("/v1/me/settings", headers=headers, content=_chunks(limit + 1))
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Payload too large"
    assert str(limit) in response.json()["detail"]
    admin = {"Authorization": f"Bearer {tokens['admin']}", "Content-Type": "application/json"}
    eligibility = client.post("/v1/eligibility", headers=admin, content=_chunks(300 * 1024))
    assert eligibility.status_code == 413  # its own, larger limit (256 KiB) holds for chunked bodies too
    small = b'{"settings": {"assistant_realtime": "deny"}}'
    fine = client.put("/v1/me/settings", headers=headers, content=iter([small[:10], small[10:]]))
    assert fine.status_code == 200, fine.text  # a chunked body within the limit reaches the route whole


def test_a_body_that_is_not_json_is_refused_naming_the_body(
    client: TestClient, tokens: dict[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {tokens['account']}", "Content-Type": "application/json"}
    for body in (b"{not json", b"\xff\xfe\xfd", b'{"settings": '):
        response = client.put("/v1/me/settings", headers=headers, content=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["field"] == "body"
        assert "JSON" in response.json()["detail"] or "UTF-8" in response.json()["detail"]


def test_a_method_a_route_does_not_have_is_405_with_allow(client: TestClient) -> None:
    response = client.request("TRACE", "/v1/policies")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"  # every method of the path, whichever route has it
    assert response.headers["content-type"] == "application/problem+json"
