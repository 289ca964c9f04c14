"""the ledger head keeps the latest time in the chain, so live writes take their time under the head

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_head") as batch:
        batch.add_column(sa.Column("recorded_at", sa.DateTime(), nullable=True))
    op.execute("UPDATE ledger_head SET recorded_at = (SELECT max(recorded_at) FROM consent_events)")


def downgrade() -> None:
    with op.batch_alter_table("ledger_head") as batch:
        batch.drop_column("recorded_at")
