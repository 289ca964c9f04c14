"""The Redis meter, shared by many API servers. Per subject, one Redis hash per hour whose fields are the
minutes of the hour, and one hash of hour totals (``consentry.metering.redis_layout``). A Lua script reads
the two partial hours at the ends of the window minute by minute and the hours between from the totals
(one ``HMGET``), then applies the increment atomically: one round trip per call.

When Redis cannot be reached the meter counts in memory per minute (``failure_mode="memory"``: enforces
limits on the last total seen from Redis plus the local count; ``"open"``: enforces nothing), logs a
warning, counts the failure in :class:`MeterMetrics`, and tries Redis again every ``retry_interval``
seconds in the background. Once Redis answers, what it counted meanwhile is added there (re-sync) before
Redis decides anything else for this meter, exactly once even when the re-sync is interrupted. It never
raises because Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

from consentry.errors import InvalidInput
from consentry.metering.meter import MemoryMeter, Usage, check_posts, check_subject, check_time
from consentry.metering.redis_client import cluster_target, connect, describe
from consentry.metering.redis_layout import (
    CONSUME_LUA,
    RECONCILE_LUA,
    ResyncBatch,
    expire_at,
    nonce_key,
    window_keys,
)
from consentry.metering.redis_layout import WINDOW_MINUTES as WINDOW_MINUTES

log = logging.getLogger("consentry.metering")

FailureMode = Literal["memory", "open"]


@dataclass
class MeterMetrics:
    """Counters of a meter, for logs and a metrics endpoint."""

    round_trips: int = 0
    redis_errors: int = 0
    fallback_calls: int = 0
    resyncs: int = 0
    resynced_posts: int = 0
    resync_failures: int = 0
    resync_repeats: int = 0
    degraded: bool = False

    def prometheus(self, prefix: str = "consentry_meter") -> str:
        """The counters in the Prometheus text format."""
        lines = []
        for item in fields(self):
            value = getattr(self, item.name)
            kind = "gauge" if item.name == "degraded" else "counter"
            name = f"{prefix}_{item.name}" + ("_total" if kind == "counter" else "")
            lines += [f"# TYPE {name} {kind}", f"{name} {int(value)}"]
        return "\n".join(lines) + "\n"


class RedisMeter:
    """A meter shared through Redis: one Lua script call per ``consume``; in-memory fallback.

    While Redis is unreachable, posts are counted in memory per (subject, minute). A background task
    tries Redis again every ``retry_interval`` seconds and, once it answers, adds them there (re-sync)
    before any further request is decided by Redis: exactly once, minute by minute, even if the re-sync
    itself is interrupted (see :class:`ResyncBatch`).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any | None = None,
        prefix: str = "consentry:meter",
        failure_mode: FailureMode = "memory",
        retry_interval: float = 1.0,
        timeout: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if url is None and client is None:
            raise InvalidInput(
                "a Redis meter needs a URL (CONSENTRY_REDIS_URL) or a client", field="redis_url"
            )
        if failure_mode not in ("memory", "open"):
            raise InvalidInput("failure_mode must be 'memory' or 'open'", field="failure_mode")
        if "{" in prefix or "}" in prefix:
            raise InvalidInput("the key prefix must not contain braces", field="prefix")
        if url is not None:
            cluster_target(url)  # a malformed cluster URL is refused here, not at the first request
        self.url = url
        self.prefix = prefix
        self.failure_mode: FailureMode = failure_mode
        self.retry_interval = retry_interval
        self.timeout = timeout
        self.metrics = MeterMetrics()
        self._monotonic = monotonic
        self._given_client = client
        self._client: Any | None = client
        self._script: Any | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fallback = MemoryMeter()
        self._last_total: dict[str, int] = {}
        self._pending: dict[str, dict[int, int]] = {}
        self._batch: ResyncBatch | None = None
        self._batches = 0
        self._instance = uuid.uuid4().hex[:16]
        self._latest_minute = -(2**62)
        self._down_until = 0.0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._resyncer: asyncio.Task[None] | None = None

    # connections are bound to an event loop: make one per loop (tests may run several loops)
    def _redis(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or (self._given_client is None and self._loop is not loop):
            assert self.url is not None
            self._client = connect(self.url, timeout=self.timeout)
            self._script = None
            self._loop = loop
        if self._script is None:
            self._script = self._client.register_script(CONSUME_LUA)
        return self._client

    def _resync_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    @property
    def degraded(self) -> bool:
        """Whether the meter is counting in memory because Redis was unreachable."""
        return self.metrics.degraded

    @property
    def unsynced_posts(self) -> int:
        """Posts counted in memory that Redis does not hold yet."""
        pending = sum(sum(counts.values()) for counts in self._pending.values())
        return pending + (self._batch.posts if self._batch is not None else 0)

    async def consume(
        self,
        subject: str,
        posts: int,
        *,
        limit: int | None = None,
        at: datetime | None = None,
        once: tuple[str, float] | None = None,
    ) -> Usage:
        """Add ``posts`` for ``subject`` unless ``limit`` would be crossed (one Redis round trip).

        ``once`` is claimed in the same script call, under the subject's hash tag
        (``redis_layout.nonce_key``): a replay counts nothing and answers ``replayed``.
        """
        subject = check_subject(subject)
        posts = check_posts(posts)
        if limit is not None:
            limit = check_posts(limit, field="limit")
        when = check_time(at)
        now_seconds = when.timestamp()
        now = math.floor(now_seconds / 60)
        if now > self._latest_minute:
            self._latest_minute = now
        if self._monotonic() >= self._down_until:
            try:
                # what was counted in memory goes to Redis before Redis decides anything else
                if (self._pending or self._batch is not None) and not await self._resync(wait=False):
                    return self._consume_locally(subject, posts, limit, when, now, once)
                self._redis()
                assert self._script is not None
                self.metrics.round_trips += 1
                keys = window_keys(self.prefix, subject, now)
                args: list[int | str] = [now, posts, -1 if limit is None else limit, repr(now_seconds)]
                args.append(expire_at(now))
                if once is not None:
                    keys.append(nonce_key(self.prefix, subject, once[0]))
                    args.append(max(int(once[1]), int(time.time()) + 1))
                raw = await self._script(keys=keys, args=args)
            except Exception as error:  # Redis down, timeout, or a script error: never fail the caller
                self._failed(error)
            else:
                self._recovered()
                total, accepted, retry, reset = (int(value) for value in raw)
                if once is not None:  # remembered here too, for an outage that follows
                    self._fallback.claims.claim(once[0], until=once[1])
                    if total < 0:
                        return Usage(0, False, replayed=True)
                if len(self._last_total) >= 100_000 and subject not in self._last_total:
                    self._last_total.clear()  # a bound; only used as a base while Redis is down
                self._last_total[subject] = total
                return Usage(total=total, accepted=bool(accepted), retry_after=retry, reset=reset)
        return self._consume_locally(subject, posts, limit, when, now, once)

    def _where(self) -> str:
        return describe(self.url)

    def _failed(self, error: BaseException) -> None:
        self.metrics.redis_errors += 1
        self._down_until = self._monotonic() + self.retry_interval
        if not self.metrics.degraded:
            self.metrics.degraded = True
            log.warning(
                "Redis meter at %s is unreachable (%s: %s); counting in memory (failure mode %r) "
                "and re-syncing when it is back",
                self._where(),
                error.__class__.__name__,
                error,
                self.failure_mode,
            )

    def _recovered(self) -> None:
        if self.metrics.degraded and not self._pending and self._batch is None:
            log.warning("Redis meter at %s is reachable again; counting there", self._where())
            self.metrics.degraded = False

    def _consume_locally(
        self,
        subject: str,
        posts: int,
        limit: int | None,
        when: datetime,
        now: int,
        once: tuple[str, float] | None = None,
    ) -> Usage:
        self.metrics.fallback_calls += 1
        if once is not None and not self._fallback.claims.claim(once[0], until=once[1]):
            return Usage(0, False, degraded=True, replayed=True)
        base = self._last_total.get(subject, 0)
        local_limit = None
        if limit is not None and self.failure_mode == "memory":
            local_limit = max(0, limit - base)
        usage = self._fallback.consume_now(subject, posts, limit=local_limit, at=when)
        if usage.accepted and posts:
            counts = self._pending.setdefault(subject, {})
            counts[now] = counts.get(now, 0) + posts
            self._start_resyncer()
        return Usage(
            total=base + usage.total,
            accepted=usage.accepted,
            retry_after=usage.retry_after,
            reset=usage.reset,
            degraded=True,
        )

    def _start_resyncer(self) -> None:
        """Re-sync as soon as Redis answers again, whether or not another request comes."""
        loop = asyncio.get_running_loop()
        task = self._resyncer
        if task is None or task.done() or task.get_loop() is not loop:
            self._resyncer = loop.create_task(self._resync_when_back(), name="redis-meter-resync")

    async def _resync_when_back(self) -> None:
        while self._pending or self._batch is not None:
            await asyncio.sleep(self.retry_interval)
            if self._monotonic() < self._down_until:
                continue
            try:
                if await self._resync(wait=False):
                    self._recovered()
            except Exception as error:
                self._failed(error)

    async def resync(self) -> int:
        """Add the posts counted in memory while Redis was down; returns how many were added.

        Raises the Redis error if it is still unreachable (the posts stay counted in memory).
        """
        before = self.metrics.resynced_posts
        await self._resync(wait=True)
        return self.metrics.resynced_posts - before

    async def _resync(self, *, wait: bool) -> bool:
        """Re-sync under the lock; False (nothing tried) when another call just found Redis down."""
        async with self._resync_lock():
            if not wait and self._monotonic() < self._down_until:
                return False
            while self._pending or self._batch is not None:
                batch = self._next_batch()
                if batch is not None:
                    await self._send(batch)
            return True

    def _next_batch(self) -> ResyncBatch | None:
        """The batch to send: the one not yet confirmed, else a new one from the pending counts."""
        if self._batch is None:
            first = self._latest_minute - WINDOW_MINUTES + 1
            minutes: dict[str, dict[int, int]] = {}
            for subject, counts in self._pending.items():
                kept = {minute: posts for minute, posts in counts.items() if minute >= first}
                if kept:  # minutes that left the window no longer count anywhere
                    minutes[subject] = kept
            self._pending = {}
            if not minutes:
                return None
            self._batches += 1
            self._batch = ResyncBatch(f"{self._instance}-{self._batches}", minutes)
        return self._batch

    async def _send(self, batch: ResyncBatch) -> None:
        """Add one batch to Redis: one script call per subject, in one pipeline; raises on errors."""
        client = self._redis()
        try:
            sha = await client.script_load(RECONCILE_LUA)
            pipe = client.pipeline(transaction=False)
            for keys, args in batch.script_calls(self.prefix):
                pipe.evalsha(sha, len(keys), *keys, *args)
            self.metrics.round_trips += 2
            added = await pipe.execute()
        except BaseException:
            self.metrics.resync_failures += 1
            raise
        self._batch = None
        self.metrics.resyncs += 1
        self.metrics.resynced_posts += batch.posts
        self.metrics.resync_repeats += sum(1 for flag in added if not int(flag))
        for subject, counts in batch.minutes.items():  # the base of a next outage includes them
            self._last_total[subject] = self._last_total.get(subject, 0) + sum(counts.values())
        if not self._pending:
            self._fallback = MemoryMeter()
        log.warning(
            "Redis meter re-synced %d posts of %d subjects counted in memory while Redis was down",
            batch.posts,
            len(batch.minutes),
        )

    async def usage(self, subject: str, *, at: datetime | None = None) -> int:
        """Posts counted for ``subject`` in the 24 hours up to ``at``."""
        return (await self.consume(subject, 0, at=at)).total

    async def claim(self, name: str, *, until: float) -> bool:
        """Claim a one-time value for every server sharing Redis (``SET NX EXAT``); while Redis is
        unreachable, in this process only (a replay to another server then goes unnoticed)."""
        if self._monotonic() >= self._down_until:
            try:
                self.metrics.round_trips += 1
                done = await self._redis().set(
                    f"{self.prefix}:nonce:{name}", b"1", nx=True, exat=max(int(until), int(time.time()) + 1)
                )
            except Exception as error:
                self._failed(error)
            else:
                if done:  # remembered here too, for an outage that follows
                    self._fallback.claims.claim(name, until=until)
                return bool(done)
        return self._fallback.claims.claim(name, until=until)

    async def delete_subject(self, subject: str, *, at: datetime | None = None) -> None:
        """Forget a subject's counts in the window ending at ``at`` (for tests and admin resets)."""
        now = math.floor(check_time(at).timestamp() / 60)
        await self._redis().delete(*window_keys(self.prefix, check_subject(subject), now))

    async def aclose(self) -> None:
        """Re-sync what is still counted in memory if Redis answers, then close the connection pool
        (not a client passed in)."""
        task, self._resyncer = self._resyncer, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pending or self._batch is not None:
            try:
                await self._resync(wait=True)
            except Exception as error:
                log.warning(
                    "Redis meter at %s: %d posts counted in memory could not be re-synced (%s: %s)",
                    self._where(),
                    self.unsynced_posts,
                    error.__class__.__name__,
                    error,
                )
        if self._client is not None and self._given_client is None:
            try:
                await self._client.aclose()
            except Exception:  # closing a pool of a dead loop or server must not fail shutdown
                log.debug("closing the Redis meter client failed", exc_info=True)
            self._client = None
            self._script = None
