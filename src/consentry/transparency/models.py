"""Tables of the transparency log: the Merkle tree's tiles and the signed checkpoints."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from consentry.db import Base, UTCDateTime


class TreeTile(Base):
    """One tile of the tree (C2SP tlog-tiles): up to 256 hashes of 32 bytes at tree level ``8 * level``.

    A full tile never changes; the rightmost tile of each level grows in place until it is full, and
    any partial tile a checkpoint needs is a prefix of it. Written by the transaction that appends the
    ledger events whose leaf hashes it holds.
    """

    __tablename__ = "tlog_tiles"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Checkpoint(Base):
    """A signed checkpoint (C2SP tlog-checkpoint): the tree at ``size`` with its root, every one kept.

    ``note`` is the signed note as the log signed it; ``cosignatures`` holds the witnesses' signature
    lines collected for it (appended as they arrive).
    """

    __tablename__ = "tlog_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    cosignatures: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class PartitionTile(Base):
    """A tile of one partition's tree, when the ledger has more than one partition (same layout as
    ``TreeTile``; with a single partition its tree is ``tlog_tiles`` itself)."""

    __tablename__ = "tlog_partition_tiles"

    partition: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class PartitionState(Base):
    """One entry of the log of partition states (ledgers of more than one partition): the size and
    root of every partition when a checkpoint was signed. Entry ``idx`` is leaf ``idx`` of the tree
    that ``tlog_tiles`` holds and the signed checkpoints commit to."""

    __tablename__ = "tlog_partition_states"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry: Mapped[str] = mapped_column(Text)
