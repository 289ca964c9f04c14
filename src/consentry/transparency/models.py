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
