"""Linked accounts over HTTP: asked by one account, confirmed by the other; every bad input a 4xx
naming the field, with nothing stored."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from fastapi.testclient import TestClient

from consentry.db import Database
from consentry.social.service import deactivate_account, delete_account
from tests.conftest import make_account


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def link_rows(database: Database) -> list[tuple[int, int, str]]:
    with database.read() as session:
        rows = session.execute(sa.text("SELECT low_id, high_id, status FROM account_links ORDER BY id"))
        return [(int(a), int(b), str(c)) for a, b, c in rows]


def refused(response: httpx.Response, status: int, field: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json().get("field") == field


def test_a_link_is_asked_by_one_account_and_confirmed_by_the_other(
    client: TestClient, database: Database
) -> None:
    main, main_token = make_account(database, handle="main")
    brand, brand_token = make_account(database, handle="brand")

    asked = client.post("/v1/me/links", headers=auth(main_token), json={"account_id": brand})
    assert asked.status_code == 201
    assert asked.json() | {"created_at": None} == {
        "account_id": brand,
        "handle": "brand",
        "status": "pending",
        "direction": "outgoing",
        "source": "user",
        "created_at": None,
        "confirmed_at": None,
        "account_status": "active",
    }
    [incoming] = client.get("/v1/me/links", headers=auth(brand_token)).json()
    assert (incoming["account_id"], incoming["direction"], incoming["status"]) == (
        main,
        "incoming",
        "pending",
    )

    confirmed = client.post(f"/v1/me/links/{main}/confirm", headers=auth(brand_token))
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "confirmed"
    # symmetric: both sides see one confirmed link, stored once
    for token, other in ((main_token, brand), (brand_token, main)):
        [link] = client.get("/v1/me/links", headers=auth(token)).json()
        assert (link["account_id"], link["status"]) == (other, "confirmed")
    assert link_rows(database) == [(min(main, brand), max(main, brand), "confirmed")]

    removed = client.delete(f"/v1/me/links/{main}", headers=auth(brand_token))
    assert removed.status_code == 204
    assert client.get("/v1/me/links", headers=auth(main_token)).json() == []


def test_bad_links_are_refused_and_nothing_is_stored(client: TestClient, database: Database) -> None:
    me, token = make_account(database, handle="me")
    other, other_token = make_account(database, handle="other")
    gone, _ = make_account(database, handle="gone")
    off, _ = make_account(database, handle="off")
    with database.write() as session:
        delete_account(session, account_id=gone)
        deactivate_account(session, account_id=off)

    refused(client.post("/v1/me/links", headers=auth(token), json={"account_id": me}), 422, "account_id")
    refused(client.post("/v1/me/links", headers=auth(token), json={"account_id": 999_999}), 404, "account_id")
    refused(client.post("/v1/me/links", headers=auth(token), json={"account_id": gone}), 410, "account_id")
    refused(client.post("/v1/me/links", headers=auth(token), json={"account_id": off}), 409, "account_id")
    refused(client.post("/v1/me/links", headers=auth(token), json={"account_id": 2**63}), 422, "account_id")
    refused(client.post("/v1/me/links", headers=auth(token), json={}), 422, "account_id")
    refused(client.post("/v1/me/links", headers=auth(token), json={"account_id": other, "x": 1}), 422, "x")
    # nobody asked: nothing to confirm
    refused(client.post(f"/v1/me/links/{other}/confirm", headers=auth(token)), 404, "account_id")
    refused(client.post(f"/v1/me/links/{me}/confirm", headers=auth(token)), 404, "account_id")
    refused(client.delete(f"/v1/me/links/{other}", headers=auth(token)), 404, "account_id")
    assert link_rows(database) == []

    assert client.post("/v1/me/links", headers=auth(token), json={"account_id": other}).status_code == 201
    before = link_rows(database)
    # only one side confirmed: the asking side cannot confirm for the other
    refused(client.post(f"/v1/me/links/{other}/confirm", headers=auth(token)), 409, "account_id")
    # duplicates, from either side
    refused(client.post("/v1/me/links", headers=auth(token), json={"account_id": other}), 409, "account_id")
    refused(
        client.post("/v1/me/links", headers=auth(other_token), json={"account_id": me}), 409, "account_id"
    )
    assert link_rows(database) == before
    assert client.post(f"/v1/me/links/{me}/confirm", headers=auth(other_token)).status_code == 200
    refused(client.post(f"/v1/me/links/{me}/confirm", headers=auth(other_token)), 409, "account_id")
    refused(client.post("/v1/me/links", headers=auth(token), json={"account_id": other}), 409, "account_id")
    assert [status for *_, status in link_rows(database)] == ["confirmed"]


def test_deleting_an_account_removes_its_links(client: TestClient, database: Database) -> None:
    me, token = make_account(database, handle="me")
    other, other_token = make_account(database, handle="other")
    client.post("/v1/me/links", headers=auth(token), json={"account_id": other})
    client.post(f"/v1/me/links/{me}/confirm", headers=auth(other_token))
    with database.write() as session:
        delete_account(session, account_id=other)
    assert client.get("/v1/me/links", headers=auth(token)).json() == []


def test_the_operator_imports_links_all_or_nothing(
    client: TestClient, database: Database, admin_token: str
) -> None:
    a, a_token = make_account(database, handle="a")
    b, b_token = make_account(database, handle="b")
    c, _ = make_account(database, handle="c")
    gone, _ = make_account(database, handle="gone")
    with database.write() as session:
        delete_account(session, account_id=gone)
    # a pending request the import will confirm
    client.post("/v1/me/links", headers=auth(a_token), json={"account_id": b})

    bad = client.post(
        "/v1/admin/links",
        headers=auth(admin_token),
        json={
            "links": [
                {"account_id": a, "linked_account_id": b},
                {"account_id": a, "linked_account_id": a},
                {"account_id": c, "linked_account_id": 999_999},
                {"account_id": gone, "linked_account_id": c},
                {"account_id": b, "linked_account_id": a},
            ]
        },
    )
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == [
        "links.1.linked_account_id",
        "links.2.linked_account_id",
        "links.3.account_id",
        "links.4.linked_account_id",
    ]
    assert [status for *_, status in link_rows(database)] == ["pending"]
    refused(
        client.post(
            "/v1/admin/links",
            headers=auth(a_token),
            json={"links": [{"account_id": a, "linked_account_id": c}]},
        ),
        403,
        None,
    )  # type: ignore[arg-type]

    done = client.post(
        "/v1/admin/links",
        headers=auth(admin_token),
        json={
            "links": [{"account_id": a, "linked_account_id": b}, {"account_id": c, "linked_account_id": a}]
        },
    )
    assert done.status_code == 201
    assert done.json() == {"created": 1, "confirmed": 1}
    assert sorted(
        link["account_id"] for link in client.get("/v1/me/links", headers=auth(a_token)).json()
    ) == [b, c]
    links = client.get(f"/v1/accounts/{b}/links", headers=auth(admin_token)).json()
    assert [(link["account_id"], link["status"], link["source"]) for link in links] == [
        (a, "confirmed", "admin")
    ]
    again = client.post(
        "/v1/admin/links",
        headers=auth(admin_token),
        json={"links": [{"account_id": b, "linked_account_id": a}]},
    )
    assert again.status_code == 422
    assert again.json()["field"] == "links.0.linked_account_id"
    assert client.get("/v1/me/links", headers=auth(b_token)).json()[0]["status"] == "confirmed"
