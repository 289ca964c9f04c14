"""Benchmark: a 10M-post release with the Spark engine in local mode and on a standalone cluster of one
and two workers, against the DuckDB engine measured in the same run; where Spark's time goes.

The lake and ledger are those of ``bench/dataset_build.py`` (1,000,000 accounts, 10,000,000 posts,
seed 0; made once in ``--cache``). Configurations, each build in its own subprocess (the build process
is the Spark driver):

- ``duckdb``: the default engine (the baseline);
- ``local[2]``: Spark in local mode, two task threads inside the driver;
- ``standalone-1`` / ``standalone-2``: a standalone master with one or two workers of one core each,
  started from the installed PySpark (``consentry.datasets.engines.spark_cluster``) before the build
  and stopped after it (not timed).

Every Spark build writes an event log; each completed stage is put in one class by its task metrics:
``scan`` (it reads the lake's files), ``write`` (it writes the release's part files), ``shuffle`` (it
only reads shuffle blocks: joins, aggregations, sorts). Wall time per class is the sum of its stages'
durations, task time the sum of their tasks' run times; what is left of the build's wall time is driver
work (author facts, collecting lineage ids, the manifest) and scheduling.

    .venv/bin/python bench/spark_cluster.py [--cache /tmp/consentry-bench] [--runs 1]
                                            [--executor-memory 3g] [--only local,standalone-2]
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

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
CONFIGURATIONS = ("duckdb", "local[2]", "standalone-1", "standalone-2")
PREPARE = Path(__file__).resolve().parent / "dataset_build.py"


# --- child: one build -------------------------------------------------------------------------------


def child_build(
    cache: Path, out: Path, engine: str, master: str | None, options: dict[str, str]
) -> dict[str, Any]:
    """One first-party release of the 10M-post lake; the Spark session is stopped at the end so that
    its event log is complete."""
    from consentry.config import Settings
    from consentry.consent.service import ConsentContext
    from consentry.datasets import service
    from consentry.db import Database

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

    usage = resource.getrusage(resource.RUSAGE_SELF)
    started, cpu = time.perf_counter(), usage.ru_utime + usage.ru_stime
    release = service.build_release(
        database,
        ctx=ctx,
        recipient="assistant",
        purpose="train-ai",
        categories=["posts"],
        lake=cache / "lake-10m",
        out=out,
        as_of=AS_OF,
        engine=engine,
        spark_master=master,
        engine_options=options,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if engine == "spark":
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession()
        if session is not None:
            session.stop()
    return {
        "seconds": seconds,
        "driver_cpu": usage.ru_utime + usage.ru_stime - cpu,
        "rows": release.rows,
        "stages": stages,
    }


# --- event log --------------------------------------------------------------------------------------


def _metric(info: dict[str, Any], name: str) -> float:
    for accumulable in info.get("Accumulables", []):
        if accumulable.get("Name") == name:
            return float(accumulable.get("Value") or 0)
    return 0.0


def stage_breakdown(log_dir: Path) -> dict[str, Any]:
    """Wall and task seconds per class of stage (scan, shuffle, write) from the one event log in
    ``log_dir``, with bytes read, shuffled and written."""
    logs = sorted(  # Spark 4 rolls event logs by default: eventlog_v2_<app>/events_<n>_<app>
        (p for p in log_dir.rglob("*") if p.is_file() and not p.name.startswith((".", "appstatus"))),
        key=lambda p: (p.parent.name, int(p.name.split("_")[1]) if p.name.startswith("events_") else 0),
    )
    if not logs:
        raise SystemExit(f"no Spark event log in {log_dir}")
    classes: dict[str, dict[str, float]] = {
        name: {"stages": 0, "wall_s": 0.0, "task_s": 0.0, "bytes": 0.0}
        for name in ("scan", "shuffle", "write")
    }
    executors: set[str] = set()
    for line in (line for log in logs for line in log.read_text("utf-8").splitlines()):
        event = json.loads(line)
        kind = event.get("Event")
        if kind == "SparkListenerExecutorAdded":
            executors.add(str(event.get("Executor ID")))
        if kind != "SparkListenerStageCompleted":
            continue
        info = event["Stage Info"]
        read = _metric(info, "internal.metrics.input.bytesRead")
        written = _metric(info, "internal.metrics.output.bytesWritten")
        shuffled = _metric(info, "internal.metrics.shuffle.read.remoteBytesRead") + _metric(
            info, "internal.metrics.shuffle.read.localBytesRead"
        )
        if written > 0:
            name, moved = "write", written
        elif read > 0:
            name, moved = "scan", read
        else:
            name, moved = "shuffle", shuffled
        wall = (info.get("Completion Time", 0) - info.get("Submission Time", 0)) / 1000
        entry = classes[name]
        entry["stages"] += 1
        entry["wall_s"] += wall
        entry["task_s"] += _metric(info, "internal.metrics.executorRunTime") / 1000
        entry["bytes"] += moved
    for entry in classes.values():
        entry["wall_s"] = round(entry["wall_s"], 2)
        entry["task_s"] = round(entry["task_s"], 2)
        entry["mb"] = round(entry.pop("bytes") / 1e6, 1)
    return {"classes": classes, "executors": len(executors - {"driver"})}


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
    parser.add_argument("--runs", type=int, default=1, help="builds per configuration (medians reported)")
    parser.add_argument("--executor-memory", default="3g")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--only", default=",".join(CONFIGURATIONS), help="comma-separated configurations")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        _, cache, out, engine, master, options = args.child
        result = child_build(Path(cache), Path(out), engine, master or None, json.loads(options))
        print(json.dumps(result))
        return

    from consentry.datasets.engines.spark_cluster import start_standalone

    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    print(
        f"spark cluster bench: cache {cache}, {args.runs} run(s); {platform.python_implementation()} "
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
    scratch = cache / "scratch-spark"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    figures: dict[str, Any] = {}
    wanted = [name for name in args.only.split(",") if name]
    # a first build records the lake's contract check, which later builds of the same files skip
    _child("build", str(cache), str(scratch / "warm"), "duckdb", "", "{}")
    shutil.rmtree(scratch / "warm", ignore_errors=True)
    for name in wanted:
        runs: list[dict[str, Any]] = []
        for number in range(args.runs):
            out = scratch / f"{name}-{number}".replace("[", "").replace("]", "")
            events = scratch / f"events-{out.name}"
            events.mkdir()
            options = {
                "spark.driver.memory": args.driver_memory,
                "spark.executor.memory": args.executor_memory,
                "spark.eventLog.enabled": "true",
                "spark.eventLog.compress": "false",
                "spark.eventLog.dir": events.as_uri(),
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
            }
            cluster = None
            if name == "duckdb":
                engine, master, options = "duckdb", "", {}
            elif name.startswith("local"):
                engine, master = "spark", name
            else:
                workers = int(name.split("-")[1])
                started = time.perf_counter()
                cluster = start_standalone(
                    work=scratch / f"cluster-{out.name}", workers=workers, cores=1, memory="4g"
                )
                print(f"{name}: cluster up in {time.perf_counter() - started:.1f} s", flush=True)
                engine, master = "spark", cluster.url
            os.sync()
            try:
                result = _child("build", str(cache), str(out), engine, master, json.dumps(options))
            finally:
                if cluster is not None:
                    cluster.stop()
            if engine == "spark":
                result.update(stage_breakdown(events))
            runs.append(result)
            shutil.rmtree(out, ignore_errors=True)
            print(f"{name} run {number + 1}: {json.dumps(result)}", flush=True)
        figures[name] = {
            "seconds": statistics.median(r["seconds"] for r in runs),
            "rows": runs[0]["rows"],
            **{k: v for k, v in runs[-1].items() if k not in ("seconds", "rows")},
        }
    if "duckdb" in figures:
        base = figures["duckdb"]["seconds"]
        for entry in figures.values():
            entry["ratio_to_duckdb"] = round(entry["seconds"] / base, 2)
    if "standalone-1" in figures and "standalone-2" in figures:
        one, two = figures["standalone-1"]["seconds"], figures["standalone-2"]["seconds"]
        figures["speedup_1_to_2_workers"] = round(one / two, 2)
        figures["parallel_efficiency"] = round(one / two / 2, 2)
        # the capacity model's unit: seconds per billion posts per executor (one core each here)
        figures["seconds_per_billion_posts_one_executor"] = round(one * 100, 0)
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"bench": "spark_cluster", "date": datetime.now(UTC).strftime("%Y-%m-%d"), **figures}))


if __name__ == "__main__":
    main()
