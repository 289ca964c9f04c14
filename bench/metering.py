"""Benchmarks of issue 6: middleware overhead, Redis round trips and accuracy, damages statements.

Run: ``.venv/bin/python bench/metering.py [--events 1000000] [--append docs/benchmarks.md]``

* Overhead: requests/s of a minimal FastAPI endpoint with and without the metering middleware (in-memory
  meter), driven in-process through the raw ASGI interface and through httpx's ASGI transport; the two
  apps alternate, several runs each, medians reported.
* Redis: the same endpoint with the Redis meter; round trips per request counted by a counting client
  wrapper and by the server's ``INFO commandstats``.
* Accuracy: 8 worker processes record events through the Redis meter concurrently; the total must be
  exact.
* Statements: 30 days of minute buckets for 10,000 organisations, from a Parquet export of the access
  log read with DuckDB, then windows, amounts and per-hour evidence for every organisation; plus a
  worst case (every organisation over the threshold every day) and one organisation's statement from
  SQLite through the service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from consentry.metering import damages
from consentry.metering.attribution import Directory, OrgPolicy, hash_key
from consentry.metering.meter import MemoryMeter, Meter
from consentry.metering.middleware import MeteringMiddleware, posts_header
from consentry.metering.redis_layout import CONSUME_LUA
from consentry.metering.redis_meter import RedisMeter

REDIS_URL = os.environ.get("CONSENTRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
KEY = "cso_bench-key"
USER_AGENT = (
    b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
)


# --- apps and drivers ----------------------------------------------------------------------------------


def make_app(meter: Meter | None) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/posts")
    async def posts() -> JSONResponse:
        return JSONResponse({"posts": [1, 2, 3]}, headers=posts_header(3))

    if meter is not None:
        directory = Directory(
            [OrgPolicy(id=1, name="Bench", mode="throttle", quota=10**12)], keys={hash_key(KEY): 1}
        )
        app.add_middleware(MeteringMiddleware, meter=meter, directory=directory)
    return app


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/posts",
        "raw_path": b"/posts",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench"),
            (b"user-agent", USER_AGENT),
            (b"authorization", f"Bearer {KEY}".encode()),
        ],
        "client": ("198.51.100.7", 50000),
        "server": ("bench", 80),
    }


async def drive_asgi(app: Any, requests: int) -> float:
    """Requests per second through the raw ASGI interface (no HTTP client overhead)."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    started = time.perf_counter()
    for _ in range(requests):
        await app(scope(), receive, send)
    elapsed = time.perf_counter() - started
    assert set(status) == {200}, set(status)
    return requests / elapsed


async def drive_httpx(app: Any, requests: int) -> float:
    """Requests per second through httpx's in-process ASGI transport."""
    import httpx

    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 50000))
    headers = {"user-agent": USER_AGENT.decode(), "authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        started = time.perf_counter()
        for _ in range(requests):
            response = await client.get("/posts", headers=headers)
            assert response.status_code == 200
        return requests / (time.perf_counter() - started)


def compare(
    driver: Callable[[Any, int], Any], plain: Any, metered: Any, requests: int, runs: int
) -> tuple[float, float]:
    """Median requests/s of both apps, alternating runs (after a warm-up)."""
    asyncio.run(driver(plain, requests // 10))
    asyncio.run(driver(metered, requests // 10))
    plain_rates, metered_rates = [], []
    for _ in range(runs):
        plain_rates.append(asyncio.run(driver(plain, requests)))
        metered_rates.append(asyncio.run(driver(metered, requests)))
    return statistics.median(plain_rates), statistics.median(metered_rates)


def plain_app() -> Any:
    """The minimal endpoint without the middleware (a uvicorn factory)."""
    return make_app(None)


def metered_app() -> Any:
    """The minimal endpoint with the middleware and the in-memory meter (a uvicorn factory)."""
    return make_app(MemoryMeter())


REQUEST = (
    b"GET /posts HTTP/1.1\r\nHost: bench\r\nUser-Agent: "
    + USER_AGENT
    + b"\r\nAuthorization: Bearer "
    + KEY.encode()
    + b"\r\n\r\n"
)


async def _load(port: int, seconds: float, connections: int) -> float:
    """Requests per second from ``connections`` keep-alive HTTP/1.1 connections for ``seconds``."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:40]
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            done += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return done / (time.perf_counter() - started)


def uvicorn_overhead(runs: int, seconds: float = 3.0, connections: int = 8) -> dict[str, float]:
    """Requests/s of both apps served by uvicorn on 127.0.0.1 (one worker each), alternating runs."""
    import socket
    import subprocess

    def free() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port

    servers = {}
    for name in ("plain_app", "metered_app"):
        port = free()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                f"metering:{name}",
                "--factory",
                "--app-dir",
                str(Path(__file__).parent),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
        )
        servers[name] = (port, process)
    try:
        for port, _ in servers.values():
            for _ in range(100):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            asyncio.run(_load(port, 0.5, connections))  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(runs):
            for name, (port, _) in servers.items():
                rates[name].append(asyncio.run(_load(port, seconds, connections)))
    finally:
        for _, process in servers.values():
            process.terminate()
            process.wait(timeout=10)
    plain, metered = statistics.median(rates["plain_app"]), statistics.median(rates["metered_app"])
    return {
        "uvicorn_plain": plain,
        "uvicorn_metered": metered,
        "uvicorn_overhead": (plain / metered - 1) * 100,
    }


def overhead(requests: int, runs: int) -> dict[str, float]:
    plain, metered = make_app(None), make_app(MemoryMeter())
    asgi_plain, asgi_metered = compare(drive_asgi, plain, metered, requests, runs)
    httpx_plain, httpx_metered = compare(drive_httpx, plain, metered, requests // 4, runs)
    served = uvicorn_overhead(runs)
    return {
        **served,
        "asgi_plain": asgi_plain,
        "asgi_metered": asgi_metered,
        "asgi_overhead": (asgi_plain / asgi_metered - 1) * 100,
        "httpx_plain": httpx_plain,
        "httpx_metered": httpx_metered,
        "httpx_overhead": (httpx_plain / httpx_metered - 1) * 100,
    }


# --- Redis ---------------------------------------------------------------------------------------------


def redis_round_trips(requests: int) -> dict[str, float]:
    import redis
    import redis.asyncio as aioredis

    class Counting(aioredis.Redis):
        commands = 0

        async def execute_command(self, *args: Any, **options: Any) -> Any:
            type(self).commands += 1
            return await super().execute_command(*args, **options)

    prefix = f"consentry-bench:{uuid.uuid4().hex}"
    sync = redis.Redis.from_url(REDIS_URL)

    def evalsha_calls() -> int:
        stats = sync.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)) + int(
            stats.get("cmdstat_eval", {}).get("calls", 0)
        )

    async def run() -> tuple[float, int, int, int]:
        client = Counting.from_url(REDIS_URL)
        await client.script_load(CONSUME_LUA)
        meter = RedisMeter(client=client, prefix=prefix)
        app = make_app(meter)
        await drive_asgi(app, 100)  # warm-up
        Counting.commands = 0
        before = evalsha_calls()
        rate = await drive_asgi(app, requests)
        scripts = evalsha_calls() - before
        commands = Counting.commands
        total = await meter.usage("org:1")
        await client.aclose()
        return rate, commands, scripts, total

    rate, commands, scripts, total = asyncio.run(run())
    keys = list(sync.scan_iter(match=f"{prefix}:*"))
    if keys:
        sync.delete(*keys)
    sync.close()
    return {
        "rate": rate,
        "round_trips_per_request": commands / requests,
        "server_script_calls_per_request": scripts / requests,
        "posts_counted": total,
    }


def _accuracy_worker(prefix: str, seed: int, events: int, concurrency: int) -> int:
    async def work() -> int:
        meter = RedisMeter(REDIS_URL, prefix=prefix, timeout=5.0)
        rng = random.Random(seed)
        sent = 0
        per_task = events // concurrency

        async def task(count: int) -> int:
            total = 0
            for _ in range(count):
                posts = rng.randint(1, 5)
                usage = await meter.consume("org:1", posts)
                assert usage.accepted and not usage.degraded
                total += posts
            return total

        counts = [per_task] * concurrency
        counts[0] += events - per_task * concurrency
        sent = sum(await asyncio.gather(*(task(count) for count in counts)))
        await meter.aclose()
        return sent

    return asyncio.run(work())


def accuracy(events: int, workers: int = 8) -> dict[str, float]:
    import redis

    prefix = f"consentry-bench:{uuid.uuid4().hex}"
    context = multiprocessing.get_context("spawn")
    per_worker = events // workers
    started = time.perf_counter()
    with context.Pool(workers) as pool:
        sent = pool.starmap(_accuracy_worker, [(prefix, seed, per_worker, 8) for seed in range(workers)])
    elapsed = time.perf_counter() - started
    counted = asyncio.run(RedisMeter(REDIS_URL, prefix=prefix).usage("org:1"))
    sync = redis.Redis.from_url(REDIS_URL)
    keys = list(sync.scan_iter(match=f"{prefix}:*"))
    if keys:
        sync.delete(*keys)
    sync.close()
    return {
        "events": per_worker * workers,
        "workers": workers,
        "posts_sent": sum(sent),
        "posts_counted": counted,
        "lost": sum(sent) - counted,
        "seconds": elapsed,
        "events_per_second": per_worker * workers / elapsed,
    }


# --- statements ----------------------------------------------------------------------------------------

DAYS = 30
START = datetime(2026, 10, 1, tzinfo=UTC)


def _sorted_minutes(rng: np.random.Generator, per_org: np.ndarray, density: np.ndarray) -> np.ndarray:
    """Increasing random minutes per organisation (geometric gaps), within the 30 days."""
    total = int(per_org.sum())
    gaps = rng.geometric(np.repeat(density, per_org)).astype(np.int64)
    firsts = np.r_[0, np.cumsum(per_org)[:-1]]
    cumulative = np.cumsum(gaps)
    offset = np.repeat(cumulative[firsts] - gaps[firsts], per_org)
    minutes = cumulative - offset - 1
    return np.minimum(minutes, DAYS * 1440 - 1)[:total]


def realistic_dataset(orgs: int = 10_000, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1% of organisations read every minute (some days over the threshold), 9% one minute in ten,
    90% one minute in a hundred."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=orgs, p=[0.01, 0.09, 0.90])
    density = np.array([1.0, 0.1, 0.01])[kind]
    per_org = rng.binomial(DAYS * 1440, density)
    group = np.repeat(np.arange(orgs, dtype=np.int64), per_org)
    minutes = _sorted_minutes(rng, per_org, density)
    heavy = np.repeat(kind == 0, per_org)
    day = minutes // 1440
    daily_rate = rng.uniform(300, 1000, size=(orgs, DAYS))  # heavy readers: 0.4M to 1.4M posts a day
    posts = np.where(heavy, rng.poisson(daily_rate[group, day]), rng.integers(1, 40, size=group.size))
    base = damages.epoch_minute(START)
    keep = np.r_[True, (group[1:] != group[:-1]) | (minutes[1:] != minutes[:-1])]
    return group[keep], minutes[keep] + base, posts[keep].astype(np.int64)


def worst_dataset(orgs: int = 10_000, seed: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every organisation reads one minute in ten and is over the threshold every day."""
    rng = np.random.default_rng(seed)
    density = np.full(orgs, 0.1)
    per_org = rng.binomial(DAYS * 1440, density)
    group = np.repeat(np.arange(orgs, dtype=np.int64), per_org)
    minutes = _sorted_minutes(rng, per_org, density)
    keep = np.r_[True, (group[1:] != group[:-1]) | (minutes[1:] != minutes[:-1])]
    posts = rng.integers(4000, 12000, size=int(keep.sum()), dtype=np.int64)
    return group[keep], minutes[keep] + damages.epoch_minute(START), posts


SORTED_SCAN = """
    SELECT organisation_id, epoch_us(minute) // 60000000 AS m, posts AS p, requests AS r
    FROM read_parquet(?) WHERE minute >= ? AND minute < ?
"""
GROUPED = """
    SELECT organisation_id * 100000000 + epoch_us(minute) // 60000000 AS k, sum(posts)::BIGINT AS p,
           sum(requests)::BIGINT AS r
    FROM read_parquet(?) WHERE minute >= ? AND minute < ?
    GROUP BY ALL ORDER BY k
"""


def statements_from_parquet(path: Path, *, grouped: bool) -> tuple[float, float, damages.BatchStatement, int]:
    """Load minute buckets with DuckDB, then every organisation's statement: (load s, compute s, ...).

    ``grouped=False`` reads an export written in (organisation, minute) order as it is (NumPy merges
    rows of the same minute); ``grouped=True`` lets DuckDB aggregate and sort an export in any order.
    """
    import duckdb

    started = time.perf_counter()
    connection = duckdb.connect()
    connection.execute("SET enable_progress_bar = false")
    period = [str(path), START, START + timedelta(days=DAYS)]
    columns = connection.execute(GROUPED if grouped else SORTED_SCAN, period).fetchnumpy()
    connection.close()
    if grouped:
        group, minute = np.divmod(np.asarray(columns["k"], dtype=np.int64), 100_000_000)
    else:
        group, minute = columns["organisation_id"], columns["m"]
    loaded = time.perf_counter()
    buckets = damages.prepare(group, minute, columns["p"], columns["r"])
    batch = damages.batch_statements(buckets, damages.Terms())
    done = time.perf_counter()
    return loaded - started, done - loaded, batch, int(buckets.posts.size)


def worst_case(runs: int) -> dict[str, Any]:
    """Every organisation over the threshold every day: wall and CPU seconds (medians, every sample)."""
    worst_group, worst_minutes, worst_posts = worst_dataset()
    walls, cpus, windows = [], [], 0
    for _ in range(runs):
        started, cpu = time.perf_counter(), time.process_time()
        worst = damages.batch_statements(
            damages.prepare(worst_group, worst_minutes, worst_posts), damages.Terms()
        )
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        windows = len(worst.windows)
    return {
        "worst_buckets": int(worst_posts.size),
        "worst_seconds": statistics.median(walls),
        "worst_cpu_seconds": statistics.median(cpus),
        "worst_wall_samples": [round(w, 2) for w in walls],
        "worst_cpu_samples": [round(c, 2) for c in cpus],
        "worst_windows": windows,
        "load_average_1m": os.getloadavg()[0],
    }


def statements(runs: int) -> dict[str, float]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    group, minutes, posts = realistic_dataset()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "access_log.parquet"
        table = pa.table(
            {
                "organisation_id": pa.array(group, pa.int64()),
                "minute": pa.array(minutes * 60_000_000, pa.timestamp("us", tz="UTC")),
                "posts": pa.array(posts, pa.int64()),
                "requests": pa.array(np.ones_like(posts), pa.int64()),
            }
        )
        pq.write_table(table, path, row_group_size=1 << 20)
        results = [statements_from_parquet(path, grouped=False) for _ in range(runs)]
        grouped = [statements_from_parquet(path, grouped=True) for _ in range(runs)]
    load = statistics.median(r[0] for r in results)
    compute = statistics.median(r[1] for r in results)
    grouped_total = statistics.median(r[0] + r[1] for r in grouped)
    batch, buckets = results[0][2], results[0][3]
    assert grouped[0][2].totals() == batch.totals()

    worst = worst_case(runs)
    return {
        "buckets": buckets,
        "load_seconds": load,
        "compute_seconds": compute,
        "total_seconds": load + compute,
        "grouped_seconds": grouped_total,
        "windows": len(batch.windows),
        "organisations_in_breach": len(batch.totals()),
        "amount_usd": int(batch.amount_cents.sum()) / 100,
        "worst_buckets": worst["worst_buckets"],
        "worst_seconds": worst["worst_seconds"],
        "worst_windows": worst["worst_windows"],
    }


def single_statement() -> dict[str, float]:
    """One organisation, 30 days, a bucket every minute, from SQLite through the service."""
    from consentry.db import Database
    from consentry.metering import service
    from consentry.migrate import upgrade

    with tempfile.TemporaryDirectory() as folder:
        database = Database(f"sqlite:///{folder}/bench.db")
        upgrade(database)
        rng = np.random.default_rng(3)
        with database.write() as session:
            org = service.create_organisation(session, name="Heavy reader")
            org_id = org.id
            events = [
                service.AccessEvent(
                    f"org:{org_id}",
                    START + timedelta(minutes=i),
                    int(count),
                    org_id,
                    "/v1/posts",
                    "192.0.2.1",
                )
                for i, count in enumerate(rng.poisson(800, size=DAYS * 1440))
            ]
            service.append_access_log(session, events=events)
        started = time.perf_counter()
        with database.read() as session:
            result = service.statement(
                session, organisation=org_id, start=START, end=START + timedelta(days=DAYS)
            )
        elapsed = time.perf_counter() - started
        database.dispose()
    return {"buckets": DAYS * 1440, "seconds": elapsed, "windows": len(result.windows)}


# --- report --------------------------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    over: dict[str, float],
    red: dict[str, float],
    acc: dict[str, float],
    stm: dict[str, float],
    one: dict[str, float],
) -> str:
    cpu = os.cpu_count()
    lines = [
        "## Metering and damages (issue 6)",
        "",
        f"Command: `.venv/bin/python bench/metering.py --events {args.events}` — "
        f"{datetime.now(UTC):%Y-%m-%d}, Python {platform.python_version()}, {cpu} CPUs, "
        "Redis and the bench on 127.0.0.1.",
        "",
        "**Middleware overhead** (minimal async FastAPI endpoint reporting 3 posts; in-memory meter; "
        f"median of {args.runs} alternating runs):",
        "",
        "| driver | without middleware | with middleware | overhead |",
        "|---|---|---|---|",
        f"| raw ASGI calls ({args.requests} requests/run) | {over['asgi_plain']:,.0f} req/s | "
        f"{over['asgi_metered']:,.0f} req/s | {over['asgi_overhead']:.1f}% |",
        f"| httpx ASGI transport ({args.requests // 4} requests/run) | {over['httpx_plain']:,.0f} req/s | "
        f"{over['httpx_metered']:,.0f} req/s | {over['httpx_overhead']:.1f}% |",
        f"| uvicorn on 127.0.0.1, 8 keep-alive connections, 3 s/run | {over['uvicorn_plain']:,.0f} req/s | "
        f"{over['uvicorn_metered']:,.0f} req/s | {over['uvicorn_overhead']:.1f}% |",
        "",
        f"Per request the middleware adds {1e6 / over['asgi_metered'] - 1e6 / over['asgi_plain']:.1f} µs "
        f"to the endpoint's {1e6 / over['asgi_plain']:.1f} µs (raw ASGI).",
        "",
        f"**Redis meter**: {red['rate']:,.0f} req/s through the middleware (raw ASGI, {args.redis_requests} "
        f"requests); {red['round_trips_per_request']:.2f} Redis commands per request counted by the client "
        f"wrapper and {red['server_script_calls_per_request']:.2f} script calls per request in the server's "
        f"`INFO commandstats` (one `EVALSHA` = one round trip); {int(red['posts_counted']):,} posts counted "
        f"for {args.redis_requests + 100:,} requests of 3 posts.",
        "",
        f"**Accuracy**: {acc['workers']} worker processes (8 concurrent tasks each) recorded "
        f"{int(acc['events']):,} events ({int(acc['posts_sent']):,} posts) through the Redis meter in "
        f"{acc['seconds']:.1f} s ({acc['events_per_second']:,.0f} events/s); Redis counted "
        f"{int(acc['posts_counted']):,}: **{int(acc['lost'])} lost**.",
        "",
        f"**Statements, 30 days of minute buckets for 10,000 organisations** (median of {args.runs}): "
        f"{int(stm['buckets']):,} buckets (1% of organisations read every minute, 9% one minute in ten, "
        f"90% one in a hundred) read from a Parquet export of the access log with DuckDB in "
        f"{stm['load_seconds']:.2f} s, then windows, amounts and per-hour evidence for every organisation in "
        f"{stm['compute_seconds']:.2f} s: **{stm['total_seconds']:.2f} s** in all "
        f"({int(stm['windows'])} breach windows, {int(stm['organisations_in_breach'])} organisations, "
        f"USD {stm['amount_usd']:,.2f}). The same export read in any order, aggregated and sorted by DuckDB "
        f"(`GROUP BY ... ORDER BY`): {stm['grouped_seconds']:.2f} s. "
        "Worst case, every organisation over the threshold every day "
        f"({int(stm['worst_buckets']):,} buckets, {int(stm['worst_windows']):,} windows): "
        f"{stm['worst_seconds']:.2f} s of computation.",
        "",
        "One organisation's statement from SQLite through the service "
        f"(30 days, {int(one['buckets']):,} minute buckets, {int(one['windows'])} windows, with evidence): "
        f"{one['seconds']:.2f} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events for the accuracy run")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per overhead run")
    parser.add_argument("--redis-requests", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--append", type=Path, help="append the section to this Markdown file")
    parser.add_argument(
        "--parts",
        help="only these parts, comma-separated (overhead, redis, accuracy, statements, worst, single); "
        "prints their figures as JSON instead of the Markdown section",
    )
    args = parser.parse_args()
    if args.parts:
        parts: dict[str, Callable[[], dict[str, Any]]] = {
            "overhead": lambda: overhead(args.requests, args.runs),
            "redis": lambda: redis_round_trips(args.redis_requests),
            "accuracy": lambda: accuracy(args.events),
            "statements": lambda: statements(max(1, args.runs // 2 + 1)),
            "single": single_statement,
            "worst": lambda: worst_case(args.runs),
        }
        for name in args.parts.split(","):
            print(json.dumps({name: parts[name]()}), flush=True)
        return

    print("overhead ...", flush=True)
    over = overhead(args.requests, args.runs)
    print(over, flush=True)
    print("redis round trips ...", flush=True)
    red = redis_round_trips(args.redis_requests)
    print(red, flush=True)
    print("accuracy ...", flush=True)
    acc = accuracy(args.events)
    print(acc, flush=True)
    print("statements ...", flush=True)
    stm = statements(max(1, args.runs // 2 + 1))
    print(stm, flush=True)
    one = single_statement()
    print(one, flush=True)
    text = report(args, over, red, acc, stm, one)
    print(text)
    if args.append:
        existing = (
            args.append.read_text()
            if args.append.exists()
            else "# Benchmarks\n\nFigures measured by the scripts in `bench/`.\n"
        )
        args.append.write_text(existing.rstrip("\n") + "\n\n" + text)
    if acc["lost"] != 0:
        raise SystemExit("the Redis meter lost events")


if __name__ == "__main__":
    main()
