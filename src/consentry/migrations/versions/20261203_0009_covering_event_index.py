"""the consent-event index also holds the value, so reading a setting's events scans only the index

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 07:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEX = "ix_consent_events_subject_setting"


def upgrade() -> None:
    op.drop_index(INDEX, table_name="consent_events")
    op.create_index(INDEX, "consent_events", ["subject_key", "setting", "recorded_at", "value"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="consent_events")
    op.create_index(INDEX, "consent_events", ["subject_key", "setting", "recorded_at"])
