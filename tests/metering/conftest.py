"""Fixtures of the metering tests: a Redis meter under a key prefix of its own, a free port, and a
Redis server of the test's own that can be stopped and started (an outage that leaves the shared Redis
alone)."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from consentry.metering.redis_meter import RedisMeter
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


def cluster_ports(count: int) -> list[int]:
    """``count`` loopback ports free together with their cluster bus port (the port + 10000)."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20_000, 55_000)
        if port in ports or port + 10_000 in ports or port - 10_000 in ports:
            continue
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        ports.append(port)
    return ports


class OwnCluster:
    """A Redis Cluster of the test: ``masters`` masters with ``replicas`` replicas each, on free loopback
    ports, joined with ``redis-cli --cluster create``. Nodes can be killed (crash), stopped (saving
    their data) and started again on the same port."""

    def __init__(
        self, server: str, cli: str, directory: Path, *, masters: int = 3, replicas: int = 1
    ) -> None:
        self.server, self.cli, self.directory = server, cli, directory
        self.ports = cluster_ports(masters * (1 + replicas))
        self.replicas = replicas
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The meter's URL of this cluster (every node as a seed)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start_node(self, port: int) -> None:
        command = [self.server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"]
        command += ["--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "1000"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        command += ["--dbfilename", f"dump-{port}.rdb"]
        self.processes[port] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.processes[port].poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        done = subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout!r} {done.stderr!r}")
        self.wait_ok()
        for port in self.ports:  # replicas have synced before the test starts writing
            self.wait_replicated(port)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2)

    def alive(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says the cluster is ok and agrees on the masters."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for port in self.alive():
                client = self.client(port)
                try:
                    states.append(b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO"))
                except redis.RedisError:
                    states.append(False)
                finally:
                    client.close()
            if states and all(states):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis Cluster did not become ok")
            time.sleep(0.1)

    def wait_replicated(self, port: int, timeout: float = 30) -> None:
        client = self.client(port)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                info = client.info("replication")
                if info["role"] == "master" or info.get("master_link_status") == "up":
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise TimeoutError(f"node {port} did not sync with its master")

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key``'s slot."""
        client = self.client(self.alive()[0])
        try:
            slot = client.execute_command("CLUSTER", "KEYSLOT", key)
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        finally:
            client.close()
        raise LookupError(key)

    def node_id(self, port: int) -> str:
        client = self.client(port)
        try:
            return str(client.execute_command("CLUSTER", "MYID").decode())
        finally:
            client.close()

    def kill(self, port: int) -> None:
        """Crash a node (SIGKILL): what it had not replicated is gone."""
        process = self.processes[port]
        process.kill()
        process.wait(timeout=20)

    def stop(self, port: int) -> None:
        """Shut a node down, saving its data for ``start_node``."""
        client = self.client(port)
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass
        finally:
            client.close()
        self.processes[port].wait(timeout=20)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=20)


def _cluster(tmp_path: Path, *, replicas: int) -> Iterator[OwnCluster]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        missing_service("redis", "redis-server and redis-cli on PATH", FileNotFoundError("redis-server"))
    assert server is not None and cli is not None
    cluster = OwnCluster(server, cli, tmp_path, replicas=replicas)
    try:
        cluster.start()
    except Exception as error:
        cluster.close()
        missing_service("redis", "a Redis Cluster started by the test", error)
    yield cluster
    cluster.close()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[OwnCluster]:
    """Three masters with a replica each, started by this test (skips, or fails in CI, without Redis)."""
    yield from _cluster(tmp_path, replicas=1)


@pytest.fixture
def redis_cluster_without_replicas(tmp_path: Path) -> Iterator[OwnCluster]:
    """Three masters and no replica, started by this test."""
    yield from _cluster(tmp_path, replicas=0)
