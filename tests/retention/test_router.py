"""The admin API under ``/v1/admin/retention``."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.retention.conftest import AT, seed

from consentry.auth.service import create_token
from consentry.db import Database
from consentry.retention.models import LegalHold
from consentry.social.models import Post

BASE = "/v1/admin/retention"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_holds_over_http(client: TestClient, database: Database, admin_token: str) -> None:
    seed(database)
    headers = auth(admin_token)
    created = client.post(f"{BASE}/holds", json={"account_id": 2, "reason": "case 17"}, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["account_id"] == 2 and created.json()["released_at"] is None
    unknown = client.post(f"{BASE}/holds", json={"account_id": 999, "reason": "x"}, headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "account_id" and "999" in unknown.json()["detail"]
    assert (
        client.post(f"{BASE}/holds", json={"account_id": 2, "reason": "x"}, headers=headers).status_code
        == 409
    )
    empty = client.post(f"{BASE}/holds", json={"account_id": 3, "reason": ""}, headers=headers)
    assert empty.status_code == 422
    listed = client.get(f"{BASE}/holds", headers=headers).json()
    assert [h["account_id"] for h in listed] == [2]
    released = client.post(f"{BASE}/holds/2/release", headers=headers)
    assert released.status_code == 200 and released.json()["released_at"] is not None
    assert client.post(f"{BASE}/holds/2/release", headers=headers).status_code == 404
    assert client.post(f"{BASE}/holds/999/release", headers=headers).status_code == 404
    assert client.get(f"{BASE}/holds", headers=headers).json() == []
    assert len(client.get(f"{BASE}/holds?all=true", headers=headers).json()) == 1
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(LegalHold)) == 1


def test_plan_apply_and_runs_over_http(client: TestClient, database: Database, admin_token: str) -> None:
    seed(database)
    headers = auth(admin_token)
    rules = client.get(f"{BASE}/rules", headers=headers)
    assert rules.json()["posts"]["after_deletion"] == "P30D"
    plan = client.get(f"{BASE}/plan", params={"at": AT.isoformat()}, headers=headers)
    assert plan.status_code == 200, plan.text
    assert next(o for o in plan.json()["outcomes"] if o["rule"] == "access_log")["removed"] == {
        "access_log": 2
    }
    future = client.post(f"{BASE}/runs", json={"at": "2999-01-01T00:00:00Z"}, headers=headers)
    assert future.status_code == 422 and future.json()["field"] == "at"
    done = client.post(f"{BASE}/runs", json={"at": AT.isoformat()}, headers=headers)
    assert done.status_code == 201, done.text
    assert done.json()["rows_removed"] == 32 and done.json()["trigger"] == "api"
    runs = client.get(f"{BASE}/runs", headers=headers).json()
    assert [r["id"] for r in runs] == [done.json()["run_id"]]
    detail = client.get(f"{BASE}/runs/{runs[0]['id']}", headers=headers).json()
    assert detail["report"]["rows_removed"] == 32 and detail["rules"]["access_log"] == {"max_age": "P18M"}
    assert client.get(f"{BASE}/runs/999", headers=headers).status_code == 404
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(Post)) == 7


def test_bad_rules_file_is_a_clear_error_over_http(
    client: TestClient, database: Database, admin_token: str, tmp_path: Path
) -> None:
    seed(database)
    bad = tmp_path / "retention.json"
    bad.write_text(json.dumps({"posts": {"after_deletion": "P30X"}}))
    client.app.state.settings.retention_file = bad  # type: ignore[attr-defined]
    response = client.post(f"{BASE}/runs", json={}, headers=auth(admin_token))
    assert response.status_code == 422 and response.json()["field"] == "retention.posts.after_deletion"
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(Post)) == 15


def test_only_admins(client: TestClient, database: Database) -> None:
    seed(database)
    with database.write() as session:
        token = create_token(session, kind="account", account_id=1)
    assert client.get(f"{BASE}/holds", headers=auth(token)).status_code == 403
    assert client.get(f"{BASE}/plan").status_code == 401
