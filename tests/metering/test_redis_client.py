"""Redis meter URLs: one server, or a Redis Cluster given by its seed nodes."""

from __future__ import annotations

import pytest

from consentry.errors import InvalidInput
from consentry.metering.redis_client import ClusterTarget, cluster_target, describe
from consentry.metering.redis_meter import RedisMeter


def test_cluster_urls_name_their_seed_nodes() -> None:
    assert cluster_target("redis://127.0.0.1:6379/0") is None
    assert cluster_target("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002") == ClusterTarget(
        (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    )
    assert cluster_target("rediss+cluster://meter:s%40cret@redis.internal/") == ClusterTarget(
        (("redis.internal", 6379),), tls=True, username="meter", password="s@cret"
    )
    assert describe("redis+cluster://meter:secret@a:1,b:2") == "Redis Cluster a:1,b:2"
    assert "secret" not in describe("redis://meter:secret@a:1/0")


@pytest.mark.parametrize(
    "url",
    ["redis+cluster://", "redis+cluster://a:1/3", "redis+cluster://a:notaport", "redis+cluster://:7000"],
)
def test_malformed_cluster_urls_are_refused_up_front(url: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        RedisMeter(url)
    assert raised.value.field == "redis_url"
