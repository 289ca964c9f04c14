"""Meters: the rolling 24-hour window, limits and the checks every meter shares (Redis: test_redis_meter)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consentry.errors import InvalidInput
from consentry.metering.meter import MemoryMeter, Meter, Usage
from consentry.metering.redis_meter import RedisMeter

T0 = datetime(2026, 11, 20, 22, 0, 30, tzinfo=UTC)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_memory_meter_counts_a_rolling_24_hours() -> None:
    meter = MemoryMeter()

    async def scenario() -> None:
        assert (await meter.consume("org:1", 100, at=T0)).total == 100
        assert (await meter.consume("org:1", 50, at=T0 + timedelta(hours=12))).total == 150
        # the minute of T0 is in the window up to T0 + 23:59 and out of it from T0 + 24:00 (minute start)
        assert await meter.usage("org:1", at=T0 + timedelta(hours=23, minutes=59)) == 150
        assert await meter.usage("org:1", at=T0 + timedelta(hours=24) - timedelta(seconds=30)) == 50
        assert await meter.usage("org:2", at=T0) == 0

    run(scenario())


def test_over_limit_traffic_is_still_counted_without_a_limit() -> None:
    meter = MemoryMeter()
    usage = meter.consume_now("org:1", 3_000_000, at=T0)
    assert usage == Usage(total=3_000_000, accepted=True, reset=86400 - 30)
    assert meter.consume_now("org:1", 1, at=T0).total == 3_000_001


def test_a_limit_refuses_posts_that_would_cross_it_and_says_when_they_fit() -> None:
    meter = MemoryMeter()
    meter.consume_now("org:1", 60, at=T0)  # minute 22:00
    meter.consume_now("org:1", 30, at=T0 + timedelta(hours=1))  # minute 23:00
    refused = meter.consume_now("org:1", 50, limit=100, at=T0 + timedelta(hours=2))
    assert not refused.accepted and refused.total == 90
    # 40 posts must leave: the 60 of 22:00 leave at 22:00 next day, 22 hours after 00:00:30
    assert refused.retry_after == 22 * 3600 - 30
    assert meter.consume_now("org:1", 10, limit=100, at=T0 + timedelta(hours=2)).accepted
    never = meter.consume_now("org:1", 101, limit=100, at=T0 + timedelta(hours=2))
    assert not never.accepted and never.retry_after == -1
    assert meter.consume_now("org:1", 0, at=T0 + timedelta(hours=2)).total == 100


@pytest.mark.parametrize("posts", [-1, 1.5, "3", True, None])
def test_bad_counts_are_invalid_input(posts: Any) -> None:
    with pytest.raises(InvalidInput) as error:
        MemoryMeter().consume_now("org:1", posts, at=T0)
    assert error.value.field == "posts"


def test_naive_times_limits_and_subjects_are_checked() -> None:
    meter = MemoryMeter()
    with pytest.raises(InvalidInput, match="timezone"):
        meter.consume_now("org:1", 1, at=datetime(2026, 1, 1))
    with pytest.raises(InvalidInput):
        meter.consume_now("org:1", 1, limit=-5, at=T0)
    with pytest.raises(InvalidInput):
        meter.consume_now("org:{1}", 1, at=T0)
    with pytest.raises(InvalidInput):
        meter.consume_now("", 1, at=T0)


def test_meters_satisfy_the_protocol(redis_meter: RedisMeter) -> None:
    assert isinstance(MemoryMeter(), Meter)
    assert isinstance(redis_meter, Meter)
