"""Bulk import of 1,000,000 consent events into the ledger on SQLite, chain verified afterwards.

Target (issue 3): >= 100,000 events/s. The floor, measured in the same run, is a bare executemany
INSERT of the same number of rows (no hashing, no subject keys, no policy lookup) into the same database.

    .venv/bin/python -m bench.ledger_import [--events 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds
import sqlalchemy as sa

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report
from consentry.config import Settings
from consentry.consent import ledger
from consentry.consent.importer import import_events
from consentry.consent.service import ConsentContext
from consentry.db import Database
from consentry.lake.generate import generate_lake
from consentry.migrate import upgrade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lake = Path(tmp) / "lake"
        accounts = int(args.events / 1.2)  # the generator writes about 1.2 consent events per account
        generate_lake(lake, accounts=accounts, posts=accounts, seed=3)
        events = ds.dataset(lake / "consent_events").count_rows()
        rates, floors, verified = [], [], []
        for run in range(args.runs):
            database = Database(f"sqlite:///{tmp}/run{run}.db")
            upgrade(database)
            ctx = ConsentContext.from_settings(Settings(home=Path(tmp), database_url=database.url))
            start = time.perf_counter()
            with database.write() as session:
                result = import_events(session, lake, ctx=ctx)
            rates.append(result.events / (time.perf_counter() - start))
            with database.read() as session:
                verified.append(ledger.verify(session).ok)
            table = ds.dataset(lake / "consent_events").to_table()
            rows = [
                {"a": a, "s": s, "v": v, "src": src, "t": t.replace(tzinfo=None)}
                for a, s, v, src, t in zip(*(table[c].to_pylist() for c in table.column_names), strict=True)
            ]
            with database.write() as session:
                session.execute(
                    sa.text("CREATE TABLE floor (a BIGINT, s TEXT, v TEXT, src TEXT, t TIMESTAMP)")
                )
            start = time.perf_counter()
            with database.write() as session:
                session.execute(sa.text("INSERT INTO floor VALUES (:a, :s, :v, :src, :t)"), rows)
            floors.append(len(rows) / (time.perf_counter() - start))
            database.dispose()
    report(
        "ledger_import",
        {
            "events": events,
            "runs": args.runs,
            "import_events_per_s_median": statistics.median(rates),
            "import_samples": [round(r) for r in rates],
            "floor_rows_per_s_median": statistics.median(floors),
            "ratio_to_floor": statistics.median(rates) / statistics.median(floors),
            "chain_intact": all(verified),
            "target": ">= 100,000 events/s on SQLite, chain intact",
        },
    )


if __name__ == "__main__":
    main()
