"""API shapes of the datasets domain (kept apart from the ORM tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["first_party", "third_party"]
EngineName = Literal["duckdb", "spark"]


class RecipientCreate(BaseModel):
    """A recipient to register; its pseudonymisation secret is generated and never returned."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["assistant"])
    kind: Kind
    purposes: list[str] = Field(min_length=1, examples=[["train-ai"]])
    categories: list[str] = Field(min_length=1, examples=[["posts", "assistant_interactions"]])


class RecipientOut(BaseModel):
    """A recipient (without its secret)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    purposes: list[str]
    categories: list[str]
    created_at: datetime


class BuildCreate(BaseModel):
    """A release to build in the background (times without an offset are UTC)."""

    model_config = ConfigDict(extra="forbid")

    recipient: str
    purpose: str = Field(examples=["train-ai"])
    categories: list[str] = Field(min_length=1, examples=[["posts"]])
    lake: str | None = Field(
        default=None, description="Parquet lake folder, or the root of the Delta tables, on the server."
    )
    lake_format: Literal["parquet", "iceberg", "delta"] = "parquet"
    catalog: str | None = Field(default=None, description="Iceberg: SQL catalog URI (SQLite or PostgreSQL).")
    catalog_name: str | None = Field(default=None, description="Iceberg: catalog name (default 'default').")
    namespace: str | None = Field(default=None, description="Iceberg: namespace holding the tables.")
    snapshot: list[str] = Field(
        default_factory=list,
        description="REF or TABLE=REF: Iceberg snapshot id, tag or branch; Delta version.",
        examples=[["v2026-11"]],
    )
    snapshot_at: datetime | None = Field(default=None, description="Iceberg/Delta: tables as at this time.")
    out: str | None = Field(default=None, description="Release folder; default <home>/releases/job-<id>.")
    as_of: datetime | None = None
    since: datetime | None = None
    until: datetime | None = None
    engine: EngineName = "duckdb"
    spark_master: str | None = Field(
        default=None,
        description="Spark engine: local[N], spark://host:port, sc://host:port; default the setting.",
    )
    since_release: str | None = None
    scrub_pii: bool | None = Field(default=None, description="Default: on for third parties.")
    retention_days: dict[str, int] = Field(default_factory=dict, description="Per category, in days.")
    license: str = "other"


class BuildJobOut(BaseModel):
    """A build job and its progress (``done`` of ``total`` steps, the current ``stage``)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    status: Literal["queued", "running", "succeeded", "failed"]
    stage: str
    done: int
    total: int
    release_id: str | None
    error: str | None
    params: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ReleaseOut(BaseModel):
    """A published release."""

    id: str
    recipient: str
    purpose: str
    categories: list[str]
    as_of: datetime
    since: datetime | None
    until: datetime | None
    since_release: str | None
    engine: str
    status: str
    path: str
    manifest_sha256: str
    rows: int
    excluded: int
    removals: int
    created_at: datetime


class ReleaseDetail(ReleaseOut):
    """A release with its manifest."""

    manifest: dict[str, Any]


class VerifyOut(BaseModel):
    """The outcome of recomputing a release's checksums and row counts."""

    release_id: str
    ok: bool
    files: int
    rows: dict[str, int]
    problems: list[str]
    history: str | None = Field(
        default=None, description="what was proven about the ledger checkpoint the manifest cites"
    )
