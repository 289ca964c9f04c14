"""The admin API of the datasets domain through the real application (problem+json errors)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consentry.consent.importer import import_events
from consentry.consent.service import ConsentContext
from consentry.datasets.router import router
from consentry.db import Database
from tests.datasets.scenario import AS_OF, EXPECTED_POSTS


@pytest.fixture
def api(app: FastAPI) -> Iterator[TestClient]:
    if not any(getattr(route, "path", "") == "/v1/admin/recipients" for route in app.routes):
        app.include_router(router)
    with TestClient(app) as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_recipients_builds_and_releases(
    api: TestClient,
    admin_token: str,
    database: Database,
    ctx: ConsentContext,
    scenario_lake: Path,
    tmp_path: Path,
    run_jobs: Callable[[], int],
) -> None:
    headers = auth(admin_token)
    with database.write() as session:
        import_events(session, scenario_lake, ctx=ctx)
    created = api.post(
        "/v1/admin/recipients",
        json={"name": "assistant", "kind": "first_party", "purposes": ["train-ai"], "categories": ["posts"]},
        headers=headers,
    )
    assert created.status_code == 201 and "secret" not in created.json()
    assert [r["name"] for r in api.get("/v1/admin/recipients", headers=headers).json()] == ["assistant"]
    duplicate = api.post(
        "/v1/admin/recipients",
        json={"name": "assistant", "kind": "first_party", "purposes": ["train-ai"], "categories": ["posts"]},
        headers=headers,
    )
    assert duplicate.status_code == 409

    body = {
        "recipient": "assistant",
        "purpose": "train-ai",
        "categories": ["posts"],
        "lake": str(scenario_lake),
        "out": str(tmp_path / "release"),
        "as_of": AS_OF.isoformat(),
    }
    queued = api.post("/v1/admin/datasets/builds", json=body, headers=headers)
    assert queued.status_code == 202, queued.text
    assert queued.json()["status"] == "queued"
    job = api.get(f"/v1/admin/datasets/builds/{queued.json()['id']}", headers=headers).json()
    assert job["status"] == "queued" and job["stage"] == "queued"  # the API only queues it
    assert run_jobs() == 1
    job = api.get(f"/v1/admin/datasets/builds/{queued.json()['id']}", headers=headers).json()
    assert job["status"] == "succeeded", job
    assert job["done"] == job["total"] == 8 and job["stage"] == "published"
    release_id = job["release_id"]

    listed = api.get("/v1/admin/datasets/releases", headers=headers).json()
    assert [r["id"] for r in listed] == [release_id]
    assert listed[0]["recipient"] == "assistant"
    assert listed[0]["rows"] == sum(1 for r in EXPECTED_POSTS.values() if r is None)
    shown = api.get(f"/v1/admin/datasets/releases/{release_id}", headers=headers).json()
    assert shown["manifest"]["excluded"]["posts"]["opted_out"] == 3
    verified = api.post(f"/v1/admin/datasets/releases/{release_id}/verify", headers=headers).json()
    assert verified["ok"] is True and verified["problems"] == []

    again = api.post("/v1/admin/datasets/builds", json=body, headers=headers)
    assert again.status_code == 409  # the folder holds a release: refused before queueing
    assert again.headers["content-type"] == "application/problem+json"

    broken = {**body, "lake": str(tmp_path / "missing"), "out": str(tmp_path / "other")}
    failed = api.post("/v1/admin/datasets/builds", json=broken, headers=headers)
    assert failed.status_code == 202
    assert run_jobs() == 1
    job = api.get(f"/v1/admin/datasets/builds/{failed.json()['id']}", headers=headers).json()
    assert job["status"] == "failed" and "no lake folder" in job["error"]
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    ("changes", "status", "field"),
    [
        ({"recipient": "nobody"}, 404, "recipient"),
        ({"purpose": "mining"}, 422, "purpose"),
        ({"categories": ["profile"]}, 422, "categories"),
        ({"since": "2026-05-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"}, 422, "since"),
        ({"engine": "pandas"}, 422, "engine"),
        ({"retention_days": {"posts": -1}}, 422, "retention.posts"),
        ({"lake_format": "iceberg"}, 422, "lake"),
        ({"lake": None, "lake_format": "iceberg", "catalog": "sqlite:///c.db"}, 422, "namespace"),
        ({"snapshot": ["3"]}, 422, "snapshot"),
        ({"lake_format": "delta", "snapshot": ["tag"]}, 422, "snapshot"),
        ({"engine": "spark", "spark_master": "mesos://host:5050"}, 422, "spark_master"),
        ({"spark_master": "local[2]"}, 422, "spark_master"),
    ],
)
def test_bad_build_requests_are_refused(
    api: TestClient,
    admin_token: str,
    database: Database,
    tmp_path: Path,
    changes: dict[str, object],
    status: int,
    field: str,
) -> None:
    headers = auth(admin_token)
    api.post(
        "/v1/admin/recipients",
        json={"name": "assistant", "kind": "first_party", "purposes": ["train-ai"], "categories": ["posts"]},
        headers=headers,
    )
    body = {"recipient": "assistant", "purpose": "train-ai", "categories": ["posts"], "lake": str(tmp_path)}
    response = api.post("/v1/admin/datasets/builds", json={**body, **changes}, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    assert api.get("/v1/admin/datasets/releases", headers=headers).json() == []


def test_the_api_is_for_admins_only(api: TestClient) -> None:
    assert api.get("/v1/admin/recipients").status_code == 401
    assert api.get("/v1/admin/datasets/builds/1").status_code == 401


def test_a_build_job_reads_delta_tables_at_a_version(
    api: TestClient,
    admin_token: str,
    database: Database,
    ctx: ConsentContext,
    scenario_lake: Path,
    tmp_path: Path,
    run_jobs: Callable[[], int],
) -> None:
    from tests.lake.tables import write_delta

    headers = auth(admin_token)
    with database.write() as session:
        import_events(session, scenario_lake, ctx=ctx)
    api.post(
        "/v1/admin/recipients",
        json={"name": "assistant", "kind": "first_party", "purposes": ["train-ai"], "categories": ["posts"]},
        headers=headers,
    )
    write_delta(scenario_lake, tmp_path / "delta")
    body = {
        "recipient": "assistant",
        "purpose": "train-ai",
        "categories": ["posts"],
        "lake": str(tmp_path / "delta"),
        "lake_format": "delta",
        "snapshot": ["0"],
        "out": str(tmp_path / "release"),
        "as_of": AS_OF.isoformat(),
    }
    queued = api.post("/v1/admin/datasets/builds", json=body, headers=headers)
    assert queued.status_code == 202, queued.text
    run_jobs()
    job = api.get(f"/v1/admin/datasets/builds/{queued.json()['id']}", headers=headers).json()
    assert job["status"] == "succeeded", job["error"]
    release = api.get(f"/v1/admin/datasets/releases/{job['release_id']}", headers=headers).json()
    assert release["rows"] == sum(1 for r in EXPECTED_POSTS.values() if r is None)
    lake = release["manifest"]["lake"]
    assert lake["format"] == "delta" and lake["tables"]["posts"] == {"version": 0, "files": 1}
    queued = api.post(
        "/v1/admin/datasets/builds", json={**body, "snapshot": ["7"], "out": None}, headers=headers
    )
    run_jobs()
    job = api.get(f"/v1/admin/datasets/builds/{queued.json()['id']}", headers=headers).json()
    assert job["status"] == "failed" and "no version 7" in job["error"]
