"""Consent writes through the service layer (hash chain, tree, receipts), on SQLite and PostgreSQL.

Targets: >= 1,000 changes/s on SQLite and >= 2,000/s on PostgreSQL (issue 2); >= 2,500 single-setting
changes/s on PostgreSQL from 32 writers through the group-commit writer (issue 16); the chain intact
afterwards. The baseline, measured in the same run, is a bare INSERT of the same number of rows in the
same transaction pattern, without chain, lock, tree or receipt: the ratio is the cost of the ledger
over the floor of the database itself. "direct" shapes run ``change_settings`` in one transaction per
call; "writer" shapes submit from many client threads to the group-commit ``ConsentWriter``, as the
API does. Each change appends to the transparency tree in its transaction and returns a signed receipt.

    .venv/bin/python bench/consent_writes.py [--changes 4000] [--runs 3] [--postgres URL]
        [--databases sqlite,postgres] [--shapes direct:1:1,writer:32:1,...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report
from consentry.config import Settings
from consentry.consent import ledger, service
from consentry.consent.writer import ConsentWriter
from consentry.db import Database
from consentry.migrate import upgrade
from consentry.social.service import create_account

TARGET = (
    "sqlite >= 1000 changes/s; postgres >= 2000 changes/s (threads or batches), >= 2500 single-setting "
    "changes/s from 32 writers through the group-commit writer; chain intact"
)
KEYS = (
    "assistant_training_posts",
    "assistant_training_interactions",
    "assistant_realtime",
    "third_party_sharing",
)


def prepare(database: Database, accounts: int) -> list[int]:
    upgrade(database)
    with database.write() as session:
        session.execute(
            sa.text("CREATE TABLE IF NOT EXISTS bench_floor (id BIGINT, account BIGINT, v VARCHAR(8))")
        )
        return [
            create_account(session, handle=f"bench{uuid.uuid4().hex[:12]}", country="US", birth_year=1990).id
            for _ in range(accounts)
        ]


def run_threads(threads: int, work: Callable[[int], None]) -> float:
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def measure(
    database: Database,
    ctx: service.ConsentContext,
    ids: list[int],
    *,
    changes: int,
    threads: int,
    batch: int,
    group_commit: bool,
) -> tuple[float, float]:
    """Changes/s through the service layer and rows/s of the bare-INSERT floor, same pattern.

    With ``group_commit`` the client threads submit to a ``ConsentWriter`` (what the API does); without,
    each thread runs ``change_settings`` in a transaction of its own.
    """
    calls = changes // batch
    per_thread = calls // threads
    writer = ConsentWriter(database, ctx)

    def ledger_work(worker: int) -> None:
        for i in range(per_thread):
            account = ids[(worker * per_thread + i) % len(ids)]
            choice = {k: "deny" if i % 2 else "allow" for k in KEYS[:batch]}
            if group_commit:
                writer.change(service.ChangeRequest(account, choice, "ios"))
                continue
            with database.write() as session:
                service.change_settings(session, account_id=account, changes=choice, client="ios", ctx=ctx)

    def floor_work(worker: int) -> None:
        for i in range(per_thread):
            with database.write() as session:
                session.execute(
                    sa.text("INSERT INTO bench_floor VALUES (:i, :a, :v)"),
                    [{"i": i, "a": worker, "v": "deny"} for _ in range(batch)],
                )

    done = per_thread * threads * batch
    rate = done / run_threads(threads, ledger_work)
    writer.close()
    return rate, done / run_threads(threads, floor_work)


def bench_database(
    name: str, database: Database, home: Path, changes: int, runs: int, shapes: list[tuple[int, int, bool]]
) -> dict[str, object]:
    ctx = service.ConsentContext.from_settings(Settings(home=home, database_url=database.url))
    ids = prepare(database, 500)
    figures: dict[str, object] = {}
    for threads, batch, group in shapes:
        rates, floors = [], []
        for _ in range(runs):
            rate, floor = measure(
                database, ctx, ids, changes=changes, threads=threads, batch=batch, group_commit=group
            )
            rates.append(rate)
            floors.append(floor)
        label = f"{name}_{'writer' if group else 'direct'}_threads{threads}_batch{batch}"
        figures[f"{label}_changes_per_s"] = statistics.median(rates)
        figures[f"{label}_floor_rows_per_s"] = statistics.median(floors)
        figures[f"{label}_ratio_to_floor"] = statistics.median(rates) / statistics.median(floors)
        direct = figures.get(f"{name}_direct_threads1_batch{batch}_changes_per_s")
        if group and isinstance(direct, float):  # group commit against one caller writing alone
            figures[f"{label}_ratio_to_direct"] = statistics.median(rates) / direct
    with database.read() as session:
        check = ledger.verify(session)
    figures[f"{name}_chain_intact"] = check.ok
    figures[f"{name}_events"] = check.events
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument(
        "--shapes",
        default="direct:1:1,direct:1:4,writer:8:1,writer:32:1,writer:32:4",
        help="comma-separated MODE:THREADS:SETTINGS_PER_CHANGE, MODE direct or writer",
    )
    args = parser.parse_args()
    shapes = [
        (int(threads), int(batch), mode == "writer")
        for mode, threads, batch in (shape.split(":") for shape in args.shapes.split(","))
    ]
    databases = args.databases.split(",")
    figures: dict[str, object] = {"changes_per_shape": args.changes, "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in databases:
            sqlite = Database(f"sqlite:///{tmp}/bench.db")
            figures.update(bench_database("sqlite", sqlite, Path(tmp), args.changes, args.runs, shapes))
            sqlite.dispose()
        if "postgres" not in databases:
            figures["target"] = TARGET
            report("consent_writes", figures)
            return
        admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        name = f"consentry_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            pg = Database(admin.url.set(database=name).render_as_string(hide_password=False))
            figures.update(bench_database("postgres", pg, Path(tmp), args.changes, args.runs, shapes))
            pg.dispose()
        finally:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
    figures["target"] = TARGET
    report("consent_writes", figures)


if __name__ == "__main__":
    main()
