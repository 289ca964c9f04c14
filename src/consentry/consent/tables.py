"""Consent data read in bulk into Arrow, as the vectorised evaluation reads it: the use cases' names for
what ``consent.reader`` (the one typed reader, every read bounded by a ledger position) does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa
from sqlalchemy.orm import Session

from consentry.consent import reader


def accounts_table(session: Session) -> pa.Table:
    """Every account, in ``ACCOUNT_SCHEMA`` (``consent.reader.accounts``)."""
    return reader.accounts(session)


def load_accounts(session: Session, *, above: int = 0) -> pa.Table:
    """Every account with an id above ``above``, in ``ACCOUNT_SCHEMA``, ordered by id."""
    return reader.accounts(session, above=above)


def events_table(session: Session, *, until: datetime | None = None) -> pa.Table:
    """Every explicit event of a still-mapped account (recorded at or before ``until``), up to the
    ledger's position now, in seq order, in ``EVENT_SCHEMA``."""
    return reader.events(session, upto=reader.position(session), until=until, ordered=True)


def read_accounts(
    session: Session,
    *,
    account_ids: Sequence[int],
    settings: Sequence[str],
    until: datetime | None = None,
) -> tuple[pa.Table, pa.Table]:
    """The rows (``ACCOUNT_SCHEMA``) and explicit events (``EVENT_SCHEMA``) for ``settings``, recorded
    at or before ``until`` (any time without), of the given accounts, up to the ledger's position now."""
    return reader.accounts_of(
        session, account_ids=account_ids, settings=settings, upto=reader.position(session), until=until
    )
