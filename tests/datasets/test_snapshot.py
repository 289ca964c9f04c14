"""What a build reads from the database: bounded by the ledger head its manifest records.

A bulk import carries historic times. If it commits after a build read the ledger head but before
the build read the events, its events pass a bound on ``recorded_at`` alone; the release would then
hold consent that the head in its manifest does not. The interleaving is arranged exactly: right
after the build's read of the ledger head, a real bulk import (``consent.importer``) runs and commits
on its own thread, and only then does the build go on.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from consentry.consent import ledger, reader
from consentry.consent import service as consent_service
from consentry.consent.importer import ImportReport, import_events
from consentry.consent.models import Subject
from consentry.consent.service import ConsentContext
from consentry.datasets import snapshot
from consentry.db import Database
from consentry.lake import schema
from consentry.social.models import Account
from consentry.social.service import create_account, deactivate_account, delete_account
from consentry.transparency import service as tlog_service
from tests.datasets.conftest import CATEGORIES, build, released
from tests.datasets.reference import expected
from tests.datasets.scenario import AS_OF

T = TypeVar("T")
HISTORIC = datetime(2026, 3, 1, 12, tzinfo=UTC)  # before AS_OF: these choices decide the release
LATER = datetime(2026, 10, 1, tzinfo=UTC)
SPARK = {"spark.sql.shuffle.partitions": "2"}
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")

# account_id, setting, value, source: alice (1) and hank (8) opt out of assistant training, carol (3,
# who had no subject key yet) denies third parties
IMPORTED = [
    (1, "assistant_training_posts", "deny", "web"),
    (8, "assistant_training_interactions", "deny", "ios"),
    (3, "third_party_sharing", "deny", "android"),
]


@pytest.fixture
def historic(tmp_path: Path, scenario_lake: Path) -> Path:
    """A lake of choices recorded in the past, for the importer (its ``accounts/`` are the scenario's)."""
    lake = tmp_path / "historic"
    (lake / "consent_events").mkdir(parents=True)
    (lake / "accounts").symlink_to(scenario_lake / "accounts")
    rows = [
        {"account_id": a, "setting": s, "value": v, "source": src, "recorded_at": HISTORIC}
        for a, s, v, src in IMPORTED
    ]
    table = pa.Table.from_pylist(rows, schema=schema.CONSENT_EVENTS.schema)
    pq.write_table(table, lake / "consent_events" / "part-0.parquet")
    return lake


@pytest.fixture
def combined(tmp_path: Path, scenario_lake: Path, historic: Path) -> Path:
    """The scenario lake with the historic choices added: what the ledger holds after the import."""
    lake = tmp_path / "combined"
    lake.mkdir()
    for folder in ("accounts", "posts", "assistant_interactions"):
        (lake / folder).symlink_to(scenario_lake / folder)
    (lake / "consent_events").mkdir()
    (lake / "consent_events" / "a.parquet").symlink_to(scenario_lake / "consent_events" / "part-0.parquet")
    (lake / "consent_events" / "b.parquet").symlink_to(historic / "consent_events" / "part-0.parquet")
    return lake


@contextmanager
def once_the_head_is_read(database: Database, write: Callable[[Session], T]) -> Iterator[list[T]]:
    """Right after the next read of the ledger head, run ``write`` in a write session on another
    thread and commit it; the thread that read the head waits for that commit before it goes on."""
    done: list[T] = []
    errors: list[BaseException] = []
    fired = threading.Event()

    def run() -> None:
        try:
            with database.write() as session:
                done.append(write(session))
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)

    def after_execute(*args: Any) -> None:
        statement = str(args[2])
        # the snapshot's read of the head (seq and hash), not the checkpoint publisher's look at the size
        if fired.is_set() or "ledger_head.hash" not in statement or "FOR UPDATE" in statement.upper():
            return
        fired.set()
        writer = threading.Thread(target=run, name="concurrent-write")
        writer.start()
        writer.join()

    sa.event.listen(database.engine, "after_cursor_execute", after_execute)
    try:
        yield done
    finally:
        sa.event.remove(database.engine, "after_cursor_execute", after_execute)
    if errors:
        raise errors[0]
    assert fired.is_set() and len(done) == 1


@contextmanager
def import_once_the_head_is_read(
    database: Database, ctx: ConsentContext, lake: Path
) -> Iterator[list[ImportReport]]:
    """``once_the_head_is_read`` with a bulk import of ``lake``'s consent events (historic times)."""
    with once_the_head_is_read(database, lambda session: import_events(session, lake, ctx=ctx)) as reports:
        yield reports
    assert reports[0].events == len(IMPORTED)


def contents(out: Path) -> dict[str, Any]:
    """Everything a release says about its records (not its id or times)."""
    manifest = json.loads((out / "manifest.json").read_text())
    removals = out / "removals.parquet"
    return {
        "ledger_head": manifest["consent"]["ledger_head"],
        "events_considered": manifest["consent"]["events_considered"],
        "rows": manifest["rows"],
        "excluded": manifest["excluded"],
        "removals": pq.read_table(removals).to_pylist() if removals.exists() else None,
        **{category: released(out, category).to_pylist() for category in manifest["categories"]},
    }


def eligible(lake: Path, category: str, as_of: datetime) -> set[int]:
    """Record ids the independent reference query finds eligible for the first party."""
    setting = {
        "posts": "assistant_training_posts",
        "assistant_interactions": "assistant_training_interactions",
    }
    reasons, _ = expected(lake, category=category, settings=[setting[category]], as_of=as_of)
    return {record for record, reason in reasons.items() if reason is None}


def by_seq(table: pa.Table) -> pa.Table:
    return table.sort_by("seq")


def ids(out: Path, category: str) -> set[int]:
    return set(released(out, category)["id"].to_pylist())


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_a_build_holds_exactly_what_the_head_it_records_implies(
    scenario: Database,
    ctx: ConsentContext,
    scenario_lake: Path,
    historic: Path,
    combined: Path,
    tmp_path: Path,
    engine: str,
) -> None:
    options: dict[str, Any] = {"engine": engine, "engine_options": SPARK if engine == "spark" else {}}
    before = tmp_path / "before"
    build(scenario, ctx, scenario_lake, before, categories=CATEGORIES, **options)
    with import_once_the_head_is_read(scenario, ctx, historic) as reports:
        build(scenario, ctx, scenario_lake, tmp_path / "raced", categories=CATEGORIES, **options)
    after = tmp_path / "after"
    build(scenario, ctx, scenario_lake, after, categories=CATEGORIES, **options)

    raced = contents(tmp_path / "raced")
    assert raced["ledger_head"]["seq"] < reports[0].head_seq  # the head was read before the import
    assert raced == contents(before)  # the same head: the same release
    for category in CATEGORIES:  # and both are what the ledger up to that head implies
        assert ids(tmp_path / "raced", category) == eligible(scenario_lake, category, AS_OF)
        assert ids(after, category) == eligible(combined, category, AS_OF)
    # the import did matter: a release naming the new head leaves alice's posts and hank's chat out
    assert contents(after)["ledger_head"] == {"seq": reports[0].head_seq, "hash": reports[0].head_hash}
    assert {101, 106} <= ids(before, "posts") and not {101, 106} & ids(after, "posts")
    assert 6 in ids(before, "assistant_interactions") and 6 not in ids(after, "assistant_interactions")


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_an_incremental_build_holds_exactly_what_the_head_it_records_implies(
    scenario: Database,
    ctx: ConsentContext,
    scenario_lake: Path,
    historic: Path,
    tmp_path: Path,
    engine: str,
) -> None:
    options: dict[str, Any] = {"engine": engine, "engine_options": SPARK if engine == "spark" else {}}
    first = build(scenario, ctx, scenario_lake, tmp_path / "first", categories=CATEGORIES, **options)
    increment = {"categories": CATEGORIES, "as_of": LATER, "since_release": first.id, **options}
    build(scenario, ctx, scenario_lake, tmp_path / "before", **increment)
    with import_once_the_head_is_read(scenario, ctx, historic) as reports:
        build(scenario, ctx, scenario_lake, tmp_path / "raced", **increment)
    build(scenario, ctx, scenario_lake, tmp_path / "after", **increment)

    raced, before, after = (contents(tmp_path / name) for name in ("raced", "before", "after"))
    assert raced["ledger_head"]["seq"] < reports[0].head_seq
    assert raced == before
    withdrawn = {(r["category"], r["id"]): r["reason"] for r in after["removals"]}
    assert withdrawn[("posts", 101)] == withdrawn[("assistant_interactions", 6)] == "opted_out"
    assert ("posts", 101) not in {(r["category"], r["id"]) for r in raced["removals"]}


def test_subject_mappings_are_read_in_the_snapshot_of_the_head(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    # frank (6) denied assistant training of his posts; deleting his account deletes his subject
    # mapping, after which his events name nobody. Deleted after the build read the head, the mapping
    # is still there for the build: the events and the mappings are of one moment.
    before = tmp_path / "before"
    build(scenario, ctx, scenario_lake, before, categories=CATEGORIES)
    with once_the_head_is_read(
        scenario, lambda s: s.execute(sa.delete(Subject).where(Subject.account_id == 6))
    ):
        build(scenario, ctx, scenario_lake, tmp_path / "raced", categories=CATEGORIES)
    assert contents(tmp_path / "raced") == contents(before)
    assert 601 not in ids(tmp_path / "raced", "posts")
    # the removal counts from the next build on. Here only the mapping is removed, by hand, and the
    # database has no account row saying frank is gone, so his post falls back to the default (allow);
    # a real deletion marks the account too (test_an_account_deleted_since_the_lake_was_exported_stays_out)
    after = tmp_path / "after"
    build(scenario, ctx, scenario_lake, after, categories=CATEGORIES)
    assert contents(after)["ledger_head"] == contents(before)["ledger_head"]
    assert 601 in ids(after, "posts")


def test_events_are_bounded_by_the_head_as_well_as_by_time(
    scenario: Database, ctx: ConsentContext, historic: Path
) -> None:
    settings = list(ctx.catalog.keys)
    with scenario.read() as session:
        held = reader.events(session, upto=reader.position(session), settings=settings, until=AS_OF)
    head = snapshot.read_snapshot(scenario, settings=settings, as_of=AS_OF)
    assert by_seq(head.events).equals(by_seq(held)) and head.events_considered == held.num_rows
    with scenario.write() as session:
        report = import_events(session, historic, ctx=ctx)
    with scenario.read() as session:
        bounded = reader.events(
            session, upto=reader.Position((head.head_seq,)), settings=settings, until=AS_OF
        )
        unbounded = reader.events(session, upto=reader.position(session), settings=settings, until=AS_OF)
    assert by_seq(bounded).equals(by_seq(held))
    assert unbounded.num_rows == held.num_rows + len(IMPORTED)  # every imported time is before AS_OF
    now = snapshot.read_snapshot(scenario, settings=settings, as_of=AS_OF)
    assert (now.head_seq, now.head_hash) == (report.head_seq, report.head_hash)
    assert now.events.num_rows == unbounded.num_rows


def test_ledger_events_match_the_consent_service(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path
) -> None:
    with scenario.write() as session:
        account = create_account(session, handle="zed", country="US", birth_year=1990, account_id=99)
        consent_service.change_settings(
            session,
            account_id=account.id,
            changes={"third_party_sharing": "deny"},
            client="web",
            ctx=ctx,
            at=datetime(2026, 4, 1, tzinfo=UTC),
        )
        # deleting an account deletes its subject mapping: frank's events become anonymous
        session.execute(sa.delete(Subject).where(Subject.account_id == 6))
    with scenario.read() as session:
        reference = consent_service.events_table(session, until=AS_OF)
        mine = reader.events(
            session, upto=reader.position(session), settings=list(ctx.catalog.keys), until=AS_OF
        )

    def rows(table: pa.Table) -> list[tuple[object, ...]]:
        return sorted(tuple(row.values()) for row in table.to_pylist())

    assert rows(mine) == rows(reference)
    assert 6 not in set(mine["account_id"].to_pylist())
    assert 99 in set(mine["account_id"].to_pylist())


def frank_in_the_database(database: Database) -> None:
    """Frank (6), as the platform's own accounts table holds him (the scenario's lake lists him too; the
    ledger import created his row from it, since his events name him)."""
    with database.write() as session:
        if session.get(Account, 6) is not None:
            return
        create_account(
            session,
            handle="frank",
            country="US",
            birth_year=1975,
            account_id=6,
            created_at=datetime(2025, 1, 1, tzinfo=UTC),
        )


def test_an_account_deleted_since_the_lake_was_exported_stays_out(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    # the lake was exported before frank deleted his account and still lists him as active; his
    # subject mapping is gone, so his events name nobody: the build must not fall back to a default
    frank_in_the_database(scenario)
    before = tmp_path / "before"
    build(scenario, ctx, scenario_lake, before, categories=CATEGORIES)
    assert 4 in ids(before, "assistant_interactions")  # he denied only the training of his posts
    with scenario.write() as session:
        delete_account(session, account_id=6)
    after = tmp_path / "after"
    build(scenario, ctx, scenario_lake, after, categories=CATEGORIES)
    assert 601 not in ids(after, "posts")
    assert 4 not in ids(after, "assistant_interactions")
    # nothing else moved
    assert ids(after, "posts") == ids(before, "posts")
    assert ids(after, "assistant_interactions") == ids(before, "assistant_interactions") - {4}


def test_an_account_deactivated_since_the_lake_was_exported_stays_out_from_then_on(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    # deactivated (mapping kept) after the lake's export: the database's status is the newer fact
    frank_in_the_database(scenario)
    with scenario.write() as session:
        deactivate_account(session, account_id=6, at=datetime(2026, 5, 1, tzinfo=UTC))
    build(scenario, ctx, scenario_lake, tmp_path / "now", categories=CATEGORIES)
    assert 4 not in ids(tmp_path / "now", "assistant_interactions")
    # a build as of a moment before the deactivation still sees him active, with his choices
    earlier = datetime(2026, 4, 1, tzinfo=UTC)
    build(scenario, ctx, scenario_lake, tmp_path / "earlier", categories=CATEGORIES, as_of=earlier)
    assert 4 in ids(tmp_path / "earlier", "assistant_interactions")
    assert 601 not in ids(tmp_path / "earlier", "posts")


def test_a_partitioned_ledger_is_read_whole_and_every_head_recorded(
    database: Database, ctx: ConsentContext
) -> None:
    with database.write() as session:
        ledger.set_partitions(session, 4)
        ids = [create_account(session, handle=f"p{n}", country="US", birth_year=1990).id for n in range(16)]
    for n, account_id in enumerate(ids):
        with database.write() as session:
            consent_service.change_settings(
                session,
                account_id=account_id,
                changes={"third_party_sharing": "deny" if n % 2 else "allow"},
                client="web",
                ctx=ctx,
                at=datetime(2026, 4, 1, tzinfo=UTC),
            )
    settings = list(ctx.catalog.keys)
    read = snapshot.read_snapshot(database, settings=settings, as_of=AS_OF)
    with database.read() as session:
        heads = ledger.heads(session)
        reference = consent_service.events_table(session, until=AS_OF)
    assert len({h.partition for h in heads if h.seq}) > 1  # the events really are spread
    assert read.events.num_rows == reference.num_rows == 16
    assert read.head["partitions"] == [{"seq": h.seq, "hash": h.hash} for h in heads]
    assert read.head["seq"] == max(h.seq for h in heads)


def test_a_partitioned_ledger_is_read_exactly_up_to_the_cited_checkpoint(
    database: Database, ctx: ConsentContext
) -> None:
    # a build cites the latest checkpoint; events written after it was signed (in any partition) are
    # not what it commits to, so the build must not read them, and the heads it records are the ones
    # the checkpoint's partition state names
    assert ctx.log is not None
    with database.write() as session:
        ledger.set_partitions(session, 4)
        ids = [create_account(session, handle=f"c{n}", country="US", birth_year=1990).id for n in range(12)]

    def change(account_id: int, value: str) -> None:
        with database.write() as session:
            consent_service.change_settings(
                session,
                account_id=account_id,
                changes={"third_party_sharing": value},
                client="web",
                ctx=ctx,
                at=datetime(2026, 4, 1, tzinfo=UTC),
            )

    for account_id in ids:
        change(account_id, "deny")
    with database.write() as session:
        assert tlog_service.make_checkpoint(session, log=ctx.log, force=True) is not None
        at_checkpoint = ledger.heads(session)
    for account_id in ids[:6]:  # after the checkpoint: every partition that has them moves on
        change(account_id, "allow")
    settings = list(ctx.catalog.keys)
    read = snapshot.read_snapshot(database, settings=settings, as_of=AS_OF, log_key=ctx.log.signer.vkey)
    assert read.checkpoint is not None and read.checkpoint["size"] == 1
    assert read.events.num_rows == read.events_considered == 12
    assert set(read.events["value"].to_pylist()) == {"deny"}
    assert read.head["partitions"] == [{"seq": h.seq, "hash": h.hash} for h in at_checkpoint]
    assert read.head["seq"] == max(h.seq for h in at_checkpoint)
    # without the log the snapshot is the ledger as it is now
    now = snapshot.read_snapshot(database, settings=settings, as_of=AS_OF)
    assert now.events.num_rows == 18
