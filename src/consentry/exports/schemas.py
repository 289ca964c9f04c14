"""API shapes of the exports domain."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from consentry.ids import Id64


class ExportIn(BaseModel):
    """An export request; the body may be empty. ``account_id``, if sent, must be the caller's."""

    model_config = ConfigDict(extra="forbid")

    account_id: Id64 | None = Field(
        default=None, description="Optional; an export is always of the caller's own account."
    )
    scope: Literal["account", "linked"] = Field(
        default="account",
        description="linked: also the files of every account with a confirmed link, under linked/<id>/",
    )


class ExportJobOut(BaseModel):
    """An export job and its progress; ``download_url`` is set once the file is ready."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    account_id: int
    scope: Literal["account", "linked"] = "account"
    status: Literal["queued", "running", "succeeded", "failed"]
    stage: str
    done: int
    total: int
    size_bytes: int | None
    sha256: str | None = Field(description="SHA-256 of the ZIP file, once written.")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None = Field(description="The file can be downloaded until then.")
    download_url: str | None = None
