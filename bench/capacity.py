"""Storage and memory figures for the capacity model (docs/scaling.md): lineage bitmaps per release and
the real-time eligibility state per setting, measured on a generated lake.

A lake of ``--accounts`` accounts and ``--posts`` posts (seed 0) is generated, its consent events are
imported into a SQLite ledger and its accounts into the platform's table; then (1) a first-party
``train-ai`` release of the posts is built and its ``lineage/`` files are measured, and (2) the
eligibility cache evaluates every account and its state (sorted ids, one byte per account and setting,
one lookup table per setting asked) is measured, with the Python allocations at its peak (tracemalloc).
The baseline for the bitmaps is the plain list of the released ids (8 bytes each).

    .venv/bin/python -m bench.capacity [--accounts 200000] [--posts 2000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import sqlalchemy as sa

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report
from consentry.config import Settings
from consentry.consent.importer import import_events
from consentry.consent.service import ConsentContext
from consentry.datasets import service as datasets
from consentry.db import Database
from consentry.eligibility.service import ConsentCache
from consentry.lake.generate import generate_lake
from consentry.migrate import upgrade
from consentry.social.models import Account

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def load_accounts(database: Database, lake: Path) -> int:
    """The lake's accounts into the platform's ``accounts`` table (what the eligibility cache reads)."""
    table = pq.read_table(lake / "accounts").rename_columns(
        ["id" if c == "account_id" else c for c in pq.read_table(lake / "accounts").column_names]
    )
    rows = table.to_pylist()
    with database.write() as session:
        for start in range(0, len(rows), 50_000):
            session.execute(sa.insert(Account), rows[start : start + 50_000])
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200_000)
    parser.add_argument("--posts", type=int, default=2_000_000)
    args = parser.parse_args()
    figures: dict[str, object] = {"accounts": args.accounts, "posts": args.posts}
    with tempfile.TemporaryDirectory() as tmp:
        lake = Path(tmp) / "lake"
        generate_lake(lake, accounts=args.accounts, posts=args.posts, seed=0)
        database = Database(f"sqlite:///{tmp}/capacity.db")
        upgrade(database)
        ctx = ConsentContext.from_settings(Settings(home=Path(tmp) / "home", database_url=database.url))
        with database.write() as session:
            figures["consent_events"] = import_events(session, lake, ctx=ctx).events
            datasets.add_recipient(
                session, name="assistant", kind="first_party", purposes=["train-ai"], categories=["posts"]
            )

        # (1) lineage of one release
        out = Path(tmp) / "release"
        started = time.perf_counter()
        release = datasets.build_release(
            database,
            ctx=ctx,
            recipient="assistant",
            purpose="train-ai",
            categories=["posts"],
            lake=lake,
            out=out,
            as_of=AS_OF,
        )
        figures["build_seconds"] = round(time.perf_counter() - started, 2)
        files = {p.name: p.stat().st_size for p in (out / "lineage").iterdir()}
        released = int(release.rows)
        bitmaps = sum(size for name, size in files.items() if name.endswith(".roaring"))
        index = sum(size for name, size in files.items() if name.endswith(".npy"))
        figures["released_records"] = released
        figures["lineage_files"] = files
        figures["bitmap_bytes_per_released_record"] = bitmaps / released
        figures["by_author_index_bytes_per_released_record"] = index / released
        figures["baseline_plain_id_list_bytes_per_record"] = 8
        figures["data_bytes_per_released_record"] = (
            sum(p.stat().st_size for p in (out / "data").rglob("*.parquet")) / released
        )

        # (2) the eligibility state
        figures["accounts_loaded"] = load_accounts(database, lake)
        cache = ConsentCache(database, catalog=ctx.catalog, jurisdictions=ctx.jurisdictions)
        tracemalloc.start()
        state = cache.rebuild()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        accounts = int(state.ids.size)
        keys = len(state.keys)
        query = state.ids.copy()
        for column in range(keys):
            state.mask(query, (column,))
        tables = sum(t.nbytes for t in state._tables.values())
        figures["settings"] = keys
        figures["state_ids_bytes_per_account"] = state.ids.nbytes / accounts
        figures["state_values_bytes_per_account_per_setting"] = state.values.nbytes / accounts / keys
        figures["lookup_table_bytes_per_account_per_setting"] = tables / accounts / keys
        figures["state_bytes_per_account_all_settings_asked"] = (
            state.ids.nbytes + state.values.nbytes + tables
        ) / accounts
        figures["rebuild_peak_python_bytes_per_account"] = peak / accounts
        figures["rebuild_seconds"] = round(cache.stats.last_rebuild_s, 2)
        figures["allowed_share_per_setting"] = [
            round(float(np.mean(state.values[:, k])), 3) for k in range(keys)
        ]
        database.dispose()
    report("capacity", figures)


if __name__ == "__main__":
    main()
