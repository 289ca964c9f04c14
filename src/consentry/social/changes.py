"""The account change log: which accounts changed what effective consent reads of them, in commit order.

Effective consent depends on the ledger (its head row says when it changed) and on a few account columns
(``created_at``, ``country``, ``birth_year``, ``status``, ``status_changed_at``). Nothing else names a
changed account cheaply, so every write path that creates an account, changes one of those columns or
deletes an account calls ``record_account_changes`` in its own transaction: ``create_account``,
``deactivate_account``, ``reactivate_account`` and ``delete_account`` (``consentry.social.service``) and
the retention purge (a bulk statement, recorded as one change without an account id, which means
"re-read everything"). Each call takes a version from the single ``eligibility_epoch`` row. Bumping
that row locks it until commit, so versions become visible in order: a reader that sees version V can
read every change up to V. The eligibility cache (``consentry.eligibility``) is the reader, hence the
tables' names; the log lives here, beside the accounts, so that writers need not know their readers.

The call is explicit, not an ORM event: nothing depends on which modules a process imported, and a
write that bypasses the write paths is not recorded (new account ids above the largest known one are
noticed anyway). ``tests/social/test_changes.py`` drives every write path and fails if one forgets.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import BigInteger, Connection, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from consentry.db import Base, UTCDateTime, utcnow

RowId = BigInteger().with_variant(Integer, "sqlite")
EVALUATED_COLUMNS = ("created_at", "country", "birth_year", "status", "status_changed_at")
"""The account columns effective consent reads."""
KEEP_VERSIONS = 100_000
"""Change rows older than this many versions are pruned; a reader further behind re-reads everything."""
PRUNE_EVERY = 1024


class EligibilityEpoch(Base):
    """The single row (``id = 1``) whose ``version`` counts account changes.

    ``token`` is random per row: if the row is ever recreated (a restored or emptied database), readers
    see a new token and rebuild instead of trusting a version number that restarted.
    ``pruned_below``: change rows of lower versions may have been deleted.
    """

    __tablename__ = "eligibility_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)
    token: Mapped[str] = mapped_column(String(32))
    pruned_below: Mapped[int] = mapped_column(BigInteger, default=0)


class EligibilityChange(Base):
    """An account whose evaluated columns changed at ``version``; ``account_id`` NULL: any account."""

    __tablename__ = "eligibility_changes"
    __table_args__ = (Index("ix_eligibility_changes_version", "version"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    version: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[int | None] = mapped_column(BigInteger)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


_BUMP = text(
    "INSERT INTO eligibility_epoch (id, version, token, pruned_below) VALUES (1, 1, :token, 0) "
    "ON CONFLICT (id) DO UPDATE SET version = eligibility_epoch.version + 1 RETURNING version"
)


def record_account_changes(connection: Connection, account_ids: Sequence[int | None]) -> int:
    """Record that these accounts changed (``None``: any account) in the caller's transaction; returns
    the new version. Locks the epoch row until the transaction ends."""
    version = int(connection.execute(_BUMP, {"token": secrets.token_hex(16)}).scalar_one())
    now = utcnow()
    connection.execute(
        EligibilityChange.__table__.insert(),  # type: ignore[attr-defined]
        [{"version": version, "account_id": a, "changed_at": now} for a in dict.fromkeys(account_ids)],
    )
    if version % PRUNE_EVERY == 0 and version > KEEP_VERSIONS:
        below = version - KEEP_VERSIONS
        connection.execute(text("DELETE FROM eligibility_changes WHERE version < :v"), {"v": below})
        connection.execute(text("UPDATE eligibility_epoch SET pruned_below = :v WHERE id = 1"), {"v": below})
    return version
