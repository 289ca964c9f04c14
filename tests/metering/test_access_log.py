"""The access log on SQLite and PostgreSQL: appends validated and merged per minute; the batching writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consentry.db import Database
from consentry.errors import Conflict, InvalidInput
from consentry.metering import access_log, damages, service
from consentry.metering.access_log import AccessEvent, AccessLogWriter

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def test_access_log_append_validates_and_merges(database: Database) -> None:
    with database.write() as session:
        org_id = service.create_organisation(session, name="Logged").id
    bad = [
        AccessEvent("org:1", T0, -1),
        AccessEvent("org:1", T0, 2.5),  # type: ignore[arg-type]
        AccessEvent("org:1", T0.replace(tzinfo=None), 1),
        AccessEvent("someone", T0, 1),
    ]
    for event in bad:
        with database.write() as session, pytest.raises(InvalidInput):
            access_log.append_access_log(session, events=[event])
    with database.write() as session:
        written = access_log.append_access_log(
            session,
            events=[
                AccessEvent(f"org:{org_id}", T0 + timedelta(seconds=5), 10, org_id, "/posts", "192.0.2.1"),
                AccessEvent(f"org:{org_id}", T0 + timedelta(seconds=50), 15, org_id, "/posts", "192.0.2.1"),
                AccessEvent(f"org:{org_id}", T0 + timedelta(minutes=1), 1, org_id, "/posts", "192.0.2.1"),
                AccessEvent("org:99999", T0, 4, 99_999, "/posts", "192.0.2.1"),  # unknown id: kept, unlinked
            ],
        )
        assert written == 3
    with database.write() as session, pytest.raises(Conflict):
        service.delete_organisation(session, ref=org_id)


def test_access_log_writer_batches(database: Database) -> None:
    writer = AccessLogWriter(database, interval=0)
    for second in range(30):
        writer.record(
            subject="net:192.0.2.0/24", at=T0 + timedelta(seconds=second * 3), posts=2, client="192.0.2.7"
        )
    assert writer.pending() == 60
    assert writer.flush() == 2  # two minutes
    assert writer.flush() == 0 and writer.pending() == 0
    with database.read() as session:
        statement = service.statement(
            session,
            organisation="net:192.0.2.0/24",
            start=T0,
            end=T0 + timedelta(hours=1),
            terms=damages.Terms(threshold=10),
        )
    assert statement.posts_in_period == 60 and statement.windows[0].posts == 60
    with pytest.raises(InvalidInput):
        writer.record(subject="org:1", at=T0, posts=-2)
    writer.close()
