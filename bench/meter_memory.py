"""Redis memory of the meter per organisation, over a realistic day of minute buckets (issue 17).

Run: ``.venv/bin/python bench/meter_memory.py [--orgs 1000] [--append docs/benchmarks.md]``

Starts its own ``redis-server`` (and a Redis Cluster of three masters) on free loopback ports, so that
``INFO memory`` counts the meter alone. For each reading profile it writes ``--orgs`` organisations'
last 24 hours in the meter's layout (one hash per hour of minute buckets and one hash of hour totals,
written by the meter's own re-sync script), then reports keys per organisation and bytes per
organisation from ``INFO memory`` (``used_memory`` after minus before) and from ``MEMORY USAGE`` summed
over the keys. Also the size of one signature nonce key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consentry.metering.redis_layout import ResyncBatch
from consentry.metering.redis_meter import RedisMeter

PROFILES = [
    ("every minute (a crawler reading all day)", 1),
    ("one minute in ten", 10),
    ("one minute in a hundred", 100),
]


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port < 55_000:
            return port


def start(port: int, directory: str, *, cluster: bool = False) -> subprocess.Popen[bytes]:
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    command += ["--dir", directory, "--dbfilename", f"dump-{port}.rdb"]
    if cluster:
        command += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return process


def used_memory(ports: list[int]) -> int:
    import redis

    total = 0
    for port in ports:
        client = redis.Redis(port=port)
        total += int(client.info("memory")["used_memory"])
        client.close()
    return total


def key_usage(ports: list[int], prefix: str) -> tuple[int, int]:
    """Keys and MEMORY USAGE bytes under ``prefix`` over every node."""
    import redis

    keys = size = 0
    for port in ports:
        client = redis.Redis(port=port)
        for name in client.scan_iter(match=f"{prefix}:*", count=1000):
            keys += 1
            size += int(client.memory_usage(name, samples=0) or 0)
        client.close()
    return keys, size


async def write(url: str, prefix: str, orgs: int, every: int, seed: int) -> None:
    """``orgs`` organisations' last 24 hours: a bucket every ``every`` minutes on average."""
    rng = random.Random(seed)
    now = int(time.time() // 60)
    meter = RedisMeter(url, prefix=prefix, timeout=30)
    client = meter._redis()
    from consentry.metering.redis_layout import RECONCILE_LUA

    sha = await client.script_load(RECONCILE_LUA)
    for start_org in range(0, orgs, 50):
        pipe = client.pipeline(transaction=False)
        for org in range(start_org, min(orgs, start_org + 50)):
            minutes = {
                m: rng.randint(1, 5000) for m in range(now - 1439, now + 1) if rng.random() < 1 / every
            }
            if not minutes:
                minutes = {now: 1}
            batch = ResyncBatch(f"bench-{org}", {f"org:{org + 1}": minutes})
            for keys, args in batch.script_calls(prefix):
                pipe.evalsha(sha, len(keys), *keys, *args)
        await pipe.execute()
    # the re-sync markers are not part of the steady state: remove them
    for port_key in [k async for k in client.scan_iter(match=f"{prefix}:*:resynced:*", count=1000)]:
        await client.delete(port_key)
    await meter.aclose()


def measure(url: str, ports: list[int], orgs: int) -> list[dict[str, Any]]:
    rows = []
    for index, (name, every) in enumerate(PROFILES):
        prefix = f"consentry:meter-{index}"
        before = used_memory(ports)
        asyncio.run(write(url, prefix, orgs, every, seed=index))
        after = used_memory(ports)
        keys, size = key_usage(ports, prefix)
        rows.append(
            {
                "profile": name,
                "keys_per_org": keys / orgs,
                "info_bytes_per_org": (after - before) / orgs,
                "usage_bytes_per_org": size / orgs,
            }
        )
    return rows


def nonce_bytes(url: str, ports: list[int]) -> float:
    async def claim(count: int) -> None:
        meter = RedisMeter(url, prefix="consentry:nonce-bench")
        until = time.time() + 600
        for number in range(count):
            await meter.claim(f"{number:032x}", until=until)
        await meter.aclose()

    before = used_memory(ports)
    asyncio.run(claim(10_000))
    return (used_memory(ports) - before) / 10_000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orgs", type=int, default=1000, help="organisations per reading profile")
    parser.add_argument("--append", type=Path, help="append the section to this Markdown file")
    args = parser.parse_args()
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        raise SystemExit("redis-server and redis-cli are needed")
    results: dict[str, list[dict[str, Any]]] = {}
    nonce: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        process = start(port, directory)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            results["one Redis"] = measure(url, [port], args.orgs)
            nonce["one Redis"] = nonce_bytes(url, [port])
        finally:
            process.terminate()
            process.wait(timeout=20)
        ports = [free_port() for _ in range(3)]
        processes = [start(p, directory, cluster=True) for p in ports]
        try:
            nodes = [f"127.0.0.1:{p}" for p in ports]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *nodes, "--cluster-yes"], check=True, capture_output=True
            )
            time.sleep(2)
            url = "redis+cluster://" + ",".join(nodes)
            results["Redis Cluster, 3 masters"] = measure(url, ports, args.orgs)
            nonce["Redis Cluster, 3 masters"] = nonce_bytes(url, ports)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=20)
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    version = version.removeprefix("v=")
    lines = [
        "## Meter keys and Redis memory per organisation (issue 17)",
        "",
        f"Command: `.venv/bin/python bench/meter_memory.py --orgs {args.orgs}` — "
        f"{datetime.now(UTC):%Y-%m-%d}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, `redis-server` "
        f"{version}"
        " with its default configuration (listpack hashes), started by the script. "
        f"{args.orgs} organisations per profile, the last 24 hours of minute buckets each:",
        "",
        "| Redis | reading profile | keys per organisation | bytes per organisation (INFO used_memory) | "
        "bytes per organisation (MEMORY USAGE of its keys) |",
        "|---|---|---|---|---|",
    ]
    for where, rows in results.items():
        for row in rows:
            lines.append(
                f"| {where} | {row['profile']} | {row['keys_per_org']:.1f} | "
                f"{row['info_bytes_per_org']:,.0f} | {row['usage_bytes_per_org']:,.0f} |"
            )
    lines += [
        "",
        "One signature nonce key (kept until the signature expires, plus the clock skew): "
        + ", ".join(f"{value:,.0f} bytes ({where})" for where, value in nonce.items())
        + ".",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.append:
        existing = args.append.read_text() if args.append.exists() else "# Benchmarks\n"
        args.append.write_text(existing.rstrip("\n") + "\n\n" + text)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
