"""HTTP routes of account data exports: always the caller's own account, always a job for the worker."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from consentry.api_deps import DatabaseDep, SettingsDep
from consentry.consent.deps import AccountDep
from consentry.errors import Conflict, Gone, NotFound
from consentry.exports import service
from consentry.exports.models import ExportJob
from consentry.exports.schemas import ExportIn, ExportJobOut
from consentry.ids import Id64
from consentry.openapi import raises

router = APIRouter(tags=["exports"])
OwnAccount = Annotated[
    Id64 | None, Query(description="Optional; must be the caller's own account id (else 403).")
]


def job_out(job: ExportJob) -> ExportJobOut:
    """The API form of a job, with its download link once the file is ready."""
    out = ExportJobOut.model_validate(job)
    if job.status == "succeeded" and job.path is not None:
        out.download_url = f"/v1/me/exports/{job.id}/download"
    return out


@router.post("/v1/me/export", status_code=202)
@raises(Gone)
def start_export(
    response: Response,
    principal: AccountDep,
    database: DatabaseDep,
    settings: SettingsDep,
    account_id: OwnAccount = None,
    body: ExportIn | None = None,
) -> ExportJobOut:
    """Start an export of the caller's data, settings and consent history (a ZIP of JSON files);
    poll the ``Location`` until ``status`` is ``succeeded``, then download it. While one is in
    progress, asking again returns that one."""
    assert principal.account_id is not None
    service.check_own(principal.account_id, account_id)
    service.check_own(principal.account_id, body.account_id if body else None)
    with database.write() as session:
        job, _ = service.request_export(
            session,
            account_id=principal.account_id,
            requested_by=f"account token {principal.token_id}",
            max_attempts=settings.job_max_attempts,
            scope=body.scope if body else "account",
        )
        out = job_out(job)
    response.headers["Location"] = f"/v1/me/exports/{out.id}"
    return out


@router.get("/v1/me/export")
@raises(NotFound)
def latest_export(
    principal: AccountDep, database: DatabaseDep, account_id: OwnAccount = None
) -> ExportJobOut:
    """The caller's most recent export and its progress (404 if there is none)."""
    assert principal.account_id is not None
    service.check_own(principal.account_id, account_id)
    with database.read() as session:
        return job_out(service.latest_job(session, account_id=principal.account_id))


@router.get("/v1/me/exports")
def list_exports(
    principal: AccountDep, database: DatabaseDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[ExportJobOut]:
    """The caller's exports, newest first."""
    assert principal.account_id is not None
    with database.read() as session:
        return [
            job_out(job) for job in service.list_jobs(session, account_id=principal.account_id, limit=limit)
        ]


@router.get("/v1/me/exports/{export_id}")
def show_export(export_id: str, principal: AccountDep, database: DatabaseDep) -> ExportJobOut:
    """One of the caller's exports with its progress (another account's export: 404)."""
    assert principal.account_id is not None
    with database.read() as session:
        return job_out(service.get_job(session, account_id=principal.account_id, job_id=export_id))


@router.get(
    "/v1/me/exports/{export_id}/download",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
@raises(Conflict, Gone)
def download_export(export_id: str, principal: AccountDep, database: DatabaseDep) -> FileResponse:
    """The ZIP of a finished export (409 while it runs or if it failed, 410 once it expired)."""
    assert principal.account_id is not None
    with database.read() as session:
        job = service.get_job(session, account_id=principal.account_id, job_id=export_id)
        path = service.download_path(job)
        digest, created = job.sha256, job.created_at
    name = f"consentry-export-{principal.account_id}-{created:%Y%m%d-%H%M%S}.zip"
    headers = {"ETag": f'"{digest}"', "Cache-Control": "private, no-store"} if digest else None
    return FileResponse(path, media_type="application/zip", filename=name, headers=headers)
