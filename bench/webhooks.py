"""Webhook deliveries per second from the outbox to a local receiver (partners issue, item 4).

Target: >= 500 deliveries/s. Each run queues N ``revocation.created`` messages (not timed), then times
``Worker.run_once()`` until the outbox is drained: claiming, signing, POSTing, recording every attempt
and marking every message delivered. The receiver is ``tests/partners/receiver.py`` in a process of its
own (uvicorn), verifying every request with the ``standardwebhooks`` package and dropping repeated ids.

Baselines in the same run, against the same receiver with the same signed bodies:

* ``raw``: the same number of requests sent the way the worker sends them (``concurrency`` threads, each
  with a keep-alive ``httpx.Client``) and nothing else: no database, no claiming, no recording. The worker
  can at best match it; ``worker / raw`` is what the outbox costs.
* ``sequential``: one keep-alive ``httpx.Client`` posting the requests one after another.
* ``asyncio``: one ``httpx.AsyncClient`` with ``concurrency`` requests in flight, the design the worker
  does not use because it is slower here (reported for that reason).

Runs alternate (worker, raw, sequential, asyncio) and medians are reported. SQLite by default; with
``--postgres URL`` a fresh database is created on that server for the run and dropped after it. A local
receiver answers at once, which favours sending one request at a time; ``--latency-ms 20`` makes it wait
before answering, as a real endpoint across a network does, which is what the concurrency is for.

    .venv/bin/python -m bench.webhooks [--messages 5000] [--runs 3] [--concurrency 16] [--postgres URL]
                                       [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue as queue_module
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete, select

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.partners.receiver import free_port

from bench.common import report
from consentry.config import Settings
from consentry.datasets.models import Recipient
from consentry.datasets.service import add_recipient
from consentry.db import Database, utcnow
from consentry.migrate import upgrade
from consentry.partners import outbox
from consentry.partners.keys import new_webhook_secret
from consentry.partners.models import Delivery, OutboxMessage
from consentry.partners.webhooks import encode_body, sign
from consentry.partners.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
PARTNER = "bench"


def start_receiver(port: int, secret: str, delay: float = 0.0) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tests.partners.receiver", "--port", str(port)]
    command += ["--secret", f"{PARTNER}={secret}", "--delay", str(delay)]
    process = subprocess.Popen(command, cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/stats", timeout=1).raise_for_status()
            return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the receiver did not start")


def receiver_stats(port: int) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()
    return stats


def payload(n: int) -> dict[str, Any]:
    """What a revocation webhook carries (ten record ids)."""
    return {
        "id": n,
        "release": "rel_20261122_bench",
        "category": "posts",
        "reason": "opt_out",
        "record_ids": list(range(n * 10, n * 10 + 10)),
        "records": 10,
        "created_at": utcnow().isoformat(),
        "deadline": utcnow().isoformat(),
    }


def queue(database: Database, messages: int) -> float:
    """Empty the outbox and queue ``messages`` messages; returns the seconds it took."""
    started = time.perf_counter()
    with database.write() as session:
        session.execute(delete(Delivery))
        session.execute(delete(OutboxMessage))
        recipient = session.scalars(select(Recipient).where(Recipient.name == PARTNER)).one()
        for n in range(messages):
            outbox.enqueue(session, recipient=recipient, event_type="revocation.created", data=payload(n))
    return time.perf_counter() - started


def run_worker(
    database: Database, settings: Settings, concurrency: int, messages: int, port: int
) -> tuple[float, float]:
    """Deliveries per second of one drained outbox, and the seconds queuing it took."""
    before = receiver_stats(port)
    queued = queue(database, messages)
    started = time.perf_counter()
    stats = Worker(database, settings, concurrency=concurrency).run_once()
    elapsed = time.perf_counter() - started
    after = receiver_stats(port)
    assert stats.delivered == messages and stats.failed == 0, stats
    assert after["processed"] - before["processed"] == messages, (before, after)
    assert after["duplicates"] == before["duplicates"] and after["rejected"] == 0
    with database.read() as session:
        left = session.scalars(select(OutboxMessage.id).where(OutboxMessage.status != "delivered")).first()
        assert left is None, "the outbox is not drained"
    return messages / elapsed, queued


def requests(secret: str, messages: int, tag: str) -> list[tuple[bytes, str]]:
    """Bodies and ids like the worker sends (signed per request, as it does)."""
    return [
        (
            encode_body(
                {"type": "revocation.created", "timestamp": utcnow().isoformat(), "data": payload(n)}
            ),
            f"msg_{tag}{n:08d}",
        )
        for n in range(messages)
    ]


def raw_rate(url: str, secret: str, messages: int, concurrency: int, tag: str) -> float:
    """Requests per second from ``concurrency`` threads with a keep-alive client each (as the worker)."""
    items = requests(secret, messages, tag)
    pending: queue_module.SimpleQueue[tuple[bytes, str]] = queue_module.SimpleQueue()
    for item in items:
        pending.put(item)

    def sender() -> None:
        with httpx.Client(timeout=10) as client:
            while True:
                try:
                    body, message_id = pending.get_nowait()
                except queue_module.Empty:
                    return
                headers = sign(secret, message_id=message_id, body=body) | {
                    "content-type": "application/json"
                }
                response = client.post(url, content=body, headers=headers)
                assert response.status_code == 200, response.status_code

    threads = [threading.Thread(target=sender) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return messages / (time.perf_counter() - started)


async def asyncio_rate(url: str, secret: str, messages: int, concurrency: int, tag: str) -> float:
    items = requests(secret, messages, tag)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        queue_: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
        for item in items:
            queue_.put_nowait(item)

        async def sender() -> None:
            while not queue_.empty():
                body, message_id = queue_.get_nowait()
                headers = sign(secret, message_id=message_id, body=body) | {
                    "content-type": "application/json"
                }
                response = await client.post(url, content=body, headers=headers)
                assert response.status_code == 200, response.status_code

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return messages / (time.perf_counter() - started)


def sequential_rate(url: str, secret: str, messages: int, tag: str) -> float:
    items = requests(secret, messages, tag)
    with httpx.Client(timeout=10) as client:
        started = time.perf_counter()
        for body, message_id in items:
            headers = sign(secret, message_id=message_id, body=body) | {"content-type": "application/json"}
            response = client.post(url, content=body, headers=headers)
            assert response.status_code == 200, response.status_code
        return messages / (time.perf_counter() - started)


def temporary_postgres(server: str) -> tuple[str, Any]:
    """A fresh database on ``server`` and a function that drops it."""
    import sqlalchemy as sa

    name = f"consentry_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return admin.url.set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the receiver waits this long before answering"
    )
    args = parser.parse_args()

    drop = None
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as folder:
        if args.postgres:
            url, drop = temporary_postgres(args.postgres)
        else:
            url = f"sqlite:///{Path(folder) / 'consentry.db'}"
        database = Database(url)
        secret = new_webhook_secret()
        port = free_port()
        hook = f"http://127.0.0.1:{port}/hooks/{PARTNER}"
        receiver = start_receiver(port, secret, args.latency_ms / 1000)
        try:
            upgrade(database)
            with database.write() as session:
                recipient = add_recipient(
                    session, name=PARTNER, kind="third_party", purposes=["train-ai"], categories=["posts"]
                )
                recipient.webhook_url, recipient.webhook_secret = hook, secret
            settings = Settings(home=Path(folder), database_url=url, webhook_timeout_seconds=10)
            warm = min(500, args.messages)
            run_worker(database, settings, args.concurrency, warm, port)
            raw_rate(hook, secret, warm, args.concurrency, "warm")
            enqueue_seconds: list[float] = []
            worker: list[float] = []
            raw: list[float] = []
            sequential: list[float] = []
            asyncio_: list[float] = []
            for run in range(args.runs):
                rate, queued = run_worker(database, settings, args.concurrency, args.messages, port)
                worker.append(rate)
                enqueue_seconds.append(queued)
                raw.append(raw_rate(hook, secret, args.messages, args.concurrency, f"r{run}_"))
                sequential.append(sequential_rate(hook, secret, args.messages, f"s{run}_"))
                asyncio_.append(
                    asyncio.run(asyncio_rate(hook, secret, args.messages, args.concurrency, f"a{run}_"))
                )
                print(
                    f"run {run + 1}: worker {worker[-1]:,.0f}/s, raw {raw[-1]:,.0f}/s, "
                    f"sequential {sequential[-1]:,.0f}/s, asyncio {asyncio_[-1]:,.0f}/s",
                    file=sys.stderr,
                )
            final = receiver_stats(port)
        finally:
            receiver.terminate()
            receiver.wait(10)
            dialect = database.dialect
            database.dispose()
            if drop is not None:
                drop()

    median_worker, median_raw = statistics.median(worker), statistics.median(raw)
    median_sequential = statistics.median(sequential)
    report(
        "webhooks",
        {
            "database": dialect,
            "cpus": os.cpu_count(),
            "messages": args.messages,
            "concurrency": args.concurrency,
            "receiver_latency_ms": args.latency_ms,
            "runs": args.runs,
            "worker_deliveries_per_s": round(median_worker, 1),
            "worker_runs": [round(r, 1) for r in worker],
            "raw_threads_requests_per_s": round(median_raw, 1),
            "raw_runs": [round(r, 1) for r in raw],
            "sequential_requests_per_s": round(median_sequential, 1),
            "sequential_runs": [round(r, 1) for r in sequential],
            "asyncio_requests_per_s": round(statistics.median(asyncio_), 1),
            "asyncio_runs": [round(r, 1) for r in asyncio_],
            "worker_over_raw": round(median_worker / median_raw, 3),
            "worker_over_sequential": round(median_worker / median_sequential, 3),
            "enqueue_s_per_run": round(statistics.median(enqueue_seconds), 3),
            "receiver_duplicates": final["duplicates"],
            "receiver_rejected": final["rejected"],
            "target_deliveries_per_s": 500,
        },
    )


if __name__ == "__main__":
    main()
