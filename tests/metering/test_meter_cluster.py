"""The Redis meter on a real Redis Cluster started by the test: hash tags keep a subject on one slot,
counts stay exact across nodes, and a master that fails over, a cluster that is down for a while and a
slot that moves (MOVED/ASK) leave the counts exact or within the documented bound."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from consentry.metering.redis_layout import ResyncBatch, nonce_key, window_keys
from consentry.metering.redis_meter import RedisMeter
from tests.metering.conftest import OwnCluster

T0 = datetime(2026, 11, 20, 22, 0, 30, tzinfo=UTC)
SUBJECTS = [f"org:{n}" for n in range(1, 25)] + ["crawler:openai", "net:198.51.100.0/24", "unknown"]
PREFIX = "consentry:meter"


@given(
    subject=st.sampled_from(SUBJECTS)
    | st.text(min_size=1, max_size=40).filter(lambda s: "{" not in s and "}" not in s),
    minute=st.integers(min_value=20_000_000, max_value=40_000_000),
)
def test_every_script_call_touches_one_slot(subject: str, minute: int) -> None:
    keys = [*window_keys(PREFIX, subject, minute), nonce_key(PREFIX, subject, "a-nonce-digest")]
    assert len({key_slot(key.encode()) for key in keys}) == 1
    batch = ResyncBatch("b-1", {subject: {minute: 3, minute - 61: 4, minute - 1439: 5}})
    for keys, _ in batch.script_calls(PREFIX):
        assert len({key_slot(key.encode()) for key in keys}) == 1


@dataclass
class Writer:
    """One API server: its own meter and event loop, counting until told to stop."""

    url: str
    prefix: str
    seed: int
    stop: threading.Event
    log: list[tuple[float, str, int, bool]] = field(default_factory=list)
    unsynced: int = -1
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=lambda: asyncio.run(self.work()), daemon=True)
        self.thread.start()

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=120)

    async def work(self) -> None:
        # a timeout whose script ran all the same is counted again locally (an over-count the docs
        # bound); a generous timeout keeps a loaded test machine from producing one
        meter = RedisMeter(self.url, prefix=self.prefix, retry_interval=0.2, timeout=3.0)
        rng = random.Random(self.seed)
        while not self.stop.is_set():
            subject, posts = rng.choice(SUBJECTS), rng.randint(1, 9)
            usage = await meter.consume(subject, posts, at=T0)
            self.log.append((time.monotonic(), subject, posts, usage.degraded))
            await asyncio.sleep(0.001)
        deadline = time.monotonic() + 60
        while meter.unsynced_posts and time.monotonic() < deadline:  # the cluster may still settle
            try:
                await meter.resync()
            except Exception:
                await asyncio.sleep(0.2)
        self.unsynced = meter.unsynced_posts
        await meter.aclose()


def run_writers(cluster: OwnCluster, prefix: str, during: float, action: object = None) -> list[Writer]:
    stop = threading.Event()
    writers = [Writer(cluster.url, prefix, seed, stop) for seed in range(4)]
    for writer in writers:
        writer.start()
    time.sleep(during)
    if callable(action):
        action()
    time.sleep(during)
    stop.set()
    for writer in writers:
        writer.join()
    assert all(writer.unsynced == 0 for writer in writers), [w.unsynced for w in writers]
    return writers


def counted(cluster: OwnCluster, prefix: str) -> dict[str, int]:
    async def read() -> dict[str, int]:
        meter = RedisMeter(cluster.url, prefix=prefix)
        try:
            return {subject: await meter.usage(subject, at=T0) for subject in SUBJECTS}
        finally:
            await meter.aclose()

    return asyncio.run(read())


def sent(writers: list[Writer]) -> dict[str, int]:
    totals = dict.fromkeys(SUBJECTS, 0)
    for writer in writers:
        for _, subject, posts, _ in writer.log:
            totals[subject] += posts
    return totals


def test_concurrent_writers_count_exactly_across_the_nodes(redis_cluster: OwnCluster) -> None:
    prefix = "consentry-test:cluster"
    writers = run_writers(redis_cluster, prefix, 0.75)
    assert sent(writers) == counted(redis_cluster, prefix)
    assert not any(degraded for w in writers for *_, degraded in w.log)
    masters = {redis_cluster.master_of(f"{prefix}:{{{subject}}}:hours") for subject in SUBJECTS}
    assert len(masters) == 3  # the subjects are spread over every master
    # one subject's window lives on one node: its hour hash and its totals, found together on exactly
    # one master (asked of every node, not through a slot map that a slow node may hold stale)
    window = (f"{prefix}:{{org:1}}:hours", f"{prefix}:{{org:1}}:{(T0.timestamp() // 3600):.0f}")
    holding = []
    for port in redis_cluster.alive():
        client = redis_cluster.client(port)
        try:
            if client.info("replication")["role"] == "master":
                holding.append(client.exists(*window))
        except redis.exceptions.MovedError:  # the slot is another master's
            holding.append(0)
        finally:
            client.close()
    assert sorted(holding) == [0, 0, 2]


def test_a_master_killed_during_the_run_fails_over_within_the_bound(redis_cluster: OwnCluster) -> None:
    """A master crashes; its replica takes over. Meanwhile every server counts in memory (the outage
    path) and re-syncs when the cluster answers again. Lost: at most what the dead master acknowledged
    in its last second (asynchronous replication); on loopback, usually nothing."""
    prefix = "consentry-test:failover"
    victim = redis_cluster.master_of(f"{prefix}:{{org:1}}:hours")
    killed_at: list[float] = []

    def crash() -> None:
        killed_at.append(time.monotonic())
        redis_cluster.kill(victim)
        redis_cluster.wait_ok()  # the replica was promoted

    writers = run_writers(redis_cluster, prefix, 1.0, crash)
    assert victim not in {redis_cluster.master_of(f"{prefix}:{{{s}}}:hours") for s in SUBJECTS}
    wanted, got = sent(writers), counted(redis_cluster, prefix)
    on_victim = {s for s in SUBJECTS if redis_cluster.master_of(f"{prefix}:{{{s}}}:hours") != victim} ^ set(
        SUBJECTS
    )
    bound = sum(
        posts
        for w in writers
        for at, subject, posts, degraded in w.log
        if subject in on_victim and not degraded and killed_at[0] - 1.0 <= at <= killed_at[0]
    )
    assert any(degraded for w in writers for *_, degraded in w.log)  # the outage path was taken
    for subject in SUBJECTS:
        assert got[subject] <= wanted[subject], subject  # never counted twice
        if subject not in on_victim:
            assert got[subject] == wanted[subject], subject
    lost = sum(wanted.values()) - sum(got.values())
    assert 0 <= lost <= bound, (lost, bound)


def test_a_cluster_without_replicas_is_an_outage_reconciled_when_the_master_returns(
    redis_cluster_without_replicas: OwnCluster,
) -> None:
    """Without replicas a stopped master leaves slots uncovered and the cluster refuses everything:
    the meter's outage path counts in memory and re-syncs once the master is back. Exact."""
    cluster = redis_cluster_without_replicas
    prefix = "consentry-test:outage"
    victim = cluster.master_of(f"{prefix}:{{org:1}}:hours")

    def outage() -> None:
        cluster.stop(victim)
        time.sleep(1.5)
        cluster.start_node(victim)
        cluster.wait_ok()

    writers = run_writers(cluster, prefix, 0.75, outage)
    assert any(degraded for w in writers for *_, degraded in w.log)
    assert sent(writers) == counted(cluster, prefix)


def _move_slot(cluster: OwnCluster, key: str) -> tuple[int, int]:
    """Move the slot of ``key`` to another master, key by key (MIGRATE): clients see ASK, then MOVED."""
    source = cluster.master_of(key)
    masters = {cluster.master_of(f"x{n}") for n in range(200)}
    target = next(port for port in sorted(masters) if port != source)
    source_client, target_client = cluster.client(source), cluster.client(target)
    try:
        slot = source_client.execute_command("CLUSTER", "KEYSLOT", key)
        source_id, target_id = cluster.node_id(source), cluster.node_id(target)
        target_client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source_client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while True:
            keys = source_client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10)
            if not keys:
                break
            for name in keys:  # one key at a time, slowly, so that writers meet ASK and TRYAGAIN
                source_client.execute_command("MIGRATE", "127.0.0.1", target, name, 0, 5000)
                time.sleep(0.05)
        for port in cluster.alive():
            client = cluster.client(port)
            try:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            except redis.ResponseError:
                pass  # a replica refuses SETSLOT; it learns the owner from its master
            finally:
                client.close()
    finally:
        source_client.close()
        target_client.close()
    return source, target


def test_a_slot_moving_during_the_run_keeps_the_counts_exact(redis_cluster: OwnCluster) -> None:
    prefix = "consentry-test:moving"
    key = f"{prefix}:{{org:1}}:hours"
    moved: list[tuple[int, int]] = []
    writers = run_writers(redis_cluster, prefix, 0.75, lambda: moved.append(_move_slot(redis_cluster, key)))
    source, target = moved[0]
    assert redis_cluster.master_of(key) == target != source
    assert sent(writers) == counted(redis_cluster, prefix)


def test_the_meter_follows_a_cluster_url(redis_cluster: OwnCluster) -> None:
    async def scenario() -> tuple[int, bool, bool]:
        meter = RedisMeter(redis_cluster.url, prefix="consentry-test:url")
        try:
            await meter.consume("org:1", 5, at=T0)
            total = (await meter.consume("org:1", 6, at=T0)).total
            until = time.time() + 60
            return total, await meter.claim("nonce-1", until=until), await meter.claim("nonce-1", until=until)
        finally:
            await meter.aclose()

    assert asyncio.run(scenario()) == (11, True, False)
