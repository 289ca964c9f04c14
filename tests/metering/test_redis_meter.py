"""The Redis meter: agreement with the memory meter, its Redis layout, one round trip per call, the
in-memory fallback, re-sync and reconciliation after outages, and concurrency."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import redis.asyncio as aioredis

from consentry.errors import InvalidInput
from consentry.metering.meter import MemoryMeter, Meter
from consentry.metering.redis_layout import CONSUME_LUA, hour_key, totals_key, window_keys
from consentry.metering.redis_meter import RedisMeter
from tests.metering.conftest import OwnRedis, free_port
from tests.services import REDIS_URL

QUOTA = 500
T0 = datetime(2026, 11, 20, 22, 0, 30, tzinfo=UTC)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_redis_meter_agrees_with_the_memory_meter(redis_meter: RedisMeter) -> None:
    memory = MemoryMeter()
    rng = random.Random(6)

    async def scenario() -> None:
        at = T0
        for _ in range(400):
            at += timedelta(seconds=rng.randint(0, 900))
            posts = rng.randint(0, 60)
            limit = rng.choice([None, 1500, 4000])
            expected = memory.consume_now("org:1", posts, limit=limit, at=at)
            assert await redis_meter.consume("org:1", posts, limit=limit, at=at) == expected

    run(scenario())


def test_redis_layout_is_hourly_hashes_of_minute_buckets(
    redis_meter: RedisMeter, redis_client: redis.Redis, redis_prefix: str
) -> None:
    async def scenario() -> None:
        await redis_meter.consume("org:42", 120, at=T0)
        await redis_meter.consume("org:42", 40, at=T0 + timedelta(minutes=1))
        await redis_meter.consume("org:42", 5, at=T0 + timedelta(hours=1, minutes=3))

    run(scenario())
    hour = int(T0.timestamp()) // 3600
    first = redis_client.hgetall(hour_key(redis_prefix, "org:42", hour))
    assert first == {b"0": b"120", b"1": b"40"}
    assert redis_client.hgetall(hour_key(redis_prefix, "org:42", hour + 1)) == {b"3": b"5"}
    assert redis_client.hgetall(totals_key(redis_prefix, "org:42")) == {
        str(hour).encode(): b"160",
        str(hour + 1).encode(): b"5",
    }
    assert hour_key(redis_prefix, "org:42", hour) == f"{redis_prefix}:{{org:42}}:{hour}"
    assert redis_client.ttl(hour_key(redis_prefix, "org:42", hour)) > 0
    assert redis_client.ttl(totals_key(redis_prefix, "org:42")) > 0
    keys = window_keys(redis_prefix, "org:42", int(T0.timestamp()) // 60)
    assert len(keys) == 26 and keys[0] == totals_key(redis_prefix, "org:42")
    assert keys[-1] == hour_key(redis_prefix, "org:42", hour)


class CountingRedis(aioredis.Redis):
    """Counts commands sent (a pipeline or a script call is one round trip)."""

    commands = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        type(self).commands += 1
        return await super().execute_command(*args, **options)


def test_redis_meter_makes_one_round_trip_per_call(redis_prefix: str, redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        client = CountingRedis.from_url(REDIS_URL)
        client.register_script(CONSUME_LUA)
        await client.script_load(CONSUME_LUA)  # as a running server would have it cached
        meter = RedisMeter(client=client, prefix=redis_prefix)
        CountingRedis.commands = 0
        for minute in range(50):
            await meter.consume("org:1", 3, limit=1000, at=T0 + timedelta(minutes=minute))
        assert CountingRedis.commands == 50
        assert meter.metrics.round_trips == 50
        await client.aclose()

    run(scenario())


def test_redis_down_falls_back_to_memory_and_keeps_answering(caplog: pytest.LogCaptureFixture) -> None:
    meter = RedisMeter(f"redis://127.0.0.1:{free_port()}/0", prefix="consentry-test:down", timeout=0.2)

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING, logger="consentry.metering"):
            first = await meter.consume("org:1", 70, limit=100, at=T0)
            second = await meter.consume("org:1", 40, limit=100, at=T0)
        assert first.accepted and first.degraded and first.total == 70
        assert not second.accepted and second.degraded  # the limit holds on the local count
        await meter.aclose()

    run(scenario())
    assert meter.degraded
    assert meter.metrics.redis_errors == 1  # the second call did not retry within retry_interval
    assert meter.metrics.fallback_calls == 2
    assert "unreachable" in caplog.text
    assert "consentry_meter_redis_errors_total 1" in meter.metrics.prometheus()
    assert "consentry_meter_degraded 1" in meter.metrics.prometheus()


class Proxy:
    """A TCP proxy in front of the test Redis that can be stopped and started (Redis 'down' and 'back').

    ``fail_next`` arms a fault for the first request that names every given marker: ``"cut"`` forwards
    only the first half of it and closes the connection (Redis runs the commands it received whole);
    ``"mute"`` forwards it but drops every reply on that connection (done, never acknowledged).
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.fault: tuple[str, tuple[bytes, ...]] | None = None
        self.faults_done = 0

    def fail_next(self, kind: str, *markers: bytes) -> None:
        self.fault = (kind, markers)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        muted: list[bool],
        upstream: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if not upstream and muted[0]:
                    continue
                fault = self.fault
                if upstream and fault is not None and all(marker in data for marker in fault[1]):
                    self.fault = None
                    self.faults_done += 1
                    if fault[0] == "cut":
                        writer.write(data[: len(data) // 2])
                        await writer.drain()
                        client.close()
                        break
                    muted[0] = True
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, upstream_writer}
        muted = [False]
        await asyncio.gather(
            self._pipe(reader, upstream_writer, writer, muted, upstream=True),
            self._pipe(upstream_reader, writer, writer, muted, upstream=False),
        )

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.fixture
def proxy(redis_client: redis.Redis) -> Iterator[Proxy]:
    parts = urlsplit(REDIS_URL)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    proxy.start()
    yield proxy
    proxy.close()


def test_redis_meter_resyncs_what_it_counted_while_redis_was_down(
    proxy: Proxy, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts = urlsplit(REDIS_URL)
    url = urlunsplit((parts.scheme, f"127.0.0.1:{proxy.port}", parts.path, "", ""))
    clock = [0.0]
    meter = RedisMeter(url, prefix=redis_prefix, monotonic=lambda: clock[0], retry_interval=60.0)
    direct = RedisMeter(REDIS_URL, prefix=redis_prefix)

    async def scenario() -> None:
        assert (await meter.consume("org:9", 100, at=T0)).total == 100
        proxy.stop()
        with caplog.at_level(logging.WARNING, logger="consentry.metering"):
            down = await meter.consume("org:9", 25, at=T0 + timedelta(minutes=1))
            also_down = await meter.consume("org:9", 5, at=T0 + timedelta(minutes=61))
        assert down.degraded and down.total == 125  # last known Redis total + local count
        assert also_down.degraded and also_down.total == 130
        assert await direct.usage("org:9", at=T0 + timedelta(minutes=61)) == 100
        proxy.start()
        clock[0] = 100.0  # past retry_interval: the next call tries Redis again
        with caplog.at_level(logging.WARNING, logger="consentry.metering"):
            back = await meter.consume("org:9", 1, at=T0 + timedelta(minutes=62))
        assert not back.degraded and back.total == 131
        assert await direct.usage("org:9", at=T0 + timedelta(minutes=62)) == 131
        await meter.aclose()
        await direct.aclose()

    run(scenario())
    assert meter.metrics.resyncs == 1 and meter.metrics.resynced_posts == 30
    assert not meter.degraded
    assert "re-synced 30 posts" in caplog.text


async def wait_for_usage(meter: RedisMeter, subject: str, expected: int, *, at: datetime) -> int:
    """``subject``'s usage through ``meter`` once it reaches ``expected`` (or after 15 s, whatever it is)."""
    deadline = asyncio.get_running_loop().time() + 15
    while (seen := await meter.usage(subject, at=at)) < expected:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    return seen


def test_an_outage_is_reconciled_when_redis_returns_and_a_second_server_refuses(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Quota 500: 300 served, Redis down, 200 served from memory; once Redis is back, without another
    request on the first server, Redis holds 500 minute by minute and a second server refuses."""
    prefix = "consentry-test:outage"
    first = RedisMeter(own_redis.url, prefix=prefix, retry_interval=0.05, timeout=0.2)
    second = RedisMeter(own_redis.url, prefix=prefix, retry_interval=0.05, timeout=0.2)

    async def scenario() -> None:
        for _ in range(3):
            assert (await first.consume("org:1", 100, limit=QUOTA, at=T0)).accepted
        own_redis.stop()
        with caplog.at_level(logging.WARNING, logger="consentry.metering"):
            during = [
                await first.consume("org:1", 100, limit=QUOTA, at=T0 + timedelta(minutes=minute))
                for minute in (1, 2)
            ]
            assert all(usage.accepted and usage.degraded for usage in during)
            assert during[-1].total == QUOTA
            assert not (await first.consume("org:1", 1, limit=QUOTA, at=T0 + timedelta(minutes=2))).accepted
            own_redis.start()
            later = T0 + timedelta(minutes=3)
            assert await wait_for_usage(second, "org:1", QUOTA, at=later) == QUOTA
        refused = await second.consume("org:1", 1, limit=QUOTA, at=later)
        assert not refused.accepted and refused.total == QUOTA and not refused.degraded
        # the minutes are kept: the 300 of T0 leave the window 24 hours later, the other 200 after it
        day = T0 + timedelta(hours=24)
        assert (await second.consume("org:1", 300, limit=QUOTA, at=day)).accepted
        assert not (await second.consume("org:1", 1, limit=QUOTA, at=day)).accepted
        await first.aclose()
        await second.aclose()

    run(scenario())
    probe = redis.Redis(port=own_redis.port)
    hour = int(T0.timestamp()) // 3600
    assert probe.hgetall(hour_key(prefix, "org:1", hour)) == {b"0": b"300", b"1": b"100", b"2": b"100"}
    assert probe.hgetall(totals_key(prefix, "org:1")) == {
        str(hour).encode(): b"500",
        b"%d" % (hour + 24): b"300",
    }
    keys = list(probe.scan_iter(match=f"{prefix}:*"))
    assert any(b":resynced:" in key for key in keys)
    assert all(probe.ttl(key) > 0 for key in keys)  # the batch marker too: nothing is kept forever
    probe.close()
    assert first.metrics.resyncs == 1 and first.metrics.resynced_posts == 200
    assert not first.degraded
    assert "re-synced 200 posts" in caplog.text


def test_two_servers_counting_in_memory_are_both_reconciled_and_stay_within_the_bound(
    own_redis: OwnRedis,
) -> None:
    """Both servers count in memory during the outage; afterwards Redis holds everything served, and
    what was served stays within the documented bound: the quota plus, per server, the quota less the
    last total it saw from Redis."""
    prefix = "consentry-test:outage"
    first = RedisMeter(own_redis.url, prefix=prefix, retry_interval=0.05, timeout=0.2)
    second = RedisMeter(own_redis.url, prefix=prefix, retry_interval=0.05, timeout=0.2)
    served = 0

    async def serve(meter: RedisMeter, posts: int, at: datetime) -> bool:
        nonlocal served
        usage = await meter.consume("org:1", posts, limit=QUOTA, at=at)
        served += posts if usage.accepted else 0
        return usage.accepted

    async def scenario() -> None:
        assert await serve(first, 300, T0)
        assert await serve(second, 100, T0)  # the second server last saw 400
        own_redis.stop()
        during = T0 + timedelta(minutes=1)
        while await serve(first, 30, during):  # 300 seen: 180 more locally, then refused
            pass
        while await serve(second, 30, during):  # 400 seen: 90 more locally, then refused
            pass
        own_redis.start()
        after = T0 + timedelta(minutes=2)
        assert await wait_for_usage(second, "org:1", served, at=after) == served
        assert await wait_for_usage(first, "org:1", served, at=after) == served
        for meter in (first, second):
            assert not await serve(meter, 1, after)
            await meter.aclose()

    run(scenario())
    assert served == 400 + 180 + 90
    assert served - QUOTA <= (QUOTA - 300) + (QUOTA - 400)


def test_a_second_outage_starts_from_what_the_first_one_re_synced(own_redis: OwnRedis) -> None:
    """Posts re-synced after one outage count as seen: a second outage before any request reached Redis
    again cannot serve the quota afresh."""
    meter = RedisMeter(own_redis.url, prefix="consentry-test:twice", retry_interval=0.05, timeout=0.2)

    async def scenario() -> None:
        own_redis.stop()
        assert (await meter.consume("org:1", 200, limit=QUOTA, at=T0)).degraded
        own_redis.start()
        deadline = asyncio.get_running_loop().time() + 15
        while meter.unsynced_posts and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert meter.metrics.resynced_posts == 200
        own_redis.stop()
        refused = await meter.consume("org:1", 301, limit=QUOTA, at=T0 + timedelta(minutes=1))
        assert refused.degraded and not refused.accepted and refused.total == 200
        assert (await meter.consume("org:1", 300, limit=QUOTA, at=T0 + timedelta(minutes=1))).accepted
        await meter.aclose()

    run(scenario())


def test_an_interrupted_reconciliation_adds_every_post_exactly_once(proxy: Proxy, redis_prefix: str) -> None:
    """The connection breaks halfway through the reconciliation (Redis ran the first half of it): the
    retry adds the rest, and nothing twice."""
    parts = urlsplit(REDIS_URL)
    url = urlunsplit((parts.scheme, f"127.0.0.1:{proxy.port}", parts.path, "", ""))
    clock = [0.0]
    meter = RedisMeter(url, prefix=redis_prefix, monotonic=lambda: clock[0], retry_interval=60.0, timeout=0.3)
    direct = RedisMeter(REDIS_URL, prefix=redis_prefix)
    subjects = [f"org:{number}" for number in range(1, 9)]

    async def scenario() -> None:
        await meter.consume("org:1", 10, at=T0)
        proxy.stop()
        for index, subject in enumerate(subjects):
            for minute in (1, 2):
                await meter.consume(subject, index + minute, at=T0 + timedelta(minutes=minute))
        proxy.start()
        proxy.fail_next("cut", *(f"{{{subject}}}".encode() for subject in subjects))
        clock[0] = 100.0
        assert (await meter.consume("org:1", 0, at=T0 + timedelta(minutes=3))).degraded
        assert proxy.faults_done == 1
        at = T0 + timedelta(minutes=3)
        partly = [await direct.usage(subject, at=at) for subject in subjects]
        expected = [
            2 * index + 3 + (10 if subject == "org:1" else 0) for index, subject in enumerate(subjects)
        ]
        assert partly != expected  # the cut left part of it undone
        clock[0] = 200.0
        back = await meter.consume("org:1", 0, at=at)
        assert not back.degraded and back.total == expected[0]
        assert [await direct.usage(subject, at=at) for subject in subjects] == expected
        await meter.aclose()
        await direct.aclose()

    run(scenario())


def test_a_reconciliation_whose_reply_is_lost_is_not_added_again(proxy: Proxy, redis_prefix: str) -> None:
    """Redis applied the reconciliation but the reply never arrived: the retry must not add it twice."""
    parts = urlsplit(REDIS_URL)
    url = urlunsplit((parts.scheme, f"127.0.0.1:{proxy.port}", parts.path, "", ""))
    clock = [0.0]
    meter = RedisMeter(url, prefix=redis_prefix, monotonic=lambda: clock[0], retry_interval=60.0, timeout=0.3)
    direct = RedisMeter(REDIS_URL, prefix=redis_prefix)

    async def scenario() -> None:
        await meter.consume("org:1", 10, at=T0)
        proxy.stop()
        await meter.consume("org:1", 25, at=T0 + timedelta(minutes=1))
        await meter.consume("org:2", 7, at=T0 + timedelta(minutes=1))
        proxy.start()
        proxy.fail_next("mute", b"{org:1}", b"{org:2}")
        clock[0] = 100.0
        at = T0 + timedelta(minutes=2)
        assert (await meter.consume("org:1", 0, at=at)).degraded  # the reply timed out
        assert proxy.faults_done == 1
        assert await direct.usage("org:1", at=at) == 35  # yet Redis has it
        clock[0] = 200.0
        assert (await meter.consume("org:1", 0, at=at)).total == 35
        assert await direct.usage("org:1", at=at) == 35
        assert await direct.usage("org:2", at=at) == 7
        await meter.aclose()
        await direct.aclose()

    run(scenario())
    assert meter.metrics.resynced_posts == 32


def _thread_worker(prefix: str, seed: int, calls: int, limit: int | None, out: list[tuple[int, int]]) -> None:
    async def work() -> tuple[int, int]:
        meter = RedisMeter(REDIS_URL, prefix=prefix)
        rng = random.Random(seed)
        sent = accepted = 0
        for _ in range(calls):
            posts = rng.randint(1, 9)
            usage = await meter.consume("org:1", posts, limit=limit, at=T0)
            sent += posts
            accepted += posts if usage.accepted else 0
            assert not usage.degraded
        await meter.aclose()
        return sent, accepted

    out.append(asyncio.run(work()))


def _process_worker(prefix: str, seed: int, calls: int) -> int:
    out: list[tuple[int, int]] = []
    _thread_worker(prefix, seed, calls, None, out)
    return out[0][1]


def test_concurrent_threads_lose_nothing_and_never_cross_a_limit(
    redis_prefix: str, redis_client: redis.Redis
) -> None:
    results: list[tuple[int, int]] = []
    threads = [
        threading.Thread(target=_thread_worker, args=(redis_prefix, seed, 150, None, results))
        for seed in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    total = run(RedisMeter(REDIS_URL, prefix=redis_prefix).usage("org:1", at=T0))
    assert total == sum(sent for sent, _ in results)

    limited_prefix = redis_prefix + ":limited"
    results.clear()
    threads = [
        threading.Thread(target=_thread_worker, args=(limited_prefix, seed, 100, 1000, results))
        for seed in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    limited = run(RedisMeter(REDIS_URL, prefix=limited_prefix).usage("org:1", at=T0))
    assert limited == sum(accepted for _, accepted in results)
    assert 1000 - 9 < limited <= 1000
    redis_client.delete(*redis_client.scan_iter(match=f"{limited_prefix}:*"))


def test_concurrent_processes_lose_nothing(redis_prefix: str, redis_client: redis.Redis) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        accepted = pool.starmap(_process_worker, [(redis_prefix, seed, 200) for seed in range(3)])
    total = run(RedisMeter(REDIS_URL, prefix=redis_prefix).usage("org:1", at=T0))
    assert total == sum(accepted)


def test_open_failure_mode_serves_everything_while_redis_is_down() -> None:
    meter = RedisMeter(f"redis://127.0.0.1:{free_port()}/0", failure_mode="open", timeout=0.2)
    usage = run(meter.consume("org:1", 50, limit=10, at=T0))
    assert usage.accepted and usage.degraded and usage.total == 50
    with pytest.raises(InvalidInput):
        RedisMeter("redis://127.0.0.1:6379/0", failure_mode="closed")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        RedisMeter()


def test_a_one_time_value_is_claimed_with_the_count(redis_meter: RedisMeter) -> None:
    """``once`` claims a signature nonce in the same step as the count: a replay counts nothing, on
    either meter, and on the Redis meter also while Redis is down (claimed in memory)."""

    async def scenario(meter: Meter) -> list[tuple[int, bool, bool]]:
        until = datetime.now(UTC).timestamp() + 60
        out = []
        for once in (("n1", until), ("n1", until), ("n2", until)):
            usage = await meter.consume("org:1", 5, at=T0, once=once)
            out.append((usage.total, usage.accepted, usage.replayed))
        return out

    expected = [(5, True, False), (0, False, True), (10, True, False)]
    assert run(scenario(MemoryMeter())) == expected
    assert run(scenario(redis_meter)) == expected
    down = RedisMeter(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    assert [replayed for *_, replayed in run(scenario(down))] == [False, True, False]
