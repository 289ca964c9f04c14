"""The transparency log's costs, each against a baseline measured in the same run.

1. Consent writes through the group-commit ``ConsentWriter`` (many client threads, as the API does) with
   the log (tree tiles appended in the ledger's transaction, a checkpoint publisher nudged after every
   batch) against the same writes without it (the tree append replaced by a no-op, no publisher), on
   SQLite and PostgreSQL. Target: >= 0.8x.
2. Bulk import of a generated lake's ~1,000,000 consent events with the tree against without (SQLite).
   Target: >= 0.8x.
3. Inclusion and consistency proofs read from the stored tiles of a log of ``--leaves`` leaves (default
   10,000,000), median over random indices and sizes. Target: <= 5 ms each. The tiles are built
   directly from synthetic leaf hashes with the store's own append (``store.append_leaves``), not by
   appending 10M ledger events: proof cost depends only on the tiles, and 10M events would take hours
   to write on a 2-core machine.
4. The monitor's ``--full`` recomputation (``monitor.full_root``) over ``--leaves`` entries served as
   tlog-tiles entry bundles by a plain HTTP file server (the C2SP layout on disk), compared with the
   signed root: ``--connections`` bundles fetched at once against one after another (the baseline).
   Target: <= 60 s.

The load averages at the start and the end are printed with the figures.

    .venv/bin/python -m bench.transparency [--changes 3000] [--runs 3] [--events 1000000]
        [--leaves 10000000] [--postgres URL] [--skip writes,import,proofs,monitor] [--connections 8]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import sqlalchemy as sa

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report
from consentry.config import Settings
from consentry.consent import service
from consentry.consent.importer import import_events
from consentry.consent.writer import ConsentWriter
from consentry.db import Database
from consentry.lake.generate import generate_lake
from consentry.migrate import upgrade
from consentry.social.service import create_account
from consentry.transparency import merkle, monitor, store, tiles
from consentry.transparency.publisher import Publisher
from consentry.transparency.service import LogContext
from consentry.transparency.tiles import ENTRIES, Tile

KEYS = ("assistant_training_posts", "assistant_training_interactions", "assistant_realtime")


@contextlib.contextmanager
def without_tree() -> Iterator[None]:
    """The ledger's tree append replaced by a no-op (the baseline: the same writes without the log)."""
    original = store.plan_append

    def skip(_session: Any, size: int, leaf_hashes: Any, **_: Any) -> store.TileWrites:
        return store.TileWrites(size + len(leaf_hashes) // merkle.HASH_SIZE, [], [], {})

    store.plan_append = skip  # type: ignore[assignment]
    try:
        yield
    finally:
        store.plan_append = original  # type: ignore[assignment]


def spread(samples: list[float]) -> str:
    """Every sample, for the record."""
    return "; ".join(f"{s:,.1f}" for s in samples)


# --- 1. consent writes ---------------------------------------------------------------------------------


def writes_once(
    database: Database, settings: Settings, ids: list[int], *, changes: int, threads: int, log: bool
) -> float:
    ctx = service.ConsentContext.from_settings(settings)
    publisher = Publisher(database, LogContext.from_settings(settings)) if log else None
    writer = ConsentWriter(database, ctx, on_commit=publisher.nudge if publisher else None)
    if publisher:
        publisher.start()
    per_thread = changes // threads

    def work(worker: int) -> None:
        for i in range(per_thread):
            account = ids[(worker * per_thread + i) % len(ids)]
            writer.change(service.ChangeRequest(account, {KEYS[i % 3]: "deny" if i % 2 else "allow"}, "ios"))

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    writer.close()
    if publisher:
        publisher.close()
    return per_thread * threads / elapsed


def bench_writes(
    name: str, databases: tuple[Database, Database], home: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """``databases``: one for the writes with the log, one for those without (each keeps its own tree
    consistent with its own events)."""
    ids = {}
    for arm, database in zip(("log", "none"), databases, strict=True):
        upgrade(database)
        with database.write() as session:
            ids[arm] = [
                create_account(session, handle=f"t{uuid.uuid4().hex[:12]}", country="US", birth_year=1990).id
                for _ in range(500)
            ]
    with_log, without = [], []
    for _ in range(args.runs):  # alternate, so drift in the machine's load hits both arms alike
        settings = Settings(home=home, database_url=databases[0].url, checkpoint_interval_seconds=1)
        with_log.append(
            writes_once(databases[0], settings, ids["log"], changes=args.changes, threads=16, log=True)
        )
        settings = Settings(home=home, database_url=databases[1].url)
        with without_tree():
            without.append(
                writes_once(databases[1], settings, ids["none"], changes=args.changes, threads=16, log=False)
            )
    return {
        f"{name}_writes_with_log_per_s": statistics.median(with_log),
        f"{name}_writes_with_log_samples": spread(with_log),
        f"{name}_writes_without_log_per_s": statistics.median(without),
        f"{name}_writes_without_log_samples": spread(without),
        f"{name}_writes_ratio": statistics.median(with_log) / statistics.median(without),
    }


# --- 2. bulk import ------------------------------------------------------------------------------------


def bench_import(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    lake = tmp / "lake"
    accounts = int(args.events / 1.2)  # the generator writes about 1.2 consent events per account
    generate_lake(lake, accounts=accounts, posts=1000, seed=3)
    events = ds.dataset(lake / "consent_events").count_rows()
    with_tree, without = [], []
    for run in range(args.runs):
        for arm, samples in (("tree", with_tree), ("none", without)):
            database = Database(f"sqlite:///{tmp}/import-{arm}-{run}.db")
            upgrade(database)
            ctx = service.ConsentContext.from_settings(Settings(home=tmp, database_url=database.url))
            guard = without_tree() if arm == "none" else contextlib.nullcontext()
            with guard:
                start = time.perf_counter()
                with database.write() as session:
                    result = import_events(session, lake, ctx=ctx)
                samples.append(result.events / (time.perf_counter() - start))
            database.dispose()
            Path(f"{tmp}/import-{arm}-{run}.db").unlink()
    return {
        "import_events": events,
        "import_with_tree_per_s": statistics.median(with_tree),
        "import_with_tree_samples": spread(with_tree),
        "import_without_tree_per_s": statistics.median(without),
        "import_without_tree_samples": spread(without),
        "import_ratio": statistics.median(with_tree) / statistics.median(without),
    }


# --- 3. proofs on a large log --------------------------------------------------------------------------


def synthetic_entry(index: int) -> bytes:
    """Leaf ``index``'s entry: a small JSON object like an event's canonical form."""
    return b'{"i":%d,"setting":"third_party_sharing","subject":"bench","value":"deny"}' % index


def build_tiles(database: Database, leaves: int, chunk: int = 1 << 16) -> float:
    """Store the tiles of a tree of ``leaves`` synthetic leaves with the store's append; seconds taken."""
    upgrade(database)
    start = time.perf_counter()
    sha256 = hashlib.sha256
    size = 0
    while size < leaves:
        count = min(chunk, leaves - size)
        data = b"".join(sha256(b"\x00" + synthetic_entry(size + i)).digest() for i in range(count))
        with database.write() as session:
            size = store.append_leaves(session, size, data)
    return time.perf_counter() - start


def bench_proofs(database: Database, leaves: int, samples: int = 200) -> dict[str, Any]:
    rng = random.Random(7)
    inclusion, consistency = [], []
    with database.read() as session:
        root = store.root(session, leaves)
        for _ in range(samples):
            index = rng.randrange(leaves)
            start = time.perf_counter()
            proof = merkle.inclusion_proof(leaves, index, store.hash_reader(session, leaves))
            inclusion.append((time.perf_counter() - start) * 1000)
            merkle.verify_inclusion(
                proof, leaves, root, index, merkle.leaf_hash(synthetic_entry(index))
            )  # the proof is right, not only fast
        for _ in range(samples):
            old = rng.randrange(1, leaves)
            start = time.perf_counter()
            proof = merkle.consistency_proof(old, leaves, store.hash_reader(session, leaves))
            consistency.append((time.perf_counter() - start) * 1000)
        old_root = store.root(session, old)
        merkle.verify_consistency(proof, old, old_root, leaves, root)
    inclusion.sort()
    consistency.sort()
    return {
        "proof_leaves": leaves,
        "inclusion_ms_median": statistics.median(inclusion),
        "inclusion_ms_p90": inclusion[int(len(inclusion) * 0.9)],
        "consistency_ms_median": statistics.median(consistency),
        "consistency_ms_p90": consistency[int(len(consistency) * 0.9)],
        "proof_samples": samples,
    }


# --- 4. the monitor's full check -----------------------------------------------------------------------


def write_bundles(folder: Path, leaves: int) -> None:
    """The entry bundles of the synthetic log as files at their tlog-tiles paths."""
    for index in range(tiles.tiles_of(leaves, ENTRIES)):
        width = tiles.tile_width(ENTRIES, index, leaves)
        path = folder / "tlog" / Tile(ENTRIES, index, width).path
        path.parent.mkdir(parents=True, exist_ok=True)
        first = index * tiles.TILE_WIDTH
        path.write_bytes(tiles.entry_bundle(synthetic_entry(first + i) for i in range(width)))


FILE_SERVER = """
import functools, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart (delayed ACK)
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
handler = functools.partial(Handler, directory=sys.argv[2])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"""
"""A plain static file server (the standard library's, keep-alive, Nagle off) in a process of its own."""


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bench_monitor(
    folder: Path, leaves: int, roots: dict[int, bytes], runs: int, workers: int
) -> dict[str, Any]:
    """``monitor.full_root`` with ``workers`` bundles fetched at once (pipelined with the hashing)
    against the same check fetching one bundle after another on one connection (the baseline, over the
    first ``min(leaves, BASELINE_LEAVES)`` leaves so that a 10M-leaf run stays short; compared in
    leaves per second), arms alternating, against a plain file server in a process of its own."""
    port = free_port()
    server = subprocess.Popen(  # a plain file server in a process of its own, as a CDN would be
        [sys.executable, "-c", FILE_SERVER, str(port), str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    baseline = baseline_leaves(leaves)
    arms: dict[tuple[int, int], list[float]] = {(workers, leaves): [], (1, baseline): []}
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise SystemExit("the file server did not start")
            time.sleep(0.1)
        for _ in range(runs):
            for (arm, size), seconds in arms.items():
                client = monitor.LogClient(f"http://127.0.0.1:{port}", connections=arm)
                start = time.perf_counter()
                recomputed = monitor.full_root(client, size, workers=arm)
                seconds.append(time.perf_counter() - start)
                client.http.close()
                if recomputed != roots[size]:
                    raise SystemExit("the monitor's recomputed root differs from the stored tree's")
    finally:
        server.terminate()
        server.wait(timeout=30)
    concurrent, sequential = (
        statistics.median(arms[(workers, leaves)]),
        statistics.median(arms[(1, baseline)]),
    )
    return {
        "monitor_full_leaves": leaves,
        "monitor_full_connections": workers,
        "monitor_full_seconds_median": concurrent,
        "monitor_full_seconds_samples": spread(arms[(workers, leaves)]),
        "monitor_full_leaves_per_s": leaves / concurrent,
        "monitor_sequential_leaves": baseline,
        "monitor_sequential_seconds_median": sequential,
        "monitor_sequential_seconds_samples": spread(arms[(1, baseline)]),
        "monitor_sequential_leaves_per_s": baseline / sequential,
        "monitor_full_speedup": (leaves / concurrent) / (baseline / sequential),
    }


BASELINE_LEAVES = 3_907 * tiles.TILE_WIDTH
"""The sequential baseline's tree: the first 3,907 entry bundles (1,000,192 leaves) at most."""


def baseline_leaves(leaves: int) -> int:
    """The size of the baseline's tree: all of a small log, else a whole number of bundles."""
    return leaves if leaves <= BASELINE_LEAVES else BASELINE_LEAVES


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, for the record."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--leaves", type=int, default=10_000_000)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip", default="", help="comma-separated: writes, import, proofs, monitor")
    parser.add_argument("--connections", type=int, default=monitor.FETCH_WORKERS, help="monitor --full's")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    figures: dict[str, Any] = {"runs": args.runs, "cpus": os.cpu_count(), "load_at_start": load_average()}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if "writes" not in skip:
            figures["writes_changes"] = args.changes
            sqlite = (Database(f"sqlite:///{tmp}/writes-log.db"), Database(f"sqlite:///{tmp}/writes-none.db"))
            figures.update(bench_writes("sqlite", sqlite, tmp / "home-sqlite", args))
            for database in sqlite:
                database.dispose()
            admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            names = [f"consentry_bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
            try:
                with admin.connect() as c:
                    for db_name in names:
                        c.exec_driver_sql(f'CREATE DATABASE "{db_name}"')
                pg = tuple(
                    Database(admin.url.set(database=n).render_as_string(hide_password=False)) for n in names
                )
                figures.update(bench_writes("postgres", (pg[0], pg[1]), tmp / "home-pg", args))
                for database in pg:
                    database.dispose()
            finally:
                with admin.connect() as c:
                    for db_name in names:
                        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
                admin.dispose()
        if "import" not in skip:
            figures.update(bench_import(tmp, args))
        if "proofs" not in skip or "monitor" not in skip:
            big = Database(f"sqlite:///{tmp}/big.db")
            figures["tiles_build_seconds"] = build_tiles(big, args.leaves)
            with big.read() as session:
                roots = {
                    size: store.root(session, size) for size in {args.leaves, baseline_leaves(args.leaves)}
                }
            if "proofs" not in skip:
                figures.update(bench_proofs(big, args.leaves))
            big.dispose()
            if "monitor" not in skip:
                write_bundles(tmp / "files", args.leaves)
                runs = max(1, min(args.runs, 3))
                figures.update(bench_monitor(tmp / "files", args.leaves, roots, runs, args.connections))
    figures["load_at_end"] = load_average()
    figures["target"] = (
        "writes and import >= 0.8x without the log; proofs <= 5 ms median; monitor --full <= 60 s"
    )
    report("transparency", figures)


if __name__ == "__main__":
    main()
