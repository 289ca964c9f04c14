"""Fixtures of the metering tests: a Redis meter under a key prefix of its own, a free port, and a
Redis server of the test's own that can be stopped and started (an outage that leaves the shared Redis
alone)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from consentry.metering.meter import RedisMeter
from tests.services import REDIS_URL, missing_service


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A synchronous client of the test Redis (skips, or fails in CI, when it is not running)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        missing_service("redis", REDIS_URL, error)
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test; its keys are deleted afterwards (never FLUSHALL)."""
    prefix = f"consentry-test:{uuid.uuid4().hex}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def redis_meter(redis_prefix: str) -> Iterator[RedisMeter]:
    """A Redis meter on the test Redis under the test's prefix."""
    meter = RedisMeter(REDIS_URL, prefix=redis_prefix)
    yield meter
    asyncio.run(meter.aclose())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class OwnRedis:
    """A ``redis-server`` on a free loopback port, started by the test; ``stop`` keeps its data.

    It runs without background saving or an append-only file; ``stop`` shuts it down with one snapshot
    (``SHUTDOWN SAVE``), which the next ``start`` loads, like a Redis that was unreachable for a while.
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.directory), "--dbfilename", "dump.rdb"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Shut the server down, saving its data for the next ``start``."""
        if self.process is None:
            return
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # the connection closes as the server exits
        finally:
            client.close()
        self.process.wait(timeout=20)
        self.process = None

    def kill(self) -> None:
        """End the process without saving (clean-up)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=20)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A Redis server of this test on a free port (skips, or fails in CI, without ``redis-server``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing_service("redis", "redis-server on PATH", FileNotFoundError("redis-server"))
    assert binary is not None  # missing_service skips or fails
    server = OwnRedis(binary, tmp_path)
    server.start()
    yield server
    server.kill()
