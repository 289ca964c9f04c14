"""Consent writes on PostgreSQL from 64 concurrent writers, with the ledger in P = 1, 4 and 16 partitions.

Issue 17: one ledger head serialises every writer; partitions by subject key let writers of different
partitions commit side by side. Each writer changes one account's setting at a time (chain, tree,
signed receipt); the writers are spread over several processes (as several API nodes would be). Two
modes: ``direct``, each change in a transaction of its own through ``change_settings`` (API nodes
without group commit), and ``writer``, each change submitted to the node's group-commit
``ConsentWriter`` as the API does (one writer thread per partition, batches of different partitions
committed side by side). The baseline, measured in the same run, is P = 1 of the same mode; every run
ends with ``ledger verify`` of every partition's chain.

    .venv/bin/python -m bench.partitioned_ledger [--writers 64] [--processes 4] [--changes 40] [--runs 3]
        [--modes direct,writer] [--partitions 1,4,16]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

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

SETTING = "third_party_sharing"


def node(
    url: str,
    home: str,
    accounts: list[int],
    threads: int,
    changes: int,
    start: Any,
    mode: str,
    ready: Any,
) -> None:
    """One process ("API node"): ``threads`` writers, each making ``changes`` changes in turn. It says
    when it is ready (imported, connected), waits for the start, and reports when its last writer ends."""
    database = Database(url)
    ctx = service.ConsentContext.from_settings(Settings(home=Path(home), database_url=url))
    group = ConsentWriter(database, ctx)
    with database.read() as session:
        ledger.partition_count(session)  # connected before the clock starts
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        mine = accounts[n::threads]  # each writer speaks for its own account holders
        try:
            for i in range(changes):
                value = "deny" if (i // len(mine)) % 2 == 0 else "allow"
                account = mine[i % len(mine)]
                if mode == "writer":
                    group.change(service.ChangeRequest(account, {SETTING: value}, "api"))
                    continue
                with database.write() as session:
                    service.change_settings(
                        session, account_id=account, changes={SETTING: value}, client="api", ctx=ctx
                    )
        except BaseException as error:
            failures.append(error)
            raise

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    ready.put(None)
    start.wait()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ready.put(time.time())  # the end of this node's writes (the clock of every node is this machine's)
    group.close()
    database.dispose()
    if failures:
        raise SystemExit(f"{len(failures)} writers failed: {failures[0]!r}")


def one_run(
    admin: sa.Engine, home: Path, partitions: int, mode: str, args: argparse.Namespace
) -> tuple[float, bool]:
    """Writes/s of one run on a fresh database with ``partitions`` partitions, and the verify outcome."""
    name = f"consentry_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        database = Database(url)
        upgrade(database)
        with database.write() as session:
            ledger.set_partitions(session, partitions)
            ids = [
                create_account(session, handle=f"w{n}", country="US", birth_year=1990).id
                for n in range(args.accounts)
            ]
        service.ConsentContext.from_settings(Settings(home=home, database_url=url))  # keys made once
        per_node = args.writers // args.processes
        context = multiprocessing.get_context("spawn")
        start, ready = context.Event(), context.Queue()
        nodes = [
            context.Process(
                target=node,
                args=(url, str(home), ids[k :: args.processes], per_node, args.changes, start, mode, ready),
            )
            for k in range(args.processes)
        ]
        for process in nodes:
            process.start()
        for _ in nodes:  # every node imported and connected before the clock starts
            ready.get(timeout=600)
        began = time.time()
        start.set()
        ends = [ready.get(timeout=3600) for _ in nodes]
        for process in nodes:
            process.join()
            if process.exitcode != 0:
                raise SystemExit(f"a writer process failed ({process.exitcode})")
        seconds = max(ends) - began
        with database.read() as session:
            check = ledger.verify(session)
        done = per_node * args.processes * args.changes
        ok = check.ok and check.events == done
        database.dispose()
        return done / seconds, ok
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--changes", type=int, default=40, help="changes per writer")
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", default="1,4,16")
    parser.add_argument("--modes", default="direct,writer", help="direct, writer, or both")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    counts = [int(p) for p in args.partitions.split(",")]
    modes = args.modes.split(",")
    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    rates: dict[tuple[str, int], list[float]] = {(m, p): [] for m in modes for p in counts}
    intact = True
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):  # interleaved, so a noisy moment hurts every mode and P alike
            for mode in modes:
                for partitions in counts:
                    rate, ok = one_run(admin, Path(tmp), partitions, mode, args)
                    rates[mode, partitions].append(rate)
                    intact = intact and ok
                    print(
                        f"{mode}, P = {partitions}: {rate:,.1f} writes/s, chains intact: {ok}",
                        file=sys.stderr,
                        flush=True,
                    )
    admin.dispose()
    figures: dict[str, object] = {
        "writers": args.writers,
        "processes": args.processes,
        "changes_per_run": args.writers // args.processes * args.processes * args.changes,
        "runs": args.runs,
    }
    for mode in modes:
        base = statistics.median(rates[mode, counts[0]])
        for partitions in counts:
            median = statistics.median(rates[mode, partitions])
            figures[f"{mode}_p{partitions}_writes_per_s_median"] = median
            figures[f"{mode}_p{partitions}_samples"] = [round(r) for r in rates[mode, partitions]]
            figures[f"{mode}_p{partitions}_ratio_to_p{counts[0]}"] = median / base
    figures["chains_intact"] = intact
    report("partitioned_ledger", figures)


if __name__ == "__main__":
    main()
