"""Legal holds: validated, and nothing changes when one is refused (what a hold keeps from each rule is in
test_service.py, beside the runs)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from consentry.db import Database
from consentry.errors import Conflict, InvalidInput, NotFound
from consentry.retention import holds
from consentry.retention.models import LegalHold


def hold(database: Database, *accounts: int) -> None:
    with database.write() as session:
        for account in accounts:
            holds.add_hold(session, account_id=account, reason="litigation 2026-17", by="test")


def test_holds_are_validated_and_nothing_changes_on_error(platform: Database) -> None:
    with pytest.raises(NotFound) as unknown:
        hold(platform, 999)
    assert unknown.value.field == "account_id" and "999" in unknown.value.detail
    hold(platform, 1)
    with pytest.raises(Conflict):
        hold(platform, 1)
    with platform.write() as session, pytest.raises(InvalidInput) as empty:
        holds.add_hold(session, account_id=2, reason="  ")
    assert empty.value.field == "reason"
    with platform.write() as session, pytest.raises(NotFound) as release_unknown:
        holds.release_hold(session, account_id=999)
    assert release_unknown.value.field == "account_id"
    with platform.write() as session, pytest.raises(NotFound):
        holds.release_hold(session, account_id=2)  # not held
    with platform.read() as session:
        assert [h.account_id for h in holds.list_holds(session)] == [1]
        assert session.scalar(select(func.count()).select_from(LegalHold)) == 1
    with platform.write() as session:
        released = holds.release_hold(session, account_id=1, by="counsel")
        assert released.released_at is not None and released.released_by == "counsel"
    hold(platform, 1)  # a released account can be held again
    with platform.read() as session:
        assert len(holds.list_holds(session, include_released=True)) == 2
        assert holds.held_account_ids(session) == [1]
