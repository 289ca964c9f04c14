"""Signing checkpoints: two signers at once (API workers, a CLI write, the publisher thread) sign one
checkpoint per size, never fail on each other. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from consentry.config import Settings
from consentry.db import Database
from consentry.transparency import service
from consentry.transparency.service import LogContext
from tests.transparency.test_audit import fill


def test_two_signers_at_once_sign_one_checkpoint_of_a_size(database: Database, settings: Settings) -> None:
    log = LogContext.from_settings(settings)
    fill(database, 12)
    second: list[object] = []
    errors: list[BaseException] = []

    def other_signer() -> None:
        try:
            with database.write() as session:
                second.append(service.make_checkpoint(session, log=log, force=True))
        except BaseException as error:  # re-raised below, in the test's thread
            errors.append(error)

    with database.write() as session:
        first = service.make_checkpoint(session, log=log, force=True)
        assert first is not None and first.size == 12
        # the other signer starts while this one's checkpoint is not yet committed
        thread = threading.Thread(target=other_signer)
        thread.start()
        thread.join(timeout=1.0)
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert errors == []
    assert second == [None]  # the tree did not grow since: nothing more to sign
    with database.read() as session:
        assert session.scalar(sa.text("SELECT count(*) FROM tlog_checkpoints")) == 1
