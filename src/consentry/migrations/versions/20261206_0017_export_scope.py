"""exports: the scope of an account export (the account alone, or with its linked accounts)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("account_exports", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scope", sa.String(length=16), server_default="account", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("account_exports", schema=None) as batch_op:
        batch_op.drop_column("scope")
