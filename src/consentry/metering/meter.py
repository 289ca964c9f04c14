"""Meters: posts served per subject over a rolling 24 hours, at minute resolution.

A *subject* is what attribution returns (``org:12``, ``crawler:openai``, ``net:203.0.113.0/24``). The
window at time ``t`` holds the minutes ``[minute(t) - 1439, minute(t)]``. ``consume`` adds posts and
answers with the new total in one step; given a ``limit``, it refuses (and does not count) posts that
would take the total above it, and says when they would fit. Without a limit everything is counted,
however far over any threshold.

Backends:

* :class:`MemoryMeter`: one process (the embedded default).
* ``RedisMeter`` (``consentry.metering.redis_meter``): shared by many API servers, with an in-memory
  fallback while Redis cannot be reached.

This module holds what every meter shares (``Usage``, the ``Meter`` protocol, the argument checks) and
the in-memory meter.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from consentry.db import utcnow
from consentry.errors import InvalidInput
from consentry.metering.nonces import MemoryClaims
from consentry.metering.redis_layout import WINDOW_MINUTES as WINDOW_MINUTES
from consentry.metering.redis_layout import WINDOW_SECONDS as WINDOW_SECONDS


@dataclass(slots=True)
class Usage:
    """The answer of a meter to one ``consume`` call."""

    total: int
    """Posts in the rolling 24-hour window after this call."""
    accepted: bool
    """False when the posts were refused because they would take the total above the limit."""
    retry_after: int = 0
    """When refused: seconds until the refused posts would fit; -1 if they never can (posts > limit)."""
    reset: int = 0
    """Seconds until the oldest counted minute leaves the window (0 when the window is empty)."""
    degraded: bool = False
    """True when the answer came from the in-memory fallback because Redis was unreachable."""
    replayed: bool = False
    """True when the one-time value given as ``once`` was already claimed: nothing was counted."""


@runtime_checkable
class Meter(Protocol):
    """Counts posts served per subject over a rolling 24 hours."""

    async def consume(
        self,
        subject: str,
        posts: int,
        *,
        limit: int | None = None,
        at: datetime | None = None,
        once: tuple[str, float] | None = None,
    ) -> Usage:
        """Add ``posts`` for ``subject`` at ``at`` (now), unless a ``limit`` would be crossed.

        ``once``: (name, until) of a one-time value (a signature nonce) to claim in the same step;
        if it was claimed before, nothing is counted and the answer says ``replayed``.
        """
        ...

    async def usage(self, subject: str, *, at: datetime | None = None) -> int:
        """Posts counted for ``subject`` in the 24 hours up to ``at`` (now)."""
        ...

    async def claim(self, name: str, *, until: float) -> bool:
        """Claim a one-time value (a signature nonce) until ``until`` (epoch seconds); False if taken."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def check_posts(posts: object, *, field: str = "posts") -> int:
    """A post count: a non-negative integer (booleans and floats are refused)."""
    if isinstance(posts, bool) or not isinstance(posts, int):
        raise InvalidInput(f"{field} must be a whole number, not {posts!r}", field=field)
    if posts < 0:
        raise InvalidInput(f"{field} must not be negative ({posts})", field=field)
    return posts


def check_time(at: datetime | None) -> datetime:
    """``at``, or now; naive datetimes are refused."""
    if at is None:
        return utcnow()
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInput("times must be timezone-aware (UTC)", field="at")
    return at


def check_subject(subject: object) -> str:
    """A subject as given, if it is a short string without braces (Redis Cluster hash tags)."""
    if not isinstance(subject, str) or not subject or len(subject) > 120 or "{" in subject or "}" in subject:
        raise InvalidInput("a subject is a non-empty string of at most 120 characters", field="subject")
    return subject


def reset_seconds(oldest: int | None, now_seconds: float) -> int:
    """Seconds until the minute ``oldest`` leaves the window (0 when nothing is counted)."""
    if oldest is None:
        return 0
    return max(1, math.ceil((oldest + WINDOW_MINUTES) * 60 - now_seconds))


# --- in memory -----------------------------------------------------------------------------------------


class _Series:
    """Minute buckets of one subject, oldest first, with the running total of what is kept."""

    __slots__ = ("buckets", "latest", "total")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()
        self.latest = -(2**62)
        self.total = 0


class MemoryMeter:
    """A meter for one process; thread-safe.

    Built for a clock that moves forward: minutes that left the window of the latest time seen for a
    subject are forgotten, so a call with an earlier time counts only the minutes still kept.
    """

    SWEEP_EVERY = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        self._calls = 0
        self._latest = -(2**62)
        self.claims = MemoryClaims()

    def _sweep(self) -> None:
        """Drop subjects whose minutes all left the window of the latest time seen (lock held)."""
        keep_from = self._latest - WINDOW_MINUTES + 1
        for subject in [s for s, series in self._series.items() if series.latest < keep_from]:
            del self._series[subject]

    def consume_now(
        self, subject: str, posts: int, *, limit: int | None = None, at: datetime | None = None
    ) -> Usage:
        """Synchronous ``consume``."""
        subject = check_subject(subject)
        posts = check_posts(posts)
        if limit is not None:
            limit = check_posts(limit, field="limit")
        return self.consume_checked(subject, posts, limit, check_time(at).timestamp())

    def consume_checked(self, subject: str, posts: int, limit: int | None, now_seconds: float) -> Usage:
        """``consume_now`` for arguments the caller has already checked (the middleware's hot path)."""
        now = int(now_seconds // 60)
        with self._lock:
            series = self._series.get(subject)
            if series is None:
                if posts == 0:
                    return Usage(0, True)
                self._calls += 1
                if self._calls % self.SWEEP_EVERY == 0:
                    self._sweep()
                series = self._series[subject] = _Series()
            buckets = series.buckets
            if now > self._latest:
                self._latest = now
            if now == series.latest:  # the usual case: same minute as the previous call
                total = series.total
            elif now > series.latest:  # time moved forward: every kept minute is in the window
                series.latest = now
                first = now - WINDOW_MINUTES + 1
                while buckets and buckets[0][0] < first:
                    series.total -= buckets.popleft()[1]
                total = series.total
            else:  # an earlier time than already seen: sum the window's minutes
                return self._consume_earlier(subject, series, posts, limit, now, now_seconds)
            if limit is not None and total + posts > limit:
                first = now - WINDOW_MINUTES + 1
                oldest = buckets[0][0] if buckets else None
                return self._refuse(buckets, total, posts, limit, first, now, now_seconds, oldest)
            if posts:
                last = buckets[-1] if buckets else None
                if last is not None and last[0] == now:
                    last[1] += posts
                else:
                    buckets.append([now, posts])
                series.total = total = total + posts
            if not buckets:
                del self._series[subject]
                return Usage(total, True)
            reset = math.ceil((buckets[0][0] + WINDOW_MINUTES) * 60 - now_seconds)
            return Usage(total, True, 0, reset if reset > 1 else 1)

    def _consume_earlier(
        self, subject: str, series: _Series, posts: int, limit: int | None, now: int, now_seconds: float
    ) -> Usage:
        """``consume`` at a time before the latest one seen for this subject (lock held)."""
        buckets = series.buckets
        first = now - WINDOW_MINUTES + 1
        keep_from = series.latest - WINDOW_MINUTES + 1
        while buckets and buckets[0][0] < keep_from:
            series.total -= buckets.popleft()[1]
        total, oldest = 0, None
        for minute, count in buckets:
            if first <= minute <= now:
                total += count
                if oldest is None:
                    oldest = minute
        if limit is not None and total + posts > limit:
            return self._refuse(buckets, total, posts, limit, first, now, now_seconds, oldest)
        if posts:
            index = bisect_left([bucket[0] for bucket in buckets], now)
            if index < len(buckets) and buckets[index][0] == now:
                buckets[index][1] += posts
            else:
                buckets.insert(index, [now, posts])
            series.total += posts
            total += posts
            if oldest is None or now < oldest:
                oldest = now
        if not buckets:
            del self._series[subject]
        return Usage(total, True, 0, reset_seconds(oldest, now_seconds))

    @staticmethod
    def _refuse(
        buckets: deque[list[int]],
        total: int,
        posts: int,
        limit: int,
        first: int,
        now: int,
        now_seconds: float,
        oldest: int | None,
    ) -> Usage:
        retry = -1
        if posts <= limit:
            excess, removed = total + posts - limit, 0
            for minute, count in buckets:
                if first <= minute <= now:
                    removed += count
                    if removed >= excess:
                        retry = reset_seconds(minute, now_seconds)
                        break
        return Usage(total=total, accepted=False, retry_after=retry, reset=reset_seconds(oldest, now_seconds))

    async def consume(
        self,
        subject: str,
        posts: int,
        *,
        limit: int | None = None,
        at: datetime | None = None,
        once: tuple[str, float] | None = None,
    ) -> Usage:
        """Add ``posts`` for ``subject`` unless ``limit`` would be crossed (or ``once`` was claimed)."""
        if once is not None and not self.claims.claim(once[0], until=once[1]):
            return Usage(0, False, replayed=True)
        return self.consume_now(subject, posts, limit=limit, at=at)

    async def usage(self, subject: str, *, at: datetime | None = None) -> int:
        """Posts counted for ``subject`` in the 24 hours up to ``at``."""
        return self.consume_now(subject, 0, at=at).total

    def subjects(self) -> list[str]:
        """Subjects with posts in memory."""
        with self._lock:
            return list(self._series)

    async def claim(self, name: str, *, until: float) -> bool:
        """Claim a one-time value in this process (see :class:`MemoryClaims`)."""
        return self.claims.claim(name, until=until)

    async def aclose(self) -> None:
        """Nothing to release."""
