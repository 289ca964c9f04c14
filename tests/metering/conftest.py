"""Fixtures of the metering tests: a Redis meter under a key prefix of its own, and a free port."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator

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
