"""Benchmark: a consent-enforced release of the generated lake (10M posts and 1M accounts by default).

Targets (issue "Speed where users feel it"), whole-process: the build <= 1.3x the released-rows floor,
>= 2x faster than pandas, peak memory <= 2 GiB.

- **Released-rows floor**: DuckDB reads every post and keeps exactly the posts the release holds (their
  ids from a table computed beforehand) and writes the release's seven columns as zstd Parquet with the
  same row groups and shard size. No consent, no lineage: the least any release of these rows costs.
- **Build**: ``datasets.service.build_release`` as ``consentry dataset build`` and the worker run it.
- **pandas**: a straightforward script: read the posts and accounts, each author's latest choice from
  the ledger, merge, filter, null the links to posts left out, write zstd Parquet. It releases the
  same rows (checked).

The lake (seed 0) and a SQLite ledger holding its consent events (``consentry ledger import``) are made
once in ``--cache`` and reused. Every measurement is a fresh process, timed whole (interpreter start and
imports included) by the parent, which also reads the process's CPU time and peak resident memory with
``wait4``. Each run measures every kind once, each kind leading in turn, with the page cache synced
before each so none pays for writing back another's files; the ratios are medians of the per-run ratios.
The first build of a lake also runs the full data-contract check, which later builds of the same files
skip (cached by fingerprint); it is reported apart, and it gives the released ids of the floor.

    .venv/bin/python bench/dataset_build.py --runs 5 --no-spark         # 10M posts
    .venv/bin/python bench/dataset_build.py --posts 1000000 --runs 3 --no-spark
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
TARGET_SPEEDUP = 2.0
TARGET_BYTES = 2 * 1024**3
ROW_GROUP_ROWS = 122_880
SHARD_BYTES = 256 * 1024 * 1024


# --- children ---------------------------------------------------------------------------------------


def _cpu() -> float:
    """CPU seconds (user + system) of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def names(posts: int) -> tuple[str, str]:
    """The lake folder and the ledger file of a scale in the cache (10M keeps its first names)."""
    if posts == 10_000_000:
        return "lake-10m", "ledger-datasets.db"
    return f"lake-{posts}", f"ledger-datasets-{posts}.db"


def child_prepare(cache: Path, posts: int) -> dict[str, Any]:
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
    lake_name, ledger_name = names(posts)
    lake = cache / lake_name
    if not lake.exists():
        started = time.perf_counter()
        generate_lake(lake, accounts=max(10, posts // 10), posts=posts, seed=0)
        result["generate_seconds"] = time.perf_counter() - started
    database_path = cache / ledger_name
    if not database_path.exists():
        partial = cache / f"{ledger_name}.partial"
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


def child_build(
    cache: Path, out: Path, posts: int, recipient: str, engine: str, forget_check: bool
) -> dict[str, Any]:
    """One consent-enforced release of the lake's posts (after forgetting that the lake passed the
    contract check, when asked, so that the build checks it again)."""
    started, cpu = time.perf_counter(), _cpu()
    from consentry.config import Settings
    from consentry.consent.service import ConsentContext
    from consentry.datasets import service
    from consentry.db import Database

    imports, imports_cpu = time.perf_counter() - started, _cpu() - cpu
    lake_name, ledger_name = names(posts)
    url = f"sqlite:///{cache / ledger_name}"
    database = Database(url)
    if forget_check:
        from sqlalchemy import delete

        from consentry.datasets.models import LakeCheck

        with database.write() as session:
            session.execute(delete(LakeCheck))
    ctx = ConsentContext.from_settings(Settings(home=cache / "home", database_url=url))
    stages: dict[str, float] = {}
    stages_cpu: dict[str, float] = {}
    last: list[Any] = [time.perf_counter(), _cpu(), ""]

    def progress(stage: str, done: int, total: int) -> None:
        now, cpu_now = time.perf_counter(), _cpu()
        if last[2]:
            stages[last[2]] = round(now - last[0], 3)
            stages_cpu[last[2]] = round(cpu_now - last[1], 3)
        last[:] = [now, cpu_now, stage]

    started, cpu = time.perf_counter(), _cpu()
    release = service.build_release(
        database,
        ctx=ctx,
        recipient=recipient,
        purpose="train-ai",
        categories=["posts"],
        lake=cache / lake_name,
        out=out,
        as_of=AS_OF,
        engine=engine,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu": _cpu() - cpu,
        "imports": round(imports, 3),
        "imports_cpu": round(imports_cpu, 3),
        "rows": release.rows,
        "excluded": release.excluded,
        "stages": stages,
        "stages_cpu": stages_cpu,
    }


def child_floor(cache: Path, out: Path, lake: str, released: str | None) -> dict[str, Any]:
    """A floor: DuckDB copies the posts (the release's seven columns) to zstd Parquet shards, with the
    release's row groups and shard size. With ``released`` (a Parquet file of ids), only those posts:
    every post is read, the released ids are kept by a join with that precomputed table."""
    import duckdb

    files = sorted(str(p) for p in (cache / lake / "posts").glob("*.parquet"))
    connection = duckdb.connect()
    connection.execute("SET enable_progress_bar = false").fetchall()
    connection.execute("SET preserve_insertion_order = false").fetchall()
    listed = ", ".join(f"'{f}'" for f in files)
    keep = f"SEMI JOIN read_parquet('{released}') r ON p.post_id = r.id" if released else ""
    started, cpu = time.perf_counter(), _cpu()
    connection.execute(
        "COPY (SELECT p.post_id, p.author_id, p.created_at, p.text, p.reply_to, p.quote_of, p.media "
        f"FROM read_parquet([{listed}]) p {keep}) TO '{out}' (FORMAT parquet, COMPRESSION zstd, "
        f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}, FILE_SIZE_BYTES {SHARD_BYTES}, FILENAME_PATTERN 'part-{{i}}')"
    ).fetchall()
    rows = connection.execute(f"SELECT count(*) FROM read_parquet('{out}/*.parquet')").fetchone()
    return {"seconds": time.perf_counter() - started, "cpu": _cpu() - cpu, "rows": rows[0] if rows else 0}


def child_pandas(cache: Path, out: Path, lake_name: str, ledger_name: str) -> dict[str, Any]:
    """A straightforward pandas release: read the posts and accounts, take each author's latest choice
    from the ledger, merge, filter, null the links to posts left out, write zstd Parquet.

    The same rule as the build for this bench's release (first party, ``train-ai``, posts, one policy
    that defaults to deny in the EEA, the UK and Switzerland): the author's account active and not a
    minor, the post public, not deleted and created by ``AS_OF``, the author's latest choice for
    ``assistant_training_posts`` (greatest ``(recorded_at, seq)``) or else the default allowing. Authors
    get the build's pseudonyms (the same vectorised function)."""
    import sqlite3

    import numpy as np
    import pandas as pd

    from consentry.consent.catalog import load_jurisdictions
    from consentry.datasets.transforms import pseudonyms

    lake = cache / lake_name
    as_of = pd.Timestamp(AS_OF)
    started, cpu = time.perf_counter(), _cpu()
    ledger = sqlite3.connect(cache / ledger_name)
    events = pd.read_sql(
        "SELECT s.account_id, e.value, e.recorded_at, e.seq FROM consent_events e "
        "JOIN consent_subjects s ON s.subject_key = e.subject_key "
        "WHERE e.setting = 'assistant_training_posts'",
        ledger,
    )
    secret = bytes.fromhex(
        ledger.execute("SELECT secret FROM recipients WHERE name = 'assistant'").fetchone()[0]
    )
    ledger.close()
    events["recorded_at"] = pd.to_datetime(events["recorded_at"], utc=True)
    events = events[events["recorded_at"] <= as_of]
    latest = events.sort_values(["recorded_at", "seq"]).drop_duplicates("account_id", keep="last")
    accounts = pd.read_parquet(lake / "accounts")
    accounts = accounts.merge(
        latest[["account_id", "value"]].rename(columns={"value": "choice"}), on="account_id", how="left"
    )
    opt_in = [c for group in ("EEA", "UK", "CH") for c in load_jurisdictions().groups[group]]
    default = np.where(accounts["country"].isin(opt_in), "deny", "allow")
    allow = accounts["choice"].fillna(pd.Series(default, index=accounts.index)) == "allow"
    active = (accounts["status"] == "active") | (accounts["status_changed_at"] > as_of)
    adult = AS_OF.year - accounts["birth_year"].astype("float64") > 18  # no birth year: not an adult
    accounts["contributes"] = allow & active & adult & ~accounts["protected"]
    accounts["author"] = pseudonyms(accounts["account_id"].to_numpy(), secret)

    posts = pd.read_parquet(lake / "posts")
    merged = posts.merge(
        accounts[["account_id", "contributes", "author"]], left_on="author_id", right_on="account_id"
    )
    deleted = merged["deleted_at"].notna() & (merged["deleted_at"] <= as_of)
    keep = (
        merged["contributes"]
        & (merged["visibility"] == "public")
        & ~deleted
        & (merged["created_at"] <= as_of)
    )
    release = merged[keep]
    for link in ("reply_to", "quote_of"):
        release[link] = release[link].where(release[link].isin(release["post_id"]))
    release = release.rename(columns={"post_id": "id"})
    release = release[["id", "author", "created_at", "text", "reply_to", "quote_of", "media"]]
    out.mkdir(parents=True)
    release.to_parquet(out / "train-00000.parquet", compression="zstd", index=False)
    return {
        "seconds": time.perf_counter() - started,
        "cpu": _cpu() - cpu,
        "rows": len(release),
        "id_sum": int(release["id"].sum()),
    }


# --- parent -----------------------------------------------------------------------------------------


def _child_with_usage(*arguments: str) -> dict[str, Any]:
    """Run one child to its end: what it reports, plus its whole-process wall time (interpreter start
    and imports included), its CPU time (user + system, every thread) and its peak resident memory,
    read with ``wait4``."""
    started = time.perf_counter()
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
    result["process_seconds"] = time.perf_counter() - started
    result["process_cpu"] = usage.ru_utime + usage.ru_stime
    result["peak_bytes"] = usage.ru_maxrss * 1024
    return result


def _released_ids(release: Path, target: Path) -> int:
    """Write the ids a release holds to ``target`` (the released-rows floor keeps them); their count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = sorted(release.glob("data/posts/*.parquet"))
    ids = pa.concat_arrays([pq.read_table(s, columns=["id"])["id"].combine_chunks() for s in shards])
    pq.write_table(pa.table({"id": ids}), target)
    return len(ids)


def _shown(kind: str, sample: dict[str, Any]) -> str:
    return (
        f"{kind} {sample['process_seconds']:.2f} s (CPU {sample['process_cpu']:.1f} s, "
        f"peak {sample['peak_bytes'] / 2**30:.2f} GiB)"
    )


def _median(samples: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(s[key]) for s in samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/consentry-bench"))
    parser.add_argument("--posts", type=int, default=10_000_000, help="posts of the lake (accounts: a tenth)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-pandas", action="store_true")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument(
        "--all-rows-floor", action="store_true", help="also time the earlier floor (a copy of every post)"
    )
    parser.add_argument(
        "--third-party", action="store_true", help="also time a third-party build (scrubbing)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "prepare":
            result = child_prepare(Path(rest[0]), int(rest[1]))
        elif kind == "build":
            result = child_build(
                Path(rest[0]), Path(rest[1]), int(rest[2]), rest[3], rest[4], rest[5:] == ["forget"]
            )
        elif kind == "floor":
            result = child_floor(Path(rest[0]), Path(rest[1]), rest[2], rest[3] if len(rest) > 3 else None)
        else:
            result = child_pandas(Path(rest[0]), Path(rest[1]), rest[2], rest[3])
        print(json.dumps(result))
        return

    cache, posts = args.cache, args.posts
    lake_name, ledger_name = names(posts)
    cache.mkdir(parents=True, exist_ok=True)
    print(
        f"dataset build bench: {posts:,} posts, cache {cache}, {args.runs} run(s); "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    prepared = _child_with_usage("prepare", str(cache), str(posts))
    if prepared.get("generate_seconds") or prepared.get("import_seconds"):
        shown = {k: v for k, v in prepared.items() if k in ("generate_seconds", "import_seconds", "events")}
        print(f"prepared: {json.dumps(shown)}", flush=True)
    scratch = cache / "scratch"

    def fresh(name: str) -> Path:
        path = scratch / name
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    first_out = fresh("first")
    first = _child_with_usage(
        "build", str(cache), str(first_out), str(posts), "assistant", "duckdb", "forget"
    )
    released = scratch / "released-ids.parquet"
    released_count = _released_ids(first_out, released)
    shutil.rmtree(first_out, ignore_errors=True)
    print(
        f"first build of the lake (full contract check, cached afterwards): {first['process_seconds']:.1f} s "
        f"whole process, peak {first['peak_bytes'] / 2**30:.2f} GiB, stages {first['stages']}",
        flush=True,
    )

    def measure(kind: str) -> dict[str, Any]:
        out = fresh(kind)
        os.sync()  # no measurement pays for writing back what the one before it wrote
        if kind == "floor":
            return _child_with_usage("floor", str(cache), str(out), lake_name, str(released))
        if kind == "all-rows floor":
            return _child_with_usage("floor", str(cache), str(out), lake_name)
        if kind == "pandas":
            return _child_with_usage("pandas", str(cache), str(out), lake_name, ledger_name)
        return _child_with_usage("build", str(cache), str(out), str(posts), "assistant", "duckdb")

    kinds = ["floor", "build"]
    if not args.no_pandas:
        kinds.append("pandas")
    if args.all_rows_floor:
        kinds.append("all-rows floor")
    samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for number in range(args.runs):
        order = kinds[number % len(kinds) :] + kinds[: number % len(kinds)]  # each kind leads in turn
        for kind in order:
            samples[kind].append(measure(kind))
        line = " | ".join(_shown(kind, samples[kind][-1]) for kind in kinds)
        build = samples["build"][-1]
        print(
            f"run {number + 1}: {line} | build stages (wall) {build['stages']}, CPU {build['stages_cpu']}, "
            f"imports {build['imports']} s (CPU {build['imports_cpu']} s)",
            flush=True,
        )
    builds, floors = samples["build"], samples["floor"]
    for kind in kinds:
        rows = {int(s["rows"]) for s in samples[kind]}
        if rows != {released_count}:
            raise SystemExit(f"{kind} wrote {rows} rows, the build {released_count}")
    figures: dict[str, Any] = {
        "posts": posts,
        "released": released_count,
        "excluded": builds[0]["excluded"],
        "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        "first_build_seconds": first["process_seconds"],
        "first_build_check_seconds": first["stages"].get("check lake"),
    }
    for kind in kinds:
        key = kind.replace(" ", "_").replace("-", "_")
        figures[f"{key}_seconds"] = _median(samples[kind], "process_seconds")
        figures[f"{key}_cpu_seconds"] = _median(samples[kind], "process_cpu")
        figures[f"{key}_peak_gib"] = max(s["peak_bytes"] for s in samples[kind]) / 2**30
        figures[f"{key}_samples"] = [round(s["process_seconds"], 2) for s in samples[kind]]
    # each run measured every kind under the same load: medians of the per-run ratios
    figures["ratio"] = statistics.median(
        b["process_seconds"] / f["process_seconds"] for b, f in zip(builds, floors, strict=True)
    )
    figures["ratio_samples"] = [
        round(b["process_seconds"] / f["process_seconds"], 3) for b, f in zip(builds, floors, strict=True)
    ]
    figures["build_stages_median"] = {
        stage: statistics.median(b["stages"].get(stage, 0.0) for b in builds) for stage in builds[0]["stages"]
    }
    figures["build_stages_cpu_median"] = {
        stage: statistics.median(b["stages_cpu"].get(stage, 0.0) for b in builds)
        for stage in builds[0]["stages_cpu"]
    }
    figures["build_imports_median"] = _median(builds, "imports")
    figures["build_imports_cpu_median"] = _median(builds, "imports_cpu")
    figures["build_in_process_seconds"] = _median(builds, "seconds")
    if "pandas" in samples:
        pandas = samples["pandas"]
        figures["pandas_speedup"] = statistics.median(
            p["process_seconds"] / b["process_seconds"] for p, b in zip(pandas, builds, strict=True)
        )
    if args.third_party:
        third = _child_with_usage("build", str(cache), str(fresh("third")), str(posts), "partner", "duckdb")
        figures["third_party_seconds"] = third["process_seconds"]
        figures["third_party_peak_gib"] = third["peak_bytes"] / 2**30
        print(f"third-party build (PII scrubbing on): {third['process_seconds']:.2f} s", flush=True)
    if not args.no_spark:
        spark = _child_with_usage("build", str(cache), str(fresh("spark")), str(posts), "assistant", "spark")
        figures["spark_seconds"] = spark["process_seconds"]
        figures["spark_rows_match"] = spark["rows"] == released_count
        print(f"spark local mode: {spark['process_seconds']:.1f} s, stages {spark['stages']}", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    figures["ratio_target_met"] = figures["ratio"] <= TARGET_RATIO
    figures["memory_target_met"] = figures["build_peak_gib"] * 2**30 <= TARGET_BYTES
    if "pandas_speedup" in figures:
        figures["pandas_target_met"] = figures["pandas_speedup"] >= TARGET_SPEEDUP
    print(
        json.dumps(
            {"bench": "dataset_build", "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), **figures}
        )
    )


if __name__ == "__main__":
    main()
