"""The account change log that keeps in-memory eligibility state exact across processes.

Effective consent depends on the ledger (its head row says when it changed) and on a few account columns
(``created_at``, ``country``, ``birth_year``, ``status``, ``status_changed_at``). Nothing else names a
changed account cheaply, so every ORM flush that inserts, updates or deletes an account records its id
here, in the same transaction, under a version taken from the single ``eligibility_epoch`` row. Bumping
that row locks it until commit, so versions become visible in order: a reader that sees version V can
read every change up to V. A bulk statement on ``accounts`` (``update(Account)...``) records one change
without an account id, which means "re-read everything".

The listeners are registered when this module is imported; ``consentry.models`` imports it, and so does
every process that migrates its database or serves the API. Account changes written with raw SQL bypass
them: such writers call ``record_account_changes`` themselves (new account ids above the largest known
one are noticed anyway).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, Index, Integer, String, event, text
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, UOWTransaction, mapped_column

from consentry.db import Base, UTCDateTime, utcnow

RowId = BigInteger().with_variant(Integer, "sqlite")
ACCOUNT_TABLE = "accounts"
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


def _changed_accounts(session: Session) -> list[int | None]:
    from sqlalchemy import inspect

    changed: list[int | None] = []
    for obj in session.new:
        if getattr(obj, "__tablename__", None) == ACCOUNT_TABLE:
            changed.append(obj.id)
    for obj in session.deleted:
        if getattr(obj, "__tablename__", None) == ACCOUNT_TABLE:
            changed.append(obj.id)
    for obj in session.dirty:
        if getattr(obj, "__tablename__", None) != ACCOUNT_TABLE:
            continue
        state: Any = inspect(obj)
        if any(state.attrs[name].history.has_changes() for name in EVALUATED_COLUMNS):
            changed.append(obj.id)
    return changed


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _flush: UOWTransaction) -> None:
    changed = _changed_accounts(session)
    if changed:
        record_account_changes(session.connection(), changed)


@event.listens_for(Session, "do_orm_execute")
def _bulk_statement(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) == ACCOUNT_TABLE:
        record_account_changes(state.session.connection(), [None])
