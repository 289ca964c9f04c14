"""HTTP routes of the datasets domain (admin only): recipients, build jobs (run by the worker), releases."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query

from consentry.api_deps import AdminDep, DatabaseDep, SettingsDep
from consentry.datasets import service
from consentry.datasets.eligibility import Retention
from consentry.datasets.models import Release
from consentry.datasets.schemas import (
    BuildCreate,
    BuildJobOut,
    RecipientCreate,
    RecipientOut,
    ReleaseDetail,
    ReleaseOut,
    VerifyOut,
)
from consentry.errors import Conflict, NotFound
from consentry.ids import Id32
from consentry.lake.source import lake_spec
from consentry.openapi import raises

router = APIRouter()
TAGS: list[str | Enum] = ["datasets"]


def _utc(at: datetime | None) -> datetime | None:
    return at if at is None or at.tzinfo else at.replace(tzinfo=UTC)


def release_out(release: Release, names: dict[int, str]) -> dict[str, Any]:
    """The API form of a release row."""
    fields = ReleaseOut.model_fields.keys() - {"recipient"}
    return {"recipient": names.get(release.recipient_id, ""), **{k: getattr(release, k) for k in fields}}


@router.get("/v1/admin/recipients", tags=TAGS)
def list_recipients(principal: AdminDep, database: DatabaseDep) -> list[RecipientOut]:
    """Every recipient of releases."""
    with database.read() as session:
        return [RecipientOut.model_validate(r) for r in service.list_recipients(session)]


@router.post("/v1/admin/recipients", status_code=201, tags=TAGS)
@raises(Conflict)
def add_recipient(body: RecipientCreate, principal: AdminDep, database: DatabaseDep) -> RecipientOut:
    """Register a recipient with the purposes and categories it may receive."""
    with database.write() as session:
        recipient = service.add_recipient(
            session, name=body.name, kind=body.kind, purposes=body.purposes, categories=body.categories
        )
        return RecipientOut.model_validate(recipient)


@router.post("/v1/admin/datasets/builds", status_code=202, tags=TAGS)
@raises(NotFound, Conflict)
def start_build(
    body: BuildCreate,
    principal: AdminDep,
    database: DatabaseDep,
    settings: SettingsDep,
) -> BuildJobOut:
    """Queue a build for ``consentry worker``; poll ``GET /v1/admin/datasets/builds/{id}``.

    Everything that needs no lake scan is checked now (422/404/409); the lake check and the build
    itself run in the job, whose ``status`` becomes ``succeeded`` (with ``release_id``) or ``failed``
    (with ``error``)."""
    Retention(dict(body.retention_days))
    params = body.model_dump(mode="json")
    for key in ("as_of", "since", "until", "snapshot_at"):
        value = _utc(getattr(body, key))
        params[key] = value.isoformat() if value else None
    lake = lake_spec(
        lake=body.lake,
        format=body.lake_format,
        catalog=body.catalog,
        catalog_name=body.catalog_name,
        namespace=body.namespace,
        snapshot=body.snapshot,
        snapshot_at=_utc(body.snapshot_at),
    )
    params.update(lake.to_params())
    spark_master = body.spark_master or (settings.spark_master if body.engine == "spark" else None)
    params["spark_master"] = spark_master
    params["block_when_overdue"] = settings.block_releases_when_overdue
    with database.write() as session:
        job = service.create_job(
            session,
            params=params,
            created_by=f"admin token {principal.token_id}",
            max_attempts=settings.job_max_attempts,
        )
        out = Path(body.out) if body.out else settings.home / "releases" / f"job-{job.id}"
        job.params = {**params, "out": str(out)}
        service.check_request(
            session,
            recipient=body.recipient,
            purpose=body.purpose,
            categories=body.categories,
            out=out,
            as_of=_utc(body.as_of),
            since=_utc(body.since),
            until=_utc(body.until),
            engine=body.engine,
            since_release=body.since_release,
            block_when_overdue=settings.block_releases_when_overdue,
            spark_master=spark_master,
        )
        return BuildJobOut.model_validate(job)


@router.get("/v1/admin/datasets/builds/{job_id}", tags=TAGS)
def show_build(job_id: Id32, principal: AdminDep, database: DatabaseDep) -> BuildJobOut:
    """A build job and its progress."""
    with database.read() as session:
        return BuildJobOut.model_validate(service.get_job(session, job_id))


@router.get("/v1/admin/datasets/releases", tags=TAGS)
@raises(NotFound)
def list_releases(
    principal: AdminDep,
    database: DatabaseDep,
    recipient: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ReleaseOut]:
    """Releases, newest first."""
    with database.read() as session:
        names = service.recipient_names(session)
        return [
            ReleaseOut.model_validate(release_out(r, names))
            for r in service.list_releases(session, recipient=recipient, limit=limit)
        ]


@router.get("/v1/admin/datasets/releases/{release_id}", tags=TAGS)
def show_release(release_id: str, principal: AdminDep, database: DatabaseDep) -> ReleaseDetail:
    """One release with its manifest."""
    with database.read() as session:
        release = service.get_release(session, release_id)
        names = service.recipient_names(session)
        return ReleaseDetail.model_validate(
            {**release_out(release, names), "manifest": service.read_manifest(release)}
        )


@router.post("/v1/admin/datasets/releases/{release_id}/verify", tags=TAGS)
def verify_release(release_id: str, principal: AdminDep, database: DatabaseDep) -> VerifyOut:
    """Recompute every checksum and row count of a release against its manifest."""
    with database.read() as session:
        report = service.verify_release(session, release_id=release_id)
    return VerifyOut(
        release_id=report.release_id,
        ok=report.ok,
        files=report.files,
        rows=report.rows,
        problems=list(report.problems),
        history=report.history,
    )
