"""jobs: one table of jobs claimed by the worker with leases (dataset builds, account exports)

Builds and exports that were queued or running in the API process are queued again for the worker.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import consentry.db

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("lease_until", consentry.db.UTCDateTime(), nullable=True),
        sa.Column("heartbeat_at", consentry.db.UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", consentry.db.UTCDateTime(), nullable=False),
        sa.Column("started_at", consentry.db.UTCDateTime(), nullable=True),
        sa.Column("finished_at", consentry.db.UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')", name=op.f("ck_jobs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("kind", "ref", name=op.f("uq_jobs_kind")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_status_lease", ["status", "lease_until"], unique=False)
    for kind, table, ref in (
        ("dataset_build", "dataset_build_jobs", "CAST(id AS VARCHAR(64))"),
        ("account_export", "account_exports", "id"),
    ):
        op.execute(
            f"INSERT INTO jobs (kind, ref, status, attempts, max_attempts, created_at) "
            f"SELECT '{kind}', {ref}, 'queued', 0, 3, created_at FROM {table} "
            f"WHERE status IN ('queued', 'running')"
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_lease")
    op.drop_table("jobs")
