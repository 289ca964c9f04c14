"""organisations: a unique name key (NFKC, case-folded) so names that differ only in case are one

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 16:30:00

Existing rows get their key computed here. Should two existing names already share a key (SQLite's
``lower()`` let ``Ünited AI`` and ``ünited ai`` in side by side), the older keeps the key and each
later one gets ``<key>:<id>``; no name can produce that form, since names may not contain ``:``.
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _key(name: str) -> str:
    # the rule of consentry.metering.service.name_key, frozen here as it was when this revision ran
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch:
        batch.add_column(sa.Column("name_key", sa.String(length=600), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, name FROM organisations ORDER BY id")).all()
    seen: set[str] = set()
    for row_id, name in rows:
        key = _key(name)
        if key in seen:
            key = f"{key}:{row_id}"
        seen.add(key)
        connection.execute(
            sa.text("UPDATE organisations SET name_key = :key WHERE id = :id"), {"key": key, "id": row_id}
        )
    with op.batch_alter_table("organisations") as batch:
        batch.alter_column("name_key", existing_type=sa.String(length=600), nullable=False)
        batch.create_unique_constraint(batch.f("uq_organisations_name_key"), ["name_key"])


def downgrade() -> None:
    with op.batch_alter_table("organisations") as batch:
        batch.drop_constraint(batch.f("uq_organisations_name_key"), type_="unique")
        batch.drop_column("name_key")
