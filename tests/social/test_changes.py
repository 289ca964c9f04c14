"""Every write path that changes what eligibility reads of an account records it in the change log.

The eligibility state is patched from ``eligibility_changes``; a write path that forgot to record its
change would leave every process answering from a stale state. So each write path is driven here and
must move the epoch and name its account (the retention purge, a bulk statement: any account). The
recording is an explicit call, so it happens whatever the process imported (checked in a fresh one).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from consentry.db import Database
from consentry.retention.rules import DEFAULT_RULES
from consentry.retention.service import apply
from consentry.social.changes import EligibilityChange, EligibilityEpoch
from consentry.social.models import Account
from consentry.social.service import (
    create_account,
    deactivate_account,
    delete_account,
    reactivate_account,
)
from tests.conftest import make_account

LONG_AGO = datetime(2001, 1, 1, tzinfo=UTC)


def epoch(database: Database) -> int:
    with database.read() as session:
        return int(session.scalar(select(EligibilityEpoch.version).where(EligibilityEpoch.id == 1)) or 0)


def changed_since(database: Database, version: int) -> list[int | None]:
    with database.read() as session:
        return list(
            session.scalars(
                select(EligibilityChange.account_id)
                .where(EligibilityChange.version > version)
                .order_by(EligibilityChange.id)
            )
        )


def create(database: Database, _ada: int) -> int | None:
    with database.write() as session:
        return create_account(session, handle="bea", country="DE", birth_year=1990).id


def deactivate(database: Database, ada: int) -> int | None:
    with database.write() as session:
        deactivate_account(session, account_id=ada)
    return ada


def reactivate(database: Database, ada: int) -> int | None:
    with database.write() as session:
        deactivate_account(session, account_id=ada)
    with database.write() as session:
        reactivate_account(session, account_id=ada)
    return ada


def delete(database: Database, ada: int) -> int | None:
    with database.write() as session:
        delete_account(session, account_id=ada)
    return ada


def retention_purge(database: Database, ada: int) -> int | None:
    with database.write() as session:
        deactivate_account(session, account_id=ada, at=LONG_AGO)
    report = apply(database, rules=DEFAULT_RULES)
    assert report.outcome("deactivated_accounts").changed["accounts"] == 1
    return None  # a bulk statement: any account


WRITE_PATHS: dict[str, Callable[[Database, int], int | None]] = {
    "create_account": create,
    "deactivate_account": deactivate,
    "reactivate_account": reactivate,
    "delete_account": delete,
    "retention purge": retention_purge,
}


@pytest.mark.parametrize("path", list(WRITE_PATHS))
def test_every_account_write_path_records_its_change(database: Database, path: str) -> None:
    ada, _ = make_account(database, handle="ada", country="US")
    before = epoch(database)
    named = WRITE_PATHS[path](database, ada)
    assert epoch(database) > before, f"{path} changed an account without moving the eligibility epoch"
    assert named in changed_since(database, before), f"{path} did not record account {named}"


def test_an_account_change_is_recorded_in_a_process_that_never_loaded_eligibility(
    database: Database,
) -> None:
    """The write paths record by themselves: a process that imports only the accounts' service (as a
    script or a worker might) records its changes, and never loads the eligibility cache to do it."""
    script = textwrap.dedent(
        """
        import sys

        from sqlalchemy import text

        from consentry.db import Database
        from consentry.social.service import create_account, deactivate_account

        assert "consentry.eligibility.service" not in sys.modules
        database = Database(sys.argv[1])
        epoch = "SELECT coalesce(max(version), 0) FROM eligibility_epoch"
        with database.read() as session:
            before = session.execute(text(epoch)).scalar_one()
        with database.write() as session:
            account = create_account(session, handle="fresh", country="FR", birth_year=1980)
        with database.write() as session:
            deactivate_account(session, account_id=account.id)
        with database.read() as session:
            after = session.execute(text(epoch)).scalar_one()
            named = session.execute(
                text("SELECT account_id FROM eligibility_changes WHERE version > :v"), {"v": before}
            ).scalars().all()
        assert "consentry.eligibility.service" not in sys.modules
        print(after - before, sorted(set(named)) == [account.id])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, database.url], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "True"]


def test_writes_that_bypass_the_write_paths_are_not_recorded_behind_their_back(database: Database) -> None:
    """No ORM listener records account changes: recording is the write paths' explicit duty (so a new
    writer of the evaluated columns must call ``record_account_changes``, as the write paths do)."""
    ada, _ = make_account(database, handle="ada", country="US")
    before = epoch(database)
    with database.write() as session:
        account = session.get(Account, ada)
        assert account is not None
        account.birth_year = 2020
        session.add(Account(handle="raw", created_at=LONG_AGO, country="US", status="active"))
    assert epoch(database) == before
