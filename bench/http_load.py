"""HTTP serving under a mixed load, against a bare FastAPI endpoint measured in the same run.

Targets (issue "Speed where users feel it"): with ``consentry serve --workers 2``, server CPU <= 1 ms per
request, and >= 1,000 req/s with p99 <= 50 ms, on SQLite and on PostgreSQL.

The load is open loop: request ``i`` of a step is due at ``start + i / rate`` whatever happened before,
and its latency counts from that intended send time (a slow server cannot hide its queue by slowing the
generator down). Requests go over persistent HTTP/1.1 connections written by hand on asyncio streams,
so the generator costs a few tens of microseconds per request; its own CPU is reported per step.

The mix, over 1,000 generated accounts (each with a token) and their posts:
60% post reads (``GET /v1/platform/posts/{id}``), 15% listings (``GET /v1/platform/accounts/{id}/posts``),
20% settings reads (``GET /v1/me/settings``), 5% settings changes (``PUT /v1/me/settings``).
The bare baseline is one FastAPI route returning a small JSON document under the same uvicorn, same
number of workers, driven by the same generator at the same rates.

Server CPU is the user + system time of the server's whole process tree (from ``/proc``) over the step,
divided by the requests completed. Both servers run side by side and the steps alternate between them
(Consentry at a rate, then the bare endpoint at the same rate), so a change of load on a shared machine
falls on both; with ``--runs N`` every step is measured N times and the table holds the medians.

    .venv/bin/python bench/http_load.py [--rates 250,500,1000,1500] [--seconds 10] [--runs 1]
                                        [--workers 2] [--postgres URL] [--skip-bare]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report

TICKS = os.sysconf("SC_CLK_TCK")


def bare_app() -> Any:
    """The baseline: one route, a small JSON body, nothing else."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/v1/platform/posts/{post_id}")
    def read(post_id: int) -> dict[str, Any]:
        return {"id": post_id, "author": 1, "text": "hello", "visibility": "public"}

    return app


# --- set-up ----------------------------------------------------------------------------------------


@dataclass
class World:
    """What the load needs: post ids, author ids and one token per account."""

    posts: list[int]
    authors: list[int]
    tokens: list[str]


def prepare(home: Path, url: str, accounts: int, posts: int) -> World:
    """Seed a generated platform into ``url`` and give every account a token."""
    from sqlalchemy import select

    from consentry.auth.service import create_token
    from consentry.config import Settings
    from consentry.consent.service import ConsentContext
    from consentry.db import Database
    from consentry.demo import seed_platform
    from consentry.migrate import upgrade
    from consentry.social.models import Account, Post

    database = Database(url)
    upgrade(database)
    ctx = ConsentContext.from_settings(Settings(home=home, database_url=url))
    seed_platform(database, ctx=ctx, accounts=accounts, posts=posts)
    with database.write() as session:
        ids = session.scalars(select(Account.id).where(Account.status == "active").order_by(Account.id)).all()
        tokens = [create_token(session, kind="account", account_id=i, label="load") for i in ids[:accounts]]
        readable = select(Post.id, Post.author_id).join(Account, Account.id == Post.author_id)
        rows = session.execute(
            readable.where(
                Post.visibility == "public",
                Post.deleted_at.is_(None),
                Account.status == "active",
                Account.protected.is_(False),
            )
        ).all()
        public = [post for post, _ in rows]
        authors = sorted({author for _, author in rows})
    database.dispose()
    return World(posts=list(public), authors=list(authors), tokens=tokens)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start a server and wait until it accepts connections."""
    with log.open("w") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                time.sleep(1.0)  # every worker process up
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of a process and all its descendants."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    family, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in family:
                family.add(pid)
                frontier.append(pid)
    return sum(times.get(pid, 0.0) for pid in family)


# --- the generator ---------------------------------------------------------------------------------


def request_bytes(method: str, path: str, token: str | None, body: bytes = b"") -> bytes:
    """One HTTP/1.1 request, keep-alive."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def mixed_requests(world: World, count: int, seed: int) -> list[bytes]:
    """``count`` requests of the mix, drawn in advance so drawing costs nothing during the step."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        token = rng.choice(world.tokens)
        kind = rng.random()
        if kind < 0.60:
            out.append(request_bytes("GET", f"/v1/platform/posts/{rng.choice(world.posts)}", token))
        elif kind < 0.75:
            out.append(
                request_bytes("GET", f"/v1/platform/accounts/{rng.choice(world.authors)}/posts", token)
            )
        elif kind < 0.95:
            out.append(request_bytes("GET", "/v1/me/settings", token))
        else:
            value = rng.choice(("allow", "deny"))
            body = json.dumps({"settings": {"assistant_realtime": value}}).encode()
            out.append(request_bytes("PUT", "/v1/me/settings", token, body))
    return out


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at >= 0:
        length = int(lower[at + 15 : lower.index(b"\r\n", at)])
        await reader.readexactly(length)
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


@dataclass
class Step:
    """The outcome of one step of the load."""

    rate: int
    sent: int
    done: int
    errors: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    server_cpu: float
    generator_cpu: float


async def run_step(port: int, requests: list[bytes], rate: int, seconds: float, connections: int) -> Step:
    """Send ``rate`` requests a second for ``seconds`` (open loop) and measure."""
    total = int(rate * seconds)
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (item := await queue.get()) is not None:
                due, payload = item
                try:
                    writer.write(payload)
                    status = await read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - due)
                statuses[status] = statuses.get(status, 0) + 1
                if status >= 400:
                    errors += 1
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    await asyncio.sleep(0.2)
    began = time.perf_counter()
    for i in range(total):
        due = began + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, requests[i % len(requests)]))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=max(60.0, seconds * 4))
    elapsed = time.perf_counter() - began
    return Step(rate, total, len(latencies), errors, elapsed, latencies, statuses, 0.0, 0.0)


def measure(port: int, pid: int, requests: list[bytes], rate: int, seconds: float, connections: int) -> Step:
    """One step with the server's and the generator's CPU around it."""
    server_before = tree_cpu_seconds(pid)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    generator_before = usage.ru_utime + usage.ru_stime
    step = asyncio.run(run_step(port, requests, rate, seconds, connections))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    step.server_cpu = tree_cpu_seconds(pid) - server_before
    step.generator_cpu = usage.ru_utime + usage.ru_stime - generator_before
    return step


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of the values, 0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(name: str, step: Step) -> dict[str, Any]:
    """A step as a row of the report."""
    return {
        "server": name,
        "target_rps": step.rate,
        "achieved_rps": round(step.done / step.seconds, 1),
        "errors": step.errors,
        "statuses": {str(k): v for k, v in sorted(step.statuses.items())},
        "p50_ms": round(percentile(step.latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(step.latencies, 0.99) * 1000, 2),
        "server_cpu_ms_per_request": round(step.server_cpu / max(step.done, 1) * 1000, 3),
        "generator_cpu_share": round(step.generator_cpu / step.seconds, 3),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    header = (
        "| server | target req/s | achieved req/s | errors | p50 ms | p99 ms | server CPU ms/req "
        "| generator CPU |"
    )
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        lines.append(
            f"| {r['server']} | {r['target_rps']} | {r['achieved_rps']} | {r['errors']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['server_cpu_ms_per_request']} | {r['generator_cpu_share']:.0%} |"
        )
    return "\n".join(lines)


@dataclass
class Server:
    """A running server and the requests it is driven with."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    requests: list[bytes]


def medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (server, rate): the median of each figure over the runs."""
    keys = ("achieved_rps", "p50_ms", "p99_ms", "server_cpu_ms_per_request", "generator_cpu_share")
    grouped: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["server"], row["target_rps"]), []).append(row)
    out = []
    for (server, rate), group in grouped.items():
        row: dict[str, Any] = {"server": server, "target_rps": rate, "runs": len(group)}
        row["errors"] = sum(r["errors"] for r in group)
        for key in keys:
            row[key] = round(statistics.median(r[key] for r in group), 3)
        out.append(row)
    return out


def run_steps(
    servers: list[Server], rates: list[int], seconds: float, connections: int, runs: int
) -> list[dict[str, Any]]:
    """Warm every server up, then each rate ``runs`` times, the servers alternating step by step (so a
    change of load on a shared machine falls on both); prints each row as it is measured."""
    for server in servers:
        measure(server.port, server.process.pid, server.requests, min(rates[0], 200), 2.0, connections)
    rows = []
    for _ in range(runs):
        for rate in rates:
            for server in servers:
                step = measure(server.port, server.process.pid, server.requests, rate, seconds, connections)
                row = summarise(server.name, step)
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="250,500,1000,1500", help="requests per second of each step")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each step")
    parser.add_argument("--runs", type=int, default=1, help="times each step is measured (medians)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument(
        "--postgres", help="a PostgreSQL URL to create a scratch database in (default: SQLite)"
    )
    parser.add_argument("--skip-bare", action="store_true", help="do not measure the bare endpoint")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="consentry-load-") as folder:
        home = Path(folder) / "home"
        url, drop = f"sqlite:///{home / 'consentry.db'}", None
        if args.postgres:
            url, drop = scratch_postgres(args.postgres)
        servers: list[Server] = []
        try:
            world = prepare(home, url, args.accounts, args.posts)
            env = {**os.environ, "CONSENTRY_HOME": str(home), "CONSENTRY_DATABASE_URL": url}
            port = free_port()
            command = [sys.executable, "-m", "consentry.cli", "serve", "--port", str(port)]
            process = start([*command, "--workers", str(args.workers)], env, port, Path(folder) / "serve.log")
            servers.append(Server("consentry", port, process, mixed_requests(world, 50_000, seed=1)))
            if not args.skip_bare:
                port = free_port()
                bare = [
                    *(sys.executable, "-m", "uvicorn", "http_load:bare_app", "--factory"),
                    *("--app-dir", str(Path(__file__).parent), "--port", str(port)),
                    *("--workers", str(args.workers)),
                ]
                process = start(bare, dict(os.environ), port, Path(folder) / "bare.log")
                paths = [request_bytes("GET", f"/v1/platform/posts/{i}", None) for i in range(1000)]
                servers.append(Server("bare", port, process, paths))
            rows = run_steps(servers, rates, args.seconds, args.connections, args.runs)
        finally:
            for server in servers:
                server.process.terminate()
                server.process.wait(timeout=60)
            if drop is not None:
                drop()
    steps = medians(rows)
    figures: dict[str, Any] = {
        "database": "postgresql" if args.postgres else "sqlite",
        "workers": args.workers,
        "seconds_per_step": args.seconds,
        "runs": args.runs,
        "steps": steps,
    }
    mine = [r for r in steps if r["server"] == "consentry"]
    base = [r for r in steps if r["server"] == "bare"]
    if mine and base:
        cpu = statistics.median(r["server_cpu_ms_per_request"] for r in mine)
        bare_cpu = statistics.median(r["server_cpu_ms_per_request"] for r in base)
        figures["cpu_ms_per_request_median"] = cpu
        figures["bare_cpu_ms_per_request_median"] = bare_cpu
        figures["cpu_ratio_to_bare"] = round(cpu / bare_cpu, 2) if bare_cpu else None
    report("http_load", figures)
    print(table(steps))


def scratch_postgres(admin_url: str) -> tuple[str, Any]:
    """A fresh database on the given server, and a function that drops it."""
    import sqlalchemy as sa

    name = f"consentry_load_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return url, drop


if __name__ == "__main__":
    main()
