"""links: linked accounts, and the account that chose on consent events of a linked change

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 02:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import consentry.db

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_links",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("low_id", sa.BigInteger(), nullable=False),
        sa.Column("high_id", sa.BigInteger(), nullable=False),
        sa.Column("requested_by", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", consentry.db.UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", consentry.db.UTCDateTime(), nullable=True),
        sa.CheckConstraint("low_id < high_id", name=op.f("ck_account_links_ordered")),
        sa.CheckConstraint("status IN ('pending', 'confirmed')", name=op.f("ck_account_links_status")),
        sa.CheckConstraint("source IN ('user', 'admin', 'import')", name=op.f("ck_account_links_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_links")),
        sa.UniqueConstraint("low_id", "high_id", name=op.f("uq_account_links_low_id")),
    )
    with op.batch_alter_table("account_links", schema=None) as batch_op:
        batch_op.create_index("ix_account_links_high_id", ["high_id"], unique=False)
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chosen_by", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_column("chosen_by")
    with op.batch_alter_table("account_links", schema=None) as batch_op:
        batch_op.drop_index("ix_account_links_high_id")
    op.drop_table("account_links")
