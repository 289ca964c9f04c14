"""Connections of the Redis meter: one Redis server, or a Redis Cluster.

``CONSENTRY_REDIS_URL`` is a redis-py URL for one server (``redis://host:6379/0``,
``rediss://...``), or ``redis+cluster://host:port,host:port,...`` (``rediss+cluster://`` with TLS)
for a Redis Cluster: any reachable node of the list is enough to discover the others. The meter's
keys carry a hash tag per subject (``consentry.metering.redis_layout``), so each script call touches
one slot, whichever node serves it; redirections (``MOVED`` when a slot moved, ``ASK`` while it
moves) are followed by redis-py's cluster client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from consentry.errors import InvalidInput

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True)
class ClusterTarget:
    """A Redis Cluster: its seed nodes and connection options."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = None


def cluster_target(url: str) -> ClusterTarget | None:
    """The cluster a ``redis+cluster://`` URL names; None for a single-server URL.

    ``InvalidInput`` when a cluster URL has no node, a malformed port, or a database other than 0.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        return None
    userinfo, at, hosts = rest.rpartition("@")
    hosts, _, path = hosts.partition("/")
    if path.strip("/") not in ("", "0"):
        raise InvalidInput("a Redis Cluster has only database 0", field="redis_url")
    nodes = []
    for part in hosts.split(","):
        if not part.strip():
            continue
        try:
            parsed = urlsplit(f"//{part.strip()}")
            host, port = parsed.hostname, parsed.port or 6379
        except ValueError as error:
            raise InvalidInput(f"{part!r} is not host:port", field="redis_url") from error
        if not host:
            raise InvalidInput(f"{part!r} is not host:port", field="redis_url")
        nodes.append((host, port))
    if not nodes:
        raise InvalidInput("a redis+cluster:// URL lists at least one host:port", field="redis_url")
    username = password = None
    if at:
        user, _, secret = userinfo.partition(":")
        username, password = (unquote(user) or None), (unquote(secret) or None)
    return ClusterTarget(tuple(nodes), scheme.lower().startswith("rediss"), username, password)


def connect(url: str, *, timeout: float) -> Any:
    """An asyncio client for ``url`` (a ``RedisCluster`` for a cluster URL), failing fast: one
    connect timeout, no retry of its own (the meter has its outage path)."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    target = cluster_target(url)
    if target is None:
        import redis.asyncio as aioredis

        return aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        ssl=target.tls,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # no retry: a script whose reply was lost may have run, and running it again would count twice;
        # the meter's outage path takes over, and the slot table is refreshed for the next call
        # (following MOVED and ASK redirections is not a retry)
        retry=Retry(NoBackoff(), 0),  # type: ignore[arg-type]  # redis-py 8 converts it anyway
    )


def describe(url: str | None) -> str:
    """Where a URL points, for log messages (never its password)."""
    if url is None:
        return "the given client"
    try:
        target = cluster_target(url)
    except InvalidInput:
        return "the configured cluster"
    if target is not None:
        return "Redis Cluster " + ",".join(f"{host}:{port}" for host, port in target.nodes)
    from redis.connection import parse_url

    try:
        options = parse_url(url)
    except ValueError:
        return "the configured URL"
    return f"{options.get('host', 'localhost')}:{options.get('port', 6379)}"
