"""Benchmark: the 10M-post release built from Iceberg tables and from Delta tables, against the same
build from the Parquet folders measured in the same run (DuckDB engine).

The lake and ledger are those of ``bench/dataset_build.py`` (1,000,000 accounts, 10,000,000 posts,
seed 0; made once in ``--cache``). The lake is written once more as Iceberg tables (pyiceberg, SQLite
catalog, one append per Parquet file in one transaction) and as Delta tables (deltalake, streamed); the
times are reported. Then, per format: the full data-contract check (``consentry lake check``), one build
that also records the check (not timed), and ``--runs`` builds, the three formats in rotating order, each
in its own subprocess after ``sync``. A build from a table resolves the snapshot (catalog or log, manifest
lists) in its ``check lake`` stage, then reads the same kind of Parquet files.

    .venv/bin/python bench/lake_sources.py [--cache /tmp/consentry-bench] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
PREPARE = Path(__file__).resolve().parent / "dataset_build.py"
FORMATS = ("parquet", "iceberg", "delta")


def specs(cache: Path) -> dict[str, dict[str, Any]]:
    """The three descriptions of the same lake (``LakeSpec.to_params`` form)."""
    from consentry.lake.source import lake_spec

    return {
        "parquet": lake_spec(lake=cache / "lake-10m").to_params(),
        "iceberg": lake_spec(
            format="iceberg", catalog=f"sqlite:///{cache / 'iceberg' / 'catalog.db'}", namespace="lake"
        ).to_params(),
        "delta": lake_spec(format="delta", lake=cache / "delta").to_params(),
    }


# --- children ---------------------------------------------------------------------------------------


def child_convert(cache: Path) -> dict[str, Any]:
    """Write the Parquet lake as Iceberg and Delta tables (once)."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from consentry.lake import schema
    from consentry.lake.source import parquet_files

    lake = cache / "lake-10m"
    result: dict[str, Any] = {}
    iceberg = cache / "iceberg"
    if not (iceberg / "done").exists():
        from pyiceberg.catalog.sql import SqlCatalog

        shutil.rmtree(iceberg, ignore_errors=True)
        iceberg.mkdir()
        started = time.perf_counter()
        catalog = SqlCatalog(
            "default", uri=f"sqlite:///{iceberg / 'catalog.db'}", warehouse=(iceberg / "warehouse").as_uri()
        )
        catalog.create_namespace("lake")
        for folder in schema.FOLDERS:
            table = catalog.create_table(f"lake.{folder.name}", schema=folder.schema)
            with table.transaction() as transaction:
                for path in parquet_files(lake / folder.name):
                    transaction.append(pq.read_table(path, columns=list(folder.column_names)))
        catalog.engine.dispose()
        result["iceberg_write_seconds"] = time.perf_counter() - started
        (iceberg / "done").touch()
    delta = cache / "delta"
    if not (delta / "done").exists():
        from deltalake import write_deltalake

        shutil.rmtree(delta, ignore_errors=True)
        delta.mkdir()
        started = time.perf_counter()
        for folder in schema.FOLDERS:
            dataset = ds.dataset(lake / folder.name, format="parquet")
            reader = dataset.scanner(columns=list(folder.column_names)).to_reader()
            write_deltalake(str(delta / folder.name), reader)
        result["delta_write_seconds"] = time.perf_counter() - started
        (delta / "done").touch()
    return result


def child_check(params: dict[str, Any]) -> dict[str, Any]:
    """The full data-contract check of one lake."""
    from consentry.lake.check import check_lake
    from consentry.lake.source import LakeSpec

    started = time.perf_counter()
    report = check_lake(LakeSpec.from_params(params))
    return {"seconds": time.perf_counter() - started, "ok": report.ok, "rows": report.rows.get("posts")}


def child_build(cache: Path, out: Path, params: dict[str, Any]) -> dict[str, Any]:
    """One first-party release of the posts."""
    from consentry.config import Settings
    from consentry.consent.service import ConsentContext
    from consentry.datasets import service
    from consentry.db import Database
    from consentry.lake.source import LakeSpec

    url = f"sqlite:///{cache / 'ledger-datasets.db'}"
    database = Database(url)
    ctx = ConsentContext.from_settings(Settings(home=cache / "home", database_url=url))
    stages: dict[str, float] = {}
    last = [time.perf_counter(), ""]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if last[1]:
            stages[str(last[1])] = round(now - float(last[0]), 3)
        last[0], last[1] = now, stage

    started = time.perf_counter()
    release = service.build_release(
        database,
        ctx=ctx,
        recipient="assistant",
        purpose="train-ai",
        categories=["posts"],
        lake=LakeSpec.from_params(params),
        out=out,
        as_of=AS_OF,
        progress=progress,
    )
    return {
        "seconds": time.perf_counter() - started,
        "rows": release.rows,
        "stages": stages,
    }


# --- parent -----------------------------------------------------------------------------------------


def _child(*arguments: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *arguments], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child {arguments[0]} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/consentry-bench"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "convert":
            result = child_convert(Path(rest[0]))
        elif kind == "check":
            result = child_check(json.loads(rest[0]))
        else:
            result = child_build(Path(rest[0]), Path(rest[1]), json.loads(rest[2]))
        print(json.dumps(result))
        return

    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    print(
        f"lake sources bench: cache {cache}, {args.runs} run(s); {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    prepared = subprocess.run(
        [sys.executable, str(PREPARE), "--child", "prepare", str(cache)],
        capture_output=True,
        text=True,
        check=False,
    )
    if prepared.returncode != 0:
        raise SystemExit(f"preparing the lake failed:\n{prepared.stderr[-4000:]}")
    figures: dict[str, Any] = {"convert": _child("convert", str(cache))}
    print(f"tables written: {json.dumps(figures['convert'])}", flush=True)
    lakes = specs(cache)
    scratch = cache / "scratch-lakes"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    checks = {name: _child("check", json.dumps(params)) for name, params in lakes.items()}
    for name, check in checks.items():
        print(f"{name}: check {check['seconds']:.2f} s, ok {check['ok']}", flush=True)
        _child(
            "build", str(cache), str(scratch / f"warm-{name}"), json.dumps(lakes[name])
        )  # records the check
        shutil.rmtree(scratch / f"warm-{name}")
    builds: dict[str, list[dict[str, Any]]] = {name: [] for name in FORMATS}
    for number in range(args.runs):
        order = FORMATS[number % 3 :] + FORMATS[: number % 3]
        for name in order:
            out = scratch / f"{name}-{number}"
            os.sync()
            result = _child("build", str(cache), str(out), json.dumps(lakes[name]))
            builds[name].append(result)
            shutil.rmtree(out, ignore_errors=True)
            print(
                f"run {number + 1} {name}: {result['seconds']:.2f} s, stages {result['stages']}", flush=True
            )
    base = statistics.median(b["seconds"] for b in builds["parquet"])
    for name in FORMATS:
        seconds = statistics.median(b["seconds"] for b in builds[name])
        figures[name] = {
            "check_seconds": round(checks[name]["seconds"], 2),
            "build_seconds": round(seconds, 2),
            "ratio_to_parquet": round(seconds / base, 2),
            "open_seconds": statistics.median(b["stages"].get("check lake", 0.0) for b in builds[name]),
            "rows": builds[name][0]["rows"],
        }
    figures["same_rows"] = len({figures[name]["rows"] for name in FORMATS}) == 1
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"bench": "lake_sources", "date": datetime.now(UTC).strftime("%Y-%m-%d"), **figures}))


if __name__ == "__main__":
    main()
