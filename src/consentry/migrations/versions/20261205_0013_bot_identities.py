"""metering: Web Bot Auth identities of organisations, and the attribution basis of access-log rows

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import consentry.db

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organisation_bot_identities",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=300), nullable=False),
        sa.Column("directory_url", sa.String(length=500), nullable=False),
        sa.Column("pinned_jwks", sa.Text(), nullable=True),
        sa.Column("created_at", consentry.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", consentry.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_organisation_bot_identities_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisation_bot_identities")),
        sa.UniqueConstraint("agent", name=op.f("uq_organisation_bot_identities_agent")),
    )
    with op.batch_alter_table("organisation_bot_identities", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_organisation_bot_identities_organisation_id"), ["organisation_id"], unique=False
        )
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("basis", sa.String(length=16), server_default="", nullable=False))
        batch_op.add_column(sa.Column("evidence", sa.String(length=120), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.drop_column("evidence")
        batch_op.drop_column("basis")
    with op.batch_alter_table("organisation_bot_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_organisation_bot_identities_organisation_id"))
    op.drop_table("organisation_bot_identities")
