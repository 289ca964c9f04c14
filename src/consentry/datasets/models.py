"""Tables of the datasets domain: recipients, published releases, and background build jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from consentry.db import Base, UTCDateTime

RECIPIENT_KINDS = ("first_party", "third_party")
RELEASE_STATUSES = ("published", "withdrawn")
JOB_STATUSES = ("queued", "running", "succeeded", "failed")


class Recipient(Base):
    """Who receives releases: the platform itself (first party) or a partner (third party).

    ``secret`` keys the author pseudonyms of this recipient's releases; it never leaves the database.
    The partner columns (status, deletion deadline, webhook endpoint and its ``whsec_`` signing secret)
    complete a partner's record; a suspended recipient gets no new release.
    """

    __tablename__ = "recipients"
    __table_args__ = (
        CheckConstraint("kind IN ('first_party', 'third_party')", name="kind"),
        CheckConstraint("status IN ('active', 'suspended')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    purposes: Mapped[list[str]] = mapped_column(JSON)
    categories: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    deletion_deadline_hours: Mapped[int] = mapped_column(Integer, default=72, server_default="72")
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(String(128))


class Release(Base):
    """A published release: a folder of Parquet shards, a manifest, a dataset card and lineage."""

    __tablename__ = "releases"
    __table_args__ = (
        CheckConstraint("status IN ('published', 'withdrawn')", name="status"),
        Index("ix_releases_recipient_created", "recipient_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    recipient_id: Mapped[int] = mapped_column(Integer, ForeignKey("recipients.id"))
    purpose: Mapped[str] = mapped_column(String(16))
    categories: Mapped[list[str]] = mapped_column(JSON)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    since_release: Mapped[str | None] = mapped_column(String(40))
    engine: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="published")
    path: Mapped[str] = mapped_column(Text)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(BigInteger)
    excluded: Mapped[int] = mapped_column(BigInteger)
    removals: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BuildJob(Base):
    """A build requested through the API, run in the background; ``stage``/``done``/``total`` report
    progress."""

    __tablename__ = "dataset_build_jobs"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    stage: Mapped[str] = mapped_column(String(32), default="queued")
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    release_id: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LakeCheck(Base):
    """A lake snapshot that passed the full data-contract check, so later builds of the same files skip
    re-scanning it. ``fingerprint`` is SHA-256 over every Parquet file's path, size and mtime."""

    __tablename__ = "dataset_lake_checks"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    files: Mapped[int] = mapped_column(Integer)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime())
