"""Revocations and the data-usage report against 1,000 releases that each hold 1,000,000 authors.

Targets (partners and transparency issues): one opt-out creates its revocations (lineage lookups, rows,
outbox messages, commit) in <= 1 s; an account's data-usage report over those releases in <= 50 ms.
Baseline in the same run: finding the author's records by scanning each release's (author, record) pairs
in full, as a lookup without the bitmaps and sorted index would (measured on a sample of releases and
scaled to all of them).

The releases share one set of lineage files through hard links (each release is still loaded and cached
separately, as in production, but the disk holds one copy).

    .venv/bin/python bench/revocations.py [--releases 1000] [--authors 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import insert

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median_seconds, report
from consentry.consent.catalog import load_catalog
from consentry.datasets import lineage
from consentry.datasets.models import Recipient, Release
from consentry.db import Database
from consentry.migrate import upgrade
from consentry.partners.revocations import CACHE, revoke_accounts
from consentry.partners.usage import data_usage

AT = datetime(2026, 11, 1, tzinfo=UTC)
RECORDS_PER_AUTHOR = 2
RECIPIENTS = 10


def write_lineage(folder: Path, authors: np.ndarray) -> None:
    """Lineage of a posts release holding ``RECORDS_PER_AUTHOR`` records of each author."""
    author_ids = np.repeat(authors, RECORDS_PER_AUTHOR)
    record_ids = np.arange(author_ids.size, dtype=np.int64) * 7 + 1
    lineage.write_bitmap(lineage.authors_path(folder, "posts"), lineage.bitmap_of(authors))
    lineage.write_bitmap(lineage.records_path(folder, "posts"), lineage.bitmap_of(record_ids))
    lineage.write_by_author(
        lineage.by_author_path(folder, "posts"), author_ids=author_ids, record_ids=record_ids
    )


def seed(database: Database, root: Path, *, releases: int, authors: np.ndarray) -> None:
    """One lineage folder hard-linked into ``releases`` release folders, and their database rows."""
    source = root / "lineage-source"
    write_lineage(source, authors)
    files = sorted((source / lineage.LINEAGE).iterdir())
    rows = []
    for index in range(releases):
        folder = root / f"release-{index:04d}"
        (folder / lineage.LINEAGE).mkdir(parents=True)
        for file in files:
            os.link(file, folder / lineage.LINEAGE / file.name)
        rows.append(
            {
                "id": f"rel-{index:04d}",
                "recipient_id": index % RECIPIENTS + 1,
                "purpose": "train-ai",
                "categories": ["posts"],
                "as_of": AT,
                "engine": "duckdb",
                "status": "published",
                "path": str(folder),
                "manifest_sha256": "0" * 64,
                "rows": int(authors.size * RECORDS_PER_AUTHOR),
                "excluded": 0,
                "removals": 0,
                "created_at": AT + timedelta(minutes=index),
            }
        )
    with database.write() as session:
        session.execute(
            insert(Recipient),
            [
                {
                    "id": i + 1,
                    "name": f"partner-{i}",
                    "kind": "third_party",
                    "purposes": ["train-ai"],
                    "categories": ["posts"],
                    "secret": "s" * 64,
                    "created_at": AT,
                    "status": "active",
                    "deletion_deadline_hours": 72,
                    "webhook_url": f"https://partner-{i}.example/hooks",
                    "webhook_secret": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY",
                }
                for i in range(RECIPIENTS)
            ],
        )
        session.execute(insert(Release), rows)


def anon_rss_mib() -> float:
    """Private memory now (``RssAnon``): the mapped lineage files are shared page cache, not counted."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=1000)
    parser.add_argument("--authors", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sample", type=int, default=10, help="releases scanned by the baseline")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    authors = np.sort(rng.choice(args.authors * 5, size=args.authors, replace=False)).astype(np.int64)
    setting = load_catalog().get("third_party_sharing")
    with tempfile.TemporaryDirectory(prefix="consentry-bench-revocations-") as tmp:
        root = Path(tmp)
        database = Database(f"sqlite:///{root / 'bench.db'}")
        upgrade(database)
        started = time.perf_counter()
        seed(database, root, releases=args.releases, authors=authors)
        seeded = time.perf_counter() - started

        CACHE.clear()
        started = time.perf_counter()
        with database.read() as session:
            data_usage(session, account_id=int(authors[0]))
        cold = time.perf_counter() - started

        picks = iter(rng.choice(authors, size=args.runs * 50, replace=False).tolist())

        def usage_once() -> None:
            with database.read() as session:
                found = data_usage(session, account_id=next(picks))
            assert len(found) == args.releases

        usage, _ = median_seconds(usage_once, args.runs * 4)

        def opt_out_once() -> None:
            with database.write() as session:
                created = revoke_accounts(
                    session, account_ids=[next(picks)], reason="opt_out", setting=setting, at=AT
                )
            assert len(created) == args.releases

        revoke, samples = median_seconds(opt_out_once, args.runs)

        def scan_once() -> None:
            author = next(picks)
            for index in range(args.sample):
                path = lineage.by_author_path(root / f"release-{index:04d}", "posts")
                pairs = np.load(path)
                records = pairs[pairs[:, 0] == author, 1]
                assert records.size == RECORDS_PER_AUTHOR

        scan, _ = median_seconds(scan_once, args.runs)
        baseline = scan * args.releases / args.sample
        report(
            "revocations",
            {
                "releases": args.releases,
                "authors_per_release": args.authors,
                "seed_s": seeded,
                "cold_lineage_load_s": cold,
                "opt_out_revocations_s": revoke,
                "opt_out_samples_s": [round(s, 3) for s in samples],
                "data_usage_ms": usage * 1000,
                "baseline_scan_s": baseline,
                "speedup_vs_scan": baseline / revoke,
                "anon_rss_mib": anon_rss_mib(),
            },
        )


if __name__ == "__main__":
    main()
