"""the consent ledger becomes a transparency log: the tree's tiles and the signed checkpoints

Existing events are back-filled into the tree here, in seq order, each leaf the event's canonical JSON
(the bytes its chain hash covers), so every existing ledger gets its tree in the same upgrade.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 16:00:00
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import consentry.db
from consentry.transparency import tiles

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BATCH = 50_000


def _document(row: Any) -> bytes:
    """The canonical JSON of an event as the ledger hashed it (sorted keys, no spaces, UTF-8)."""
    seq, subject, setting, value, source, version, recorded_at, client = row
    if isinstance(recorded_at, str):
        recorded_at = datetime.fromisoformat(recorded_at)
    stamp = recorded_at.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    document = {
        "client": client,
        "policy_version": version,
        "recorded_at": stamp,
        "seq": seq,
        "setting": setting,
        "source": source,
        "subject": subject,
        "value": value,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def upgrade() -> None:
    op.create_table(
        "tlog_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("cosignatures", sa.Text(), nullable=False),
        sa.Column("created_at", consentry.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_tlog_checkpoints")),
    )
    op.create_index(op.f("ix_tlog_checkpoints_created_at"), "tlog_checkpoints", ["created_at"])
    op.create_table(
        "tlog_tiles",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_tlog_tiles")),
    )
    _backfill(op.get_bind())


def _backfill(connection: sa.Connection) -> None:
    """Every existing event becomes a leaf, in seq order (the tiles written as they fill)."""
    stored: dict[tuple[int, int], bytes] = {}
    size = 0
    after = 0
    query = sa.text(
        "SELECT seq, subject_key, setting, value, source, policy_version, recorded_at, client "
        "FROM consent_events WHERE seq > :after ORDER BY seq LIMIT :batch"
    )
    while True:
        rows = connection.execute(query, {"after": after, "batch": BATCH}).all()
        if not rows:
            break
        leaves = b"".join(hashlib.sha256(b"\x00" + _document(row)).digest() for row in rows)
        frontier = {t.level: stored[(t.level, t.index)] for t in tiles.frontier_tiles(size)}
        update = tiles.append_hashes(size, leaves, frontier)
        stored.update(update.tiles)
        size, after = update.size, int(rows[-1][0])
        full = {key: data for key, data in stored.items() if len(data) == tiles.FULL_TILE_BYTES}
        if full:  # full tiles never change again: write them now, keep only the growing ones
            connection.execute(
                sa.text("INSERT INTO tlog_tiles (level, idx, data) VALUES (:level, :idx, :data)"),
                [{"level": lvl, "idx": idx, "data": data} for (lvl, idx), data in sorted(full.items())],
            )
            for key in full:
                del stored[key]
    if stored:
        connection.execute(
            sa.text("INSERT INTO tlog_tiles (level, idx, data) VALUES (:level, :idx, :data)"),
            [{"level": lvl, "idx": idx, "data": data} for (lvl, idx), data in sorted(stored.items())],
        )


def downgrade() -> None:
    op.drop_table("tlog_tiles")
    op.drop_index(op.f("ix_tlog_checkpoints_created_at"), table_name="tlog_checkpoints")
    op.drop_table("tlog_checkpoints")
