"""consent ledger partitions: each partition's tree, and the log of partition states

A ledger keeps one partition (its tree in ``tlog_tiles``, as before) unless it was created with more;
these tables are used only then. Nothing existing changes.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 02:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tlog_partition_tiles",
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("partition", "level", "idx", name=op.f("pk_tlog_partition_tiles")),
    )
    op.create_table(
        "tlog_partition_states",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_tlog_partition_states")),
    )


def downgrade() -> None:
    op.drop_table("tlog_partition_states")
    op.drop_table("tlog_partition_tiles")
