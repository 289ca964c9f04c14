"""Benchmark: a consent-enforced release of the 10M-post / 1M-account generated lake (issue 4).

Targets: build <= 1.3x a plain DuckDB copy of the same posts to Parquet (the floor), >= 10x faster than a
straightforward pandas implementation, peak memory <= 6 GiB; the Spark local-mode time is reported beside.

The lake (seed 0) and a SQLite ledger holding its consent events (``consentry ledger import``) are made
once in ``--cache`` and reused. Every measurement runs in its own subprocess, which times the work itself
(not interpreter start-up) and reports its peak resident memory (``ru_maxrss`` from ``wait4``). Builds
and floor copies alternate, in alternating order, so that both see the same machine load, and the page
cache is synced before each, so none pays for writing back the files of the one before; medians are
reported. The first
build of a lake also runs the full data-contract check, which later builds of the same unchanged files
skip (the check is cached by file fingerprint); it is reported separately.

The pandas implementation (read, merge with consent, filter, write) runs twice: as pandas 3 does by
default (texts in Arrow strings) on the whole lake, and with Python object strings (the pandas 2
default) on the first ``--pandas-object-files`` post files, its per-post part scaled linearly to the
whole lake and its consent part counted once. Both release the same rows as the build.

    .venv/bin/python bench/dataset_build.py                    # 3 alternating runs, pandas, Spark
    .venv/bin/python bench/dataset_build.py --runs 5 --no-spark
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
TARGET_RATIO = 1.3
TARGET_SPEEDUP = 10.0
TARGET_BYTES = 6 * 1024**3
ROW_GROUP_ROWS = 122_880
SHARD_BYTES = 256 * 1024 * 1024


# --- children ---------------------------------------------------------------------------------------


def _cpu() -> float:
    """CPU seconds (user + system) of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_prepare(cache: Path) -> dict[str, Any]:
    """Generate the lake and import its consent events into a fresh SQLite ledger (once)."""
    import consentry.wiring  # noqa: F401  (an entry point: the domains wired together)
    from consentry.config import Settings
    from consentry.consent.importer import import_events
    from consentry.consent.service import ConsentContext
    from consentry.datasets import service
    from consentry.db import Database
    from consentry.lake.generate import generate_lake
    from consentry.migrate import upgrade

    result: dict[str, Any] = {}
    lake = cache / "lake-10m"
    if not lake.exists():
        started = time.perf_counter()
        generate_lake(lake, accounts=1_000_000, posts=10_000_000, seed=0)
        result["generate_seconds"] = time.perf_counter() - started
    database_path = cache / "ledger-datasets.db"
    if not database_path.exists():
        partial = cache / "ledger-datasets.db.partial"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
        database = Database(f"sqlite:///{partial}")
        upgrade(database)
        ctx = ConsentContext.from_settings(Settings(home=cache / "home", database_url=database.url))
        started = time.perf_counter()
        with database.write() as session:
            report = import_events(session, lake, ctx=ctx)
            for name, kind in (("assistant", "first_party"), ("partner", "third_party")):
                service.add_recipient(
                    session, name=name, kind=kind, purposes=["train-ai"], categories=["posts"]
                )
        result["import_seconds"] = time.perf_counter() - started
        result["events"] = report.events
        database.dispose()
        for suffix in ("-wal", "-shm"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
        partial.rename(database_path)
    else:  # a ledger cached by an earlier version: bring it to the current schema
        database = Database(f"sqlite:///{database_path}")
        upgrade(database)
        database.dispose()
    return result


def child_build(cache: Path, out: Path, recipient: str, engine: str, forget_check: bool) -> dict[str, Any]:
    """One consent-enforced release of the lake's posts (after forgetting that the lake passed the
    contract check, when asked, so that the build checks it again)."""
    from sqlalchemy import delete

    from consentry.config import Settings
    from consentry.consent.service import ConsentContext
    from consentry.datasets import service
    from consentry.datasets.models import LakeCheck
    from consentry.db import Database

    url = f"sqlite:///{cache / 'ledger-datasets.db'}"
    database = Database(url)
    if forget_check:
        with database.write() as session:
            session.execute(delete(LakeCheck))
    ctx = ConsentContext.from_settings(Settings(home=cache / "home", database_url=url))
    stages: dict[str, float] = {}
    last = [time.perf_counter(), ""]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if last[1]:
            stages[str(last[1])] = round(now - float(last[0]), 3)
        last[0], last[1] = now, stage

    started, cpu = time.perf_counter(), _cpu()
    release = service.build_release(
        database,
        ctx=ctx,
        recipient=recipient,
        purpose="train-ai",
        categories=["posts"],
        lake=cache / "lake-10m",
        out=out,
        as_of=AS_OF,
        engine=engine,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu": _cpu() - cpu,
        "rows": release.rows,
        "excluded": release.excluded,
        "stages": stages,
    }


def child_floor(cache: Path, out: Path) -> dict[str, Any]:
    """The floor: DuckDB copies the same posts (the release's column count) to zstd Parquet shards."""
    import duckdb

    files = sorted(str(p) for p in (cache / "lake-10m" / "posts").glob("*.parquet"))
    connection = duckdb.connect()
    connection.execute("SET enable_progress_bar = false").fetchall()
    listed = ", ".join(f"'{f}'" for f in files)
    started, cpu = time.perf_counter(), _cpu()
    connection.execute(
        "COPY (SELECT post_id, author_id, created_at, text, reply_to, quote_of, media "
        f"FROM read_parquet([{listed}])) TO '{out}' (FORMAT parquet, COMPRESSION zstd, "
        f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}, FILE_SIZE_BYTES {SHARD_BYTES}, FILENAME_PATTERN 'part-{{i}}')"
    ).fetchall()
    return {"seconds": time.perf_counter() - started, "cpu": _cpu() - cpu}


def child_pandas(cache: Path, out: Path, files: int, object_strings: bool) -> dict[str, Any]:
    """A straightforward pandas release: read, merge with consent, filter, write (on ``files`` post
    files); with ``object_strings``, texts are Python strings as in pandas 2 (pandas 3 keeps them in
    Arrow)."""
    import hashlib
    import sqlite3
    import warnings

    import numpy as np
    import pandas as pd

    if object_strings:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pd.set_option("future.infer_string", False)

    from consentry.consent.catalog import load_jurisdictions

    lake = cache / "lake-10m"
    started = time.perf_counter()
    # consent: the latest explicit event per account at AS_OF, else the policy default for the country
    ledger = sqlite3.connect(cache / "ledger-datasets.db")
    events = pd.read_sql(
        "SELECT s.account_id, e.value, e.recorded_at FROM consent_events e "
        "JOIN consent_subjects s ON s.subject_key = e.subject_key "
        "WHERE e.setting = 'assistant_training_posts'",
        ledger,
        parse_dates=["recorded_at"],
    )
    secret = bytes.fromhex(
        ledger.execute("SELECT secret FROM recipients WHERE name = 'assistant'").fetchone()[0]
    )
    ledger.close()
    events = events[events["recorded_at"] <= AS_OF.replace(tzinfo=None)]
    latest = events.sort_values("recorded_at").groupby("account_id").last()["value"]
    accounts = pd.read_parquet(lake / "accounts")
    opt_in = {c for g in ("EEA", "UK", "CH") for c in load_jurisdictions().groups[g]}
    accounts = accounts.merge(latest.rename("explicit"), left_on="account_id", right_index=True, how="left")
    default = np.where(accounts["country"].isin(opt_in), "deny", "allow")
    accounts["allow"] = accounts["explicit"].fillna(pd.Series(default, index=accounts.index)) == "allow"
    as_of = pd.Timestamp(AS_OF)
    accounts["inactive"] = (accounts["status"] != "active") & (
        accounts["status_changed_at"].isna() | (accounts["status_changed_at"] <= as_of)
    )
    accounts["minor"] = accounts["birth_year"].isna() | (AS_OF.year - accounts["birth_year"] <= 18)
    contributes = accounts[~accounts["inactive"] & ~accounts["minor"] & accounts["allow"]]
    accounts["pseudonym"] = contributes["account_id"].map(
        lambda i: hashlib.blake2b(
            int(i).to_bytes(8, "big"), key=secret, digest_size=16, person=b"consentry-author"
        ).hexdigest()
    )
    consent_seconds = time.perf_counter() - started

    started = time.perf_counter()
    paths = sorted((lake / "posts").glob("*.parquet"))[:files]
    posts = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    merged = posts.merge(
        accounts[["account_id", "inactive", "minor", "allow", "protected", "pseudonym"]],
        left_on="author_id",
        right_on="account_id",
        how="left",
    )
    merged = merged[merged["created_at"] <= as_of]
    deleted = merged["deleted_at"].notna() & (merged["deleted_at"] <= as_of)
    reason = np.select(
        [
            merged["inactive"].fillna(True).astype(bool),
            merged["minor"].fillna(True).astype(bool),
            deleted,
            (merged["visibility"] != "public") | merged["protected"].fillna(True).astype(bool),
            ~merged["allow"].fillna(False).astype(bool),
        ],
        [1, 2, 3, 4, 5],
        0,
    )
    eligible_ids = merged["post_id"][reason == 0]
    release = merged[reason == 0].copy()
    for link in ("reply_to", "quote_of"):
        release[link] = release[link].where(release[link].isin(eligible_ids))
    release = release.rename(columns={"post_id": "id", "pseudonym": "author"})
    release = release[["id", "author", "created_at", "text", "reply_to", "quote_of", "media"]]
    out.mkdir(parents=True)
    chunk = 1_000_000
    for index, start in enumerate(range(0, max(len(release), 1), chunk)):
        release.iloc[start : start + chunk].to_parquet(
            out / f"train-{index:05d}.parquet", compression="zstd", row_group_size=ROW_GROUP_ROWS, index=False
        )
    return {
        "consent_seconds": consent_seconds,
        "posts_seconds": time.perf_counter() - started,
        "posts": len(posts),
        "rows": len(release),
        "excluded": int((reason != 0).sum()),
    }


# --- parent -----------------------------------------------------------------------------------------


def _child_with_usage(*arguments: str) -> dict[str, Any]:
    """Like ``_run`` but reaps the child with ``wait4`` to read its own peak memory."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    stdout = process.stdout.read()
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"child {arguments[0]} failed:\n{stderr[-4000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["peak_bytes"] = usage.ru_maxrss * 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/consentry-bench"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--pandas-files", type=int, default=20, help="post files (500,000 posts each) for pandas 3 strings"
    )
    parser.add_argument(
        "--pandas-object-files", type=int, default=4, help="post files for pandas with object strings"
    )
    parser.add_argument("--no-pandas", action="store_true")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument(
        "--third-party", action="store_true", help="also time a third-party build (scrubbing)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "prepare":
            result = child_prepare(Path(rest[0]))
        elif kind == "build":
            result = child_build(Path(rest[0]), Path(rest[1]), rest[2], rest[3], rest[4:] == ["forget"])
        elif kind == "floor":
            result = child_floor(Path(rest[0]), Path(rest[1]))
        else:
            result = child_pandas(Path(rest[0]), Path(rest[1]), int(rest[2]), rest[3:] == ["object"])
        print(json.dumps(result))
        return

    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    print(
        f"dataset build bench: cache {cache}, {args.runs} run(s); "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    prepared = _child_with_usage("prepare", str(cache))
    if prepared.get("generate_seconds") or prepared.get("import_seconds"):
        print(f"prepared: {json.dumps({k: v for k, v in prepared.items() if k != 'peak_bytes'})}", flush=True)
    scratch = cache / "scratch"

    def fresh(name: str) -> Path:
        path = scratch / name
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    first = _child_with_usage("build", str(cache), str(fresh("first")), "assistant", "duckdb", "forget")
    print(
        f"first build of the lake (full contract check, cached afterwards): {first['seconds']:.1f} s, "
        f"peak {first['peak_bytes'] / 2**30:.2f} GiB, stages {first['stages']}",
        flush=True,
    )
    builds: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []

    def measure_floor() -> dict[str, Any]:
        out = fresh("floor")
        os.sync()  # no measurement pays for writing back what the one before it wrote
        return _child_with_usage("floor", str(cache), str(out))

    def measure_build() -> dict[str, Any]:
        out = fresh("build")
        os.sync()
        return _child_with_usage("build", str(cache), str(out), "assistant", "duckdb")

    for number in range(1, args.runs + 1):
        if number % 2:  # the order alternates too, so neither always runs first
            floor, build = measure_floor(), measure_build()
        else:
            build, floor = measure_build(), measure_floor()
        floors.append(floor)
        builds.append(build)
        print(
            f"run {number}: floor {floor['seconds']:.2f} s | build {build['seconds']:.2f} s "
            f"(ratio {build['seconds'] / floor['seconds']:.2f}x; "
            f"CPU {floor['cpu']:.1f} vs {build['cpu']:.1f} s), "
            f"peak {build['peak_bytes'] / 2**30:.2f} GiB, "
            f"{build['rows']:,} released, {build['excluded']:,} excluded | stages {build['stages']}",
            flush=True,
        )
    figures: dict[str, Any] = {
        "floor_seconds": statistics.median(f["seconds"] for f in floors),
        "build_seconds": statistics.median(b["seconds"] for b in builds),
        "floor_cpu_seconds": statistics.median(f["cpu"] for f in floors),
        "build_cpu_seconds": statistics.median(b["cpu"] for b in builds),
        "build_peak_gib": max(b["peak_bytes"] for b in builds) / 2**30,
        "first_build_seconds": first["seconds"],
        "first_build_check_seconds": first["stages"].get("check lake"),
        "released": builds[0]["rows"],
        "excluded": builds[0]["excluded"],
    }
    # builds and floors alternate, so each pair saw the same load: the median of the paired ratios
    figures["ratio"] = statistics.median(
        b["seconds"] / f["seconds"] for b, f in zip(builds, floors, strict=True)
    )
    figures["ratio_of_medians"] = figures["build_seconds"] / figures["floor_seconds"]
    if args.third_party:
        third = _child_with_usage("build", str(cache), str(fresh("third")), "partner", "duckdb")
        figures["third_party_seconds"] = third["seconds"]
        figures["third_party_peak_gib"] = third["peak_bytes"] / 2**30
        print(
            f"third-party build (PII scrubbing on): {third['seconds']:.2f} s, stages {third['stages']}",
            flush=True,
        )
    if not args.no_pandas:
        for variant, files in (("arrow", args.pandas_files), ("object", args.pandas_object_files)):
            pandas = _child_with_usage("pandas", str(cache), str(fresh("pandas")), str(files), variant)
            scale = 10_000_000 / pandas["posts"]
            estimate = pandas["consent_seconds"] + pandas["posts_seconds"] * scale
            figures[f"pandas_{variant}"] = {
                "posts": pandas["posts"],
                "measured_seconds": pandas["consent_seconds"] + pandas["posts_seconds"],
                "seconds_for_10m_posts": estimate,
                "peak_gib": pandas["peak_bytes"] / 2**30,
                "rows": pandas["rows"],
                "speedup": estimate / figures["build_seconds"],
            }
            print(
                f"pandas ({variant} strings) on {pandas['posts']:,} posts: "
                f"consent {pandas['consent_seconds']:.1f} s + posts {pandas['posts_seconds']:.1f} s "
                f"(peak {pandas['peak_bytes'] / 2**30:.2f} GiB, "
                f"{pandas['rows']:,} released); for 10M posts: {estimate:.1f} s, "
                f"{estimate / figures['build_seconds']:.1f}x the build",
                flush=True,
            )
    if not args.no_spark:
        spark = _child_with_usage("build", str(cache), str(fresh("spark")), "assistant", "spark")
        figures["spark_seconds"] = spark["seconds"]
        figures["spark_rows_match"] = spark["rows"] == builds[0]["rows"]
        print(
            f"spark local mode: {spark['seconds']:.1f} s ('start engine' is the JVM start), "
            f"stages {spark['stages']}",
            flush=True,
        )
    shutil.rmtree(scratch, ignore_errors=True)
    figures["ratio_target_met"] = figures["ratio"] <= TARGET_RATIO
    figures["memory_target_met"] = figures["build_peak_gib"] * 2**30 <= TARGET_BYTES
    if "pandas_arrow" in figures:
        figures["pandas_target_met"] = figures["pandas_arrow"]["speedup"] >= TARGET_SPEEDUP
    print(json.dumps({"bench": "dataset_build", "date": datetime.now(UTC).strftime("%Y-%m-%d"), **figures}))


if __name__ == "__main__":
    main()
