"""HTTP routes of the retention domain (admin only, under ``/v1/admin/retention``): translate requests
into service calls."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Query

from consentry.api_deps import AdminDep, DatabaseDep, SettingsDep
from consentry.auth.service import Principal
from consentry.errors import Conflict, NotFound
from consentry.ids import Id32, Id64
from consentry.openapi import raises
from consentry.retention import service
from consentry.retention.rules import load_rules
from consentry.retention.schemas import (
    ApplyIn,
    HoldIn,
    HoldOut,
    RetentionPlan,
    RetentionReport,
    RunDetail,
    RunOut,
)

router = APIRouter(prefix="/v1/admin/retention")
TAGS: list[str | Enum] = ["retention"]


def _as_utc(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _by(principal: Principal) -> str:
    return f"admin token {principal.token_id}"


@router.get("/rules", tags=TAGS)
def rules(principal: AdminDep, settings: SettingsDep) -> dict[str, Any]:
    """The retention rules in force (ISO 8601 durations; ``null``: keep)."""
    return load_rules(settings.retention_file).describe()


@router.get("/plan", tags=TAGS)
def plan(
    principal: AdminDep,
    database: DatabaseDep,
    settings: SettingsDep,
    at: Annotated[datetime | None, Query(description="Evaluate the windows at this time.")] = None,
) -> RetentionPlan:
    """A dry run over the database: what each rule would remove, with examples and held counts."""
    loaded = load_rules(settings.retention_file)
    with database.read() as session:
        return service.plan(session, rules=loaded, at=_as_utc(at))


@router.post("/runs", status_code=201, tags=TAGS)
def apply(
    principal: AdminDep, database: DatabaseDep, settings: SettingsDep, body: ApplyIn | None = None
) -> RetentionReport:
    """Apply the rules now (or as of a past ``at``): purge, revoke released records, record the run."""
    loaded = load_rules(settings.retention_file)
    at = _as_utc(body.at) if body is not None else None
    return service.apply(database, rules=loaded, at=at, trigger="api")


@router.get("/runs", tags=TAGS)
def runs(
    principal: AdminDep,
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[RunOut]:
    """The latest retention runs, newest first."""
    with database.read() as session:
        return [RunOut.model_validate(run) for run in service.list_runs(session, limit=limit)]


@router.get("/runs/{run_id}", tags=TAGS)
def run(run_id: Id32, principal: AdminDep, database: DatabaseDep) -> RunDetail:
    """One run with its purge report."""
    with database.read() as session:
        return RunDetail.model_validate(service.get_run(session, run_id))


@router.get("/holds", tags=TAGS)
def holds(
    principal: AdminDep,
    database: DatabaseDep,
    include_released: Annotated[bool, Query(alias="all", description="Include released holds.")] = False,
) -> list[HoldOut]:
    """Legal holds (active ones unless ``all=true``)."""
    with database.read() as session:
        found = service.list_holds(session, include_released=include_released)
        return [HoldOut.model_validate(hold) for hold in found]


@router.post("/holds", status_code=201, tags=TAGS)
@raises(NotFound, Conflict)
def add_hold(body: HoldIn, principal: AdminDep, database: DatabaseDep) -> HoldOut:
    """Put an account on legal hold (404 for an unknown account, 409 if already held)."""
    with database.write() as session:
        hold = service.add_hold(session, account_id=body.account_id, reason=body.reason, by=_by(principal))
        return HoldOut.model_validate(hold)


@router.post("/holds/{account_id}/release", tags=TAGS)
def release_hold(account_id: Id64, principal: AdminDep, database: DatabaseDep) -> HoldOut:
    """Release an account's legal hold (404 when the account is unknown or not held)."""
    with database.write() as session:
        return HoldOut.model_validate(service.release_hold(session, account_id=account_id, by=_by(principal)))
