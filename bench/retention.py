"""Benchmark: retention plans over the 10M-post lake, and retention runs on the database.

Targets: ``retention plan`` over the 10M-post / 1M-account generated lake (seed 0) <= 30 s; ``retention
apply`` on the database >= 50,000 rows removed per second.

Plan: ``plan_lake`` with the default rules and three legal holds, against the baseline of a plain DuckDB
scan of the same folders and columns (``count(*)`` and ``count(deleted_at)`` per folder, no rule logic).
The lake is made once in ``--cache`` (shared with ``bench/dataset_build.py``).

Apply: a database is seeded once with bulk ``INSERT ... SELECT`` over a number series: ``--rows``
purgeable rows (posts deleted long ago, likes of them, deleted assistant interactions, old access-log
rows, and the posts, interactions and follows of deactivated accounts) beside as many rows that the
rules keep. Each measurement runs on a fresh copy of it (a file copy on SQLite, ``CREATE DATABASE ...
TEMPLATE`` on PostgreSQL): ``retention apply`` (50,000-row batches, revocations looked up, run recorded)
against the baseline of plain ``DELETE`` statements removing the same rows in one transaction. Runs
alternate; medians of ``--runs``.

    .venv/bin/python bench/retention.py                               # lake plan + SQLite apply
    .venv/bin/python bench/retention.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/retention.py --rows 200000 --runs 1 --no-lake
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report

AT = datetime(2026, 11, 1, tzinfo=UTC)
PLAN_TARGET_SECONDS = 30.0
APPLY_TARGET_ROWS = 50_000.0
HELD = [1, 2, 3]


# --- the lake plan ----------------------------------------------------------------------------------


def lake_path(cache: Path) -> Path:
    """The 10M-post lake, generated once (seed 0)."""
    from consentry.lake.generate import generate_lake

    lake = cache / "lake-10m"
    if not lake.exists():
        print("generating the 10M-post lake (once) ...", flush=True)
        generate_lake(lake, accounts=1_000_000, posts=10_000_000, seed=0)
    return lake


def plan_once(lake: Path) -> float:
    from consentry.retention.rules import DEFAULT_RULES
    from consentry.retention.service import plan_lake

    started = time.perf_counter()
    plan = plan_lake(lake, rules=DEFAULT_RULES, at=AT, held=HELD)
    seconds = time.perf_counter() - started
    assert plan.total > 0
    return seconds


def scan_once(lake: Path) -> float:
    """The baseline: DuckDB reads the same folders and columns and counts, with no rule logic."""
    import duckdb

    from consentry.lake.check import _parquet_files

    columns = {
        "accounts": "count(*), count(status_changed_at)",
        "posts": "count(*), count(deleted_at), count(created_at), count(author_id), count(post_id)",
        "assistant_interactions": "count(*), count(deleted_at), count(created_at), count(account_id)",
        "follows": "count(*), count(follower_id), count(followee_id)",
        "blocks": "count(*), count(blocker_id), count(blocked_id)",
        "consent_events": "count(*)",
    }
    started = time.perf_counter()
    connection = duckdb.connect(":memory:")
    for folder, aggregates in columns.items():
        listed = ", ".join(f"'{f}'" for f in _parquet_files(lake / folder))
        connection.execute(f"SELECT {aggregates} FROM read_parquet([{listed}])").fetchall()
    connection.close()
    return time.perf_counter() - started


# --- the database run -------------------------------------------------------------------------------


def _series(dialect: str, n: int) -> str:
    """A FROM item ``s`` with one column ``i`` counting from 1 to ``n``."""
    if dialect == "sqlite":
        counter = f"WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n})"
        return f"({counter} SELECT i FROM c) AS s"
    return f"generate_series(1, {n}) AS s(i)"


def _ts(dialect: str, text: str) -> str:
    """A timestamp literal as SQLAlchemy stores ``UTCDateTime`` (naive UTC, microseconds)."""
    return f"'{text}.000000'" if dialect == "sqlite" else f"TIMESTAMP '{text}'"


def seed(database: Any, rows: int) -> dict[str, int]:
    """``rows`` purgeable rows and as many kept ones; returns the purgeable count per table."""
    from sqlalchemy import text

    d = database.dialect
    old, recent, long_ago, created = (
        _ts(d, "2020-01-01 00:00:00"),
        _ts(d, "2026-10-25 00:00:00"),
        _ts(d, "2024-01-01 00:00:00"),
        _ts(d, "2019-06-01 00:00:00"),
    )
    accounts, deactivated = 20_000, 1_000
    deleted_posts, likes = int(rows * 0.35), int(rows * 0.15)
    chats, log = int(rows * 0.15), int(rows * 0.2)
    their_posts, their_chats = int(rows * 0.1), int(rows * 0.03)
    follows = rows - deleted_posts - likes - chats - log - their_posts - their_chats
    kept_posts, kept_chats, kept_log = rows // 2, rows // 5, rows // 4
    account_id = "CAST(i AS BIGINT)" if d == "postgresql" else "i"

    def run(sql: str) -> None:
        with database.write() as session:
            session.execute(text(sql))

    x = "i"
    run(
        "INSERT INTO accounts (id, handle, created_at, country, birth_year, protected, status, "
        "status_changed_at) "
        f"SELECT {account_id}, 'user' || {x}, {created}, 'US', 1990, false, "
        f"CASE WHEN {x} <= {deactivated} THEN 'deactivated' ELSE 'active' END, "
        f"CASE WHEN {x} <= {deactivated} THEN {long_ago} ELSE NULL END FROM {_series(d, accounts)}"
    )
    # posts: deleted long ago (1..), of deactivated accounts, then live ones that stay
    live = f"{deactivated} + 1 + ({x} % {accounts - deactivated})"
    run(
        "INSERT INTO posts (id, author_id, created_at, text, visibility, media, deleted_at) "
        f"SELECT {x}, {live}, {created}, 'deleted post ' || {x}, 'public', 'none', {old} "
        f"FROM {_series(d, deleted_posts)}"
    )
    run(
        "INSERT INTO posts (id, author_id, created_at, text, visibility, media, deleted_at) "
        f"SELECT {deleted_posts} + {x}, 1 + ({x} % {deactivated}), {created}, 'their post ' || {x}, "
        f"'public', 'none', NULL FROM {_series(d, their_posts)}"
    )
    first_kept = deleted_posts + their_posts + 1
    run(
        "INSERT INTO posts (id, author_id, created_at, text, visibility, media, deleted_at) "
        f"SELECT {first_kept - 1} + {x}, {live}, {created}, 'live post ' || {x}, 'public', 'none', "
        f"CASE WHEN {x} % 10 = 0 THEN {recent} ELSE NULL END FROM {_series(d, kept_posts)}"
    )
    run(
        "INSERT INTO likes (account_id, post_id, created_at) "
        f"SELECT {live}, 1 + ({x} % {deleted_posts}), {created} FROM {_series(d, likes)} "
        f"WHERE true ON CONFLICT DO NOTHING"
    )
    run(
        "INSERT INTO likes (account_id, post_id, created_at) "
        f"SELECT {live}, {first_kept} + ({x} % {kept_posts}), {created} FROM {_series(d, kept_posts // 2)} "
        f"WHERE true ON CONFLICT DO NOTHING"
    )
    run(
        "INSERT INTO assistant_interactions (id, account_id, created_at, prompt, response, deleted_at) "
        f"SELECT {x}, {live}, {created}, 'prompt', 'response', {old} FROM {_series(d, chats)}"
    )
    run(
        "INSERT INTO assistant_interactions (id, account_id, created_at, prompt, response, deleted_at) "
        f"SELECT {chats} + {x}, 1 + ({x} % {deactivated}), {created}, 'prompt', 'response', NULL "
        f"FROM {_series(d, their_chats)}"
    )
    run(
        "INSERT INTO assistant_interactions (id, account_id, created_at, prompt, response, deleted_at) "
        f"SELECT {chats + their_chats} + {x}, {live}, {created}, 'prompt', 'response', NULL "
        f"FROM {_series(d, kept_chats)}"
    )
    run(
        "INSERT INTO follows (follower_id, followee_id, created_at, pending) "
        f"SELECT 1 + ({x} % {deactivated}), {deactivated} + 1 + ({x} % {accounts - deactivated}), {created}, "
        f"false FROM {_series(d, follows)} WHERE true ON CONFLICT DO NOTHING"
    )
    run(
        "INSERT INTO organisations (id, name, name_key, mode, created_at, updated_at) "
        f"VALUES (1, 'Example Labs', 'example labs', 'meter', {created}, {created})"
    )
    run(
        "INSERT INTO access_log (id, subject, organisation_id, minute, posts, requests, route, client) "
        f"SELECT {x}, 'org:1', 1, {old}, 10, 1, '/v1/platform/posts', 'api' FROM {_series(d, log)}"
    )
    run(
        "INSERT INTO access_log (id, subject, organisation_id, minute, posts, requests, route, client) "
        f"SELECT {log} + {x}, 'org:1', 1, {recent}, 10, 1, '/v1/platform/posts', 'api' "
        f"FROM {_series(d, kept_log)}"
    )
    with database.write() as session:
        counts = {
            "likes": session.execute(
                text(f"SELECT count(*) FROM likes WHERE post_id <= {deleted_posts}")
            ).scalar_one(),
            "follows": session.execute(
                text(f"SELECT count(*) FROM follows WHERE follower_id <= {deactivated}")
            ).scalar_one(),
        }
        session.execute(text("ANALYZE"))
    return {
        "posts": deleted_posts + their_posts,
        "likes": int(counts["likes"]),
        "assistant_interactions": chats + their_chats,
        "access_log": log,
        "follows": int(counts["follows"]),
    }


def apply_once(database: Any) -> tuple[float, int]:
    from consentry.retention.rules import DEFAULT_RULES
    from consentry.retention.service import apply

    started = time.perf_counter()
    result = apply(database, rules=DEFAULT_RULES, at=AT)
    return time.perf_counter() - started, result.rows_removed


def delete_once(database: Any) -> tuple[float, int]:
    """The baseline: plain DELETEs of the same rows, one transaction, no batching or bookkeeping."""
    from sqlalchemy import text

    cutoff = _ts(database.dialect, "2026-10-02 00:00:00")
    log_cutoff = _ts(database.dialect, "2025-05-01 00:00:00")
    deactivated = f"(SELECT id FROM accounts WHERE status = 'deactivated' AND status_changed_at < {cutoff})"
    statements = [
        f"DELETE FROM likes WHERE post_id IN (SELECT id FROM posts WHERE deleted_at < {cutoff})",
        f"DELETE FROM posts WHERE deleted_at < {cutoff} OR author_id IN {deactivated}",
        f"DELETE FROM assistant_interactions WHERE deleted_at < {cutoff} OR account_id IN {deactivated}",
        f"DELETE FROM follows WHERE follower_id IN {deactivated} OR followee_id IN {deactivated}",
        f"DELETE FROM access_log WHERE minute < {log_cutoff}",
    ]
    removed = 0
    started = time.perf_counter()
    with database.write() as session:
        for statement in statements:
            removed += session.execute(text(statement)).rowcount
    return time.perf_counter() - started, removed


class SqliteCopies:
    """Fresh copies of a seeded SQLite file."""

    def __init__(self, template: Path) -> None:
        self.template = template

    def fresh(self, scratch: Path) -> Any:
        from consentry.db import Database

        target = scratch / f"run-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(self.template, target)
        return Database(f"sqlite:///{target}")

    def drop(self, database: Any) -> None:
        database.dispose()
        path = Path(database.url.split("///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


class PostgresCopies:
    """Fresh copies of a seeded PostgreSQL database (``CREATE DATABASE ... TEMPLATE``)."""

    def __init__(self, url: str, template: str) -> None:
        import sqlalchemy as sa

        self.admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        self.url = url
        self.template = template

    def fresh(self, scratch: Path) -> Any:
        import sqlalchemy as sa

        from consentry.db import Database

        name = f"consentry_bench_run_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return Database(sa.make_url(self.url).set(database=name).render_as_string(hide_password=False))

    def drop(self, database: Any) -> None:
        import sqlalchemy as sa

        database.dispose()
        name = sa.make_url(database.url).database
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_database(label: str, copies: Any, scratch: Path, runs: int, expected: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"apply": [], "delete": []}
    for number in range(1, runs + 1):
        for kind, func in (("apply", apply_once), ("delete", delete_once)):
            database = copies.fresh(scratch)
            try:
                seconds, removed = func(database)
            finally:
                copies.drop(database)
            assert removed == expected, (kind, removed, expected)
            samples[kind].append(seconds)
            print(
                f"  {label} run {number} {kind:<6} {seconds:7.2f} s  {removed / seconds:>10,.0f} rows/s",
                flush=True,
            )
    apply_s, delete_s = statistics.median(samples["apply"]), statistics.median(samples["delete"])
    return {
        f"{label}_rows": expected,
        f"{label}_apply_seconds": apply_s,
        f"{label}_apply_rows_per_second": expected / apply_s,
        f"{label}_delete_seconds": delete_s,
        f"{label}_delete_rows_per_second": expected / delete_s,
        f"{label}_ratio_apply_over_delete": apply_s / delete_s,
        f"{label}_target_met": expected / apply_s >= APPLY_TARGET_ROWS,
    }


def _seed_template(make: Callable[[], Any], rows: int) -> tuple[Any, int]:
    from consentry.migrate import upgrade

    database = make()
    upgrade(database)
    started = time.perf_counter()
    purgeable = seed(database, rows)
    print(f"  seeded {purgeable} in {time.perf_counter() - started:.1f} s", flush=True)
    return database, sum(purgeable.values())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/consentry-bench"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000, help="purgeable rows seeded in the database")
    parser.add_argument("--postgres", help="also measure apply on PostgreSQL (admin URL)")
    parser.add_argument("--no-lake", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    figures: dict[str, Any] = {"runs": args.runs}

    if not args.no_lake:
        lake = lake_path(args.cache)
        plans, scans = [], []
        for number in range(1, args.runs + 1):
            plans.append(plan_once(lake))
            scans.append(scan_once(lake))
            print(f"  lake run {number}: plan {plans[-1]:.2f} s, plain scan {scans[-1]:.2f} s", flush=True)
        plan_s, scan_s = statistics.median(plans), statistics.median(scans)
        figures.update(
            lake_plan_seconds=plan_s,
            lake_scan_seconds=scan_s,
            lake_ratio_plan_over_scan=plan_s / scan_s,
            lake_target_met=plan_s <= PLAN_TARGET_SECONDS,
        )

    with tempfile.TemporaryDirectory(prefix="consentry-retention-") as scratch_text:
        scratch = Path(scratch_text)
        if not args.no_sqlite:
            from consentry.db import Database

            template_path = scratch / "template.db"
            template, expected = _seed_template(lambda: Database(f"sqlite:///{template_path}"), args.rows)
            template.dispose()
            with sqlite3.connect(template_path) as connection:  # fold the WAL into the file to copy
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            figures.update(
                bench_database("sqlite", SqliteCopies(template_path), scratch, args.runs, expected)
            )
        if args.postgres:
            import sqlalchemy as sa

            from consentry.db import Database

            name = f"consentry_bench_template_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = sa.make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
            try:
                template, expected = _seed_template(lambda: Database(url), args.rows)
                template.dispose()
                copies = PostgresCopies(args.postgres, name)
                figures.update(bench_database("postgres", copies, scratch, args.runs, expected))
            finally:
                with admin.connect() as connection:
                    connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()
    report("retention", figures)


if __name__ == "__main__":
    main()
