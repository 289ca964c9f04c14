"""exports and eligibility: account data export jobs, the account change log of the eligibility cache

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import consentry.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_exports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", consentry.db.UTCDateTime(), nullable=False),
        sa.Column("started_at", consentry.db.UTCDateTime(), nullable=True),
        sa.Column("finished_at", consentry.db.UTCDateTime(), nullable=True),
        sa.Column("expires_at", consentry.db.UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')", name=op.f("ck_account_exports_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_exports")),
    )
    with op.batch_alter_table("account_exports", schema=None) as batch_op:
        batch_op.create_index(
            "ix_account_exports_account_created", ["account_id", "created_at"], unique=False
        )

    op.create_table(
        "eligibility_epoch",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("pruned_below", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eligibility_epoch")),
    )
    op.create_table(
        "eligibility_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("changed_at", consentry.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eligibility_changes")),
    )
    with op.batch_alter_table("eligibility_changes", schema=None) as batch_op:
        batch_op.create_index("ix_eligibility_changes_version", ["version"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("eligibility_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_eligibility_changes_version")
    op.drop_table("eligibility_changes")
    op.drop_table("eligibility_epoch")
    with op.batch_alter_table("account_exports", schema=None) as batch_op:
        batch_op.drop_index("ix_account_exports_account_created")
    op.drop_table("account_exports")
