"""Benchmark of issue 18: the meter's cost for a Web Bot Auth signed request against an unsigned one.

Run: ``.venv/bin/python bench/signed_metering.py [--requests 5000] [--runs 5] [--append docs/benchmarks.md]``

One run measures, alternating the variants, medians of ``--runs``:

* the minimal FastAPI endpoint without the middleware (the baseline), with the middleware and an
  unsigned request (API key; cached attribution), and with the middleware and a signed request (a
  fresh nonce each, so every request is verified: Signature-Input parsed, signature base built, the
  Ed25519 signature checked, the nonce claimed), keys cached (pinned);
* through the raw ASGI interface with the in-memory meter, with the Redis meter (the nonce claimed in
  Redis, a second round trip), and served by uvicorn on 127.0.0.1 (8 keep-alive connections).

Requests are signed before timing starts (signing is the crawler's cost, not the server's).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consentry.metering.attribution import Directory, OrgPolicy, hash_key
from consentry.metering.meter import MemoryMeter, Meter
from consentry.metering.middleware import MeteringMiddleware, MiddlewareMetrics, posts_header
from consentry.metering.redis_meter import RedisMeter
from consentry.metering.webbotauth import (
    DIRECTORY_PATH,
    Identity,
    IdentityIndex,
    SignatureVerifier,
    SignedRequest,
    public_jwk,
)

REDIS_URL = os.environ.get("CONSENTRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
KEY = "cso_bench-key"
AGENT = "https://crawler.bench"
AUTHORITY = "bench"
# a fixed key, so that the uvicorn workers (other processes) know it
PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYID = public_jwk(PRIVATE.public_key())["kid"]
USER_AGENT = b"Mozilla/5.0 (compatible; BenchBot/1.0; +https://crawler.bench/bot)"


def make_app(meter: Meter | None, metrics: MiddlewareMetrics | None = None) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/posts")
    async def posts() -> JSONResponse:
        return JSONResponse({"posts": [1, 2, 3]}, headers=posts_header(3))

    if meter is not None:
        keys = {KEYID: PRIVATE.public_key()}
        identity = Identity(1, 1, AGENT, AGENT + DIRECTORY_PATH, pinned=keys)
        directory = Directory(
            [OrgPolicy(id=1, name="Bench", mode="throttle", quota=10**12)],
            keys={hash_key(KEY): 1},
            identities=IdentityIndex([identity]),
        )
        app.add_middleware(
            MeteringMiddleware,
            meter=meter,
            directory=directory,
            signatures=SignatureVerifier(authorities=[AUTHORITY]),
            metrics=metrics,
        )
    return app


def plain_app() -> Any:
    """The endpoint without the middleware (a uvicorn factory)."""
    return make_app(None)


def metered_app() -> Any:
    """The endpoint with the middleware and the in-memory meter (a uvicorn factory)."""
    return make_app(MemoryMeter())


def signed_headers(count: int) -> list[list[tuple[bytes, bytes]]]:
    """``count`` request header lists, each signed with a fresh nonce (RFC 9421, Web Bot Auth)."""
    created = int(time.time())
    expires = created + 3600
    agent_field = f'sig1="{AGENT}"'
    out = []
    for _ in range(count):
        nonce = base64.b64encode(os.urandom(32)).decode()
        params = (
            f'("@authority" "signature-agent";key="sig1");created={created};expires={expires};'
            f'keyid="{KEYID}";alg="ed25519";nonce="{nonce}";tag="web-bot-auth"'
        )
        base = f'"@authority": {AUTHORITY}\n"signature-agent";key="sig1": "{AGENT}"\n'
        base += f'"@signature-params": {params}'
        signature = base64.b64encode(PRIVATE.sign(base.encode())).decode()
        out.append(
            [
                (b"host", AUTHORITY.encode()),
                (b"user-agent", USER_AGENT),
                (b"signature-agent", agent_field.encode()),
                (b"signature-input", f"sig1={params}".encode()),
                (b"signature", f"sig1=:{signature}:".encode()),
            ]
        )
    return out


UNSIGNED = [
    (b"host", AUTHORITY.encode()),
    (b"user-agent", USER_AGENT),
    (b"authorization", f"Bearer {KEY}".encode()),
]


def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
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
        "headers": headers,
        "client": ("198.51.100.7", 50000),
        "server": (AUTHORITY, 80),
    }


async def drive(app: Any, requests: list[list[tuple[bytes, bytes]]]) -> float:
    """Seconds per request through the raw ASGI interface."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    started = time.perf_counter()
    for headers in requests:
        await app(scope(headers), receive, send)
    elapsed = time.perf_counter() - started
    assert set(status) == {200}, set(status)
    return elapsed / len(requests)


def in_process(meter_kind: str, requests: int, runs: int) -> dict[str, float]:
    """Median seconds per request: no middleware, unsigned, signed (raw ASGI)."""
    metrics = MiddlewareMetrics()
    prefix = f"consentry-bench:{uuid.uuid4().hex}"
    meter: Meter = MemoryMeter() if meter_kind == "memory" else RedisMeter(REDIS_URL, prefix=prefix)
    plain, metered = make_app(None), make_app(meter, metrics)
    samples: dict[str, list[float]] = {"plain": [], "unsigned": [], "signed": []}

    async def run() -> None:
        unsigned = [UNSIGNED] * requests
        await drive(plain, unsigned[:200])
        await drive(metered, unsigned[:200])
        await drive(metered, signed_headers(200))
        for _ in range(runs):
            signed = signed_headers(requests)
            samples["plain"].append(await drive(plain, unsigned))
            samples["unsigned"].append(await drive(metered, unsigned))
            samples["signed"].append(await drive(metered, signed))
        await meter.aclose()

    asyncio.run(run())
    assert metrics.signature_failures == 0 and metrics.signed_requests == 200 + runs * requests, metrics
    if isinstance(meter, RedisMeter):
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def verification_only(count: int) -> float:
    """Seconds per ``SignatureVerifier.check`` call (no middleware, no meter)."""
    keys = {KEYID: PRIVATE.public_key()}
    index = IdentityIndex([Identity(1, 1, AGENT, AGENT + DIRECTORY_PATH, pinned=keys)])
    verifier = SignatureVerifier(authorities=[AUTHORITY])
    requests = [
        SignedRequest("GET", f"http://{AUTHORITY}/posts", {k.decode(): v.decode() for k, v in headers})
        for headers in signed_headers(count)
    ]
    started = time.perf_counter()
    for request in requests:
        assert verifier.check(request, index).ok
    return (time.perf_counter() - started) / count


def _request_bytes(headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return b"GET /posts HTTP/1.1\r\n" + lines + b"\r\n"


async def _load(port: int, payloads: list[bytes], seconds: float, connections: int) -> float:
    """Requests per second from ``connections`` keep-alive connections, each request the next payload."""
    done = 0
    deadline = time.perf_counter() + seconds
    position = iter(payloads)

    async def connection() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            writer.write(next(position))
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            done += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return done / (time.perf_counter() - started)


def served(
    runs: int, seconds: float = 3.0, connections: int = 8, signed_pool: int = 40_000
) -> dict[str, float]:
    """Requests/s served by uvicorn (one worker each): plain, metered unsigned, metered signed."""

    def free() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port

    servers = {}
    for name in ("plain_app", "metered_app"):
        port = free()
        command = [sys.executable, "-m", "uvicorn", f"signed_metering:{name}", "--factory"]
        command += ["--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1", "--port", str(port)]
        command += ["--no-access-log", "--log-level", "warning"]
        servers[name] = (port, subprocess.Popen(command))
    unsigned = [_request_bytes(UNSIGNED)] * 1_000_000
    rates: dict[str, list[float]] = {"plain": [], "unsigned": [], "signed": []}
    try:
        for port, _ in servers.values():
            for _ in range(100):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.1)
        plain_port, metered_port = servers["plain_app"][0], servers["metered_app"][0]
        asyncio.run(_load(plain_port, unsigned, 0.5, connections))
        asyncio.run(_load(metered_port, [_request_bytes(h) for h in signed_headers(3000)], 0.3, connections))
        for _ in range(runs):
            pool = [_request_bytes(h) for h in signed_headers(signed_pool)]
            rates["plain"].append(asyncio.run(_load(plain_port, unsigned, seconds, connections)))
            rates["unsigned"].append(asyncio.run(_load(metered_port, unsigned, seconds, connections)))
            rates["signed"].append(asyncio.run(_load(metered_port, pool, seconds, connections)))
    finally:
        for _, process in servers.values():
            process.terminate()
            process.wait(timeout=10)
    return {name: 1 / statistics.median(values) for name, values in rates.items()}


def _row(name: str, figures: dict[str, float]) -> tuple[str, float, float]:
    plain, unsigned, signed = (figures[k] * 1e6 for k in ("plain", "unsigned", "signed"))
    request_ratio = signed / unsigned
    overhead_ratio = (signed - plain) / (unsigned - plain)
    row = (
        f"| {name} | {plain:,.0f} µs | {unsigned:,.0f} µs (+{unsigned - plain:,.0f}) | "
        f"{signed:,.0f} µs (+{signed - plain:,.0f}) | **{request_ratio:.2f}x** | {overhead_ratio:.1f}x |"
    )
    return row, request_ratio, overhead_ratio


def report(args: argparse.Namespace, results: dict[str, dict[str, float]], check: float) -> str:
    rows = [_row(name, figures) for name, figures in results.items()]
    lines = [
        "## Signed crawler requests (issue 18)",
        "",
        "Command: `.venv/bin/python bench/signed_metering.py "
        f"--requests {args.requests} --runs {args.runs}` — "
        f"{datetime.now(UTC):%Y-%m-%d}, Python {platform.python_version()}, {os.cpu_count()} CPUs, Redis and "
        "the bench on 127.0.0.1, all variants in one run (alternating, medians).",
        "",
        "Time per request of a minimal async FastAPI endpoint (3 posts): without the middleware, with it and "
        "an unsigned request (API key), with it and a Web Bot Auth signed request (fresh nonce: full "
        "verification every time; keys cached):",
        "",
        "| driver | no middleware | unsigned | signed | signed / unsigned request | signed / unsigned "
        "overhead |",
        "|---|---|---|---|---|---|",
        *(row for row, _, _ in rows),
        "",
        f"`SignatureVerifier.check` alone: {check * 1e6:,.0f} µs per request (the fields parsed, the "
        "signature base built and the Ed25519 signature checked).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000, help="requests per in-process run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--append", type=Path, help="append the section to this Markdown file")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    print("raw ASGI, in-memory meter ...", flush=True)
    results[f"raw ASGI, in-memory meter ({args.requests} requests/run)"] = in_process(
        "memory", args.requests, args.runs
    )
    print("raw ASGI, Redis meter ...", flush=True)
    results[f"raw ASGI, Redis meter, nonces in Redis ({args.requests // 2} requests/run)"] = in_process(
        "redis", args.requests // 2, args.runs
    )
    print("uvicorn ...", flush=True)
    results["uvicorn on 127.0.0.1, in-memory meter, 8 connections, 3 s/run"] = served(args.runs)
    check = verification_only(2000)
    for name, figures in results.items():
        print(name, {k: round(v * 1e6, 1) for k, v in figures.items()}, flush=True)
    text = report(args, results, check)
    print(text)
    if args.append:
        existing = args.append.read_text() if args.append.exists() else "# Benchmarks\n"
        args.append.write_text(existing.rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    main()
