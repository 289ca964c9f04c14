"""Webhook attempts: what a claimed message carries, one signed POST and its outcome, the sending threads
(each with its own keep-alive HTTP client), the retry backoff, and the counts a worker keeps.
"""

from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import httpx

from consentry import __version__
from consentry.db import utcnow
from consentry.partners.webhooks import sign

USER_AGENT = f"Consentry-Webhooks/{__version__}"
EXCERPT_BYTES = 200
"""Characters of a failed response's body kept in the delivery log."""

READ_LIMIT = 64 * 1024
"""Response bytes read (so the connection can be reused); a longer body closes the connection."""


@dataclass(frozen=True)
class Claimed:
    """A message claimed for one attempt, with what sending it needs."""

    id: int
    message_id: str
    recipient_id: int
    partner: str
    url: str
    secret: str
    event_type: str
    body: bytes
    attempt: int


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt (``released``: abandoned at a forced stop, not counted)."""

    claimed: Claimed
    kind: Literal["delivered", "failed", "released"]
    attempted_at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: float = 0.0
    unreachable: bool = False
    """A connection error or timeout (as opposed to an HTTP answer)."""


@dataclass
class WorkerStats:
    """What a worker did so far."""

    delivered: int = 0
    failed: int = 0
    """Failed attempts (each is retried later, or made the message dead)."""
    dead: int = 0
    """Messages that used up their attempts."""
    skipped: int = 0
    """Messages made dead without an attempt: their partner has no webhook endpoint any more."""
    released: int = 0
    jobs: int = 0
    """Jobs run (``run_once`` with a job runner)."""
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> str:
        rate = self.delivered / self.seconds if self.seconds > 0 else 0.0
        parts = [f"delivered {self.delivered:,} ({rate:,.1f}/s)", f"failed attempts {self.failed:,}"]
        parts.append(f"dead {self.dead:,}")
        if self.skipped:
            parts.append(f"without endpoint {self.skipped:,}")
        if self.released:
            parts.append(f"released {self.released:,}")
        if self.jobs:
            parts.append(f"jobs run {self.jobs:,}")
        return ", ".join(parts)


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Wait before the attempt after failed attempt ``attempt`` (1-based): full jitter over
    ``[0, min(cap, base * 2^(attempt-1))]``."""
    ceiling = min(cap, base * 2.0 ** min(max(attempt - 1, 0), 62))
    return (rng or random).uniform(0.0, ceiling)


def _read(response: httpx.Response, *, deadline: float) -> bytes:
    """Up to ``READ_LIMIT`` bytes of a response body (all of it when short, so the connection is reused);
    ``TimeoutError`` past ``deadline`` (``time.perf_counter``), so a trickling answer cannot hold a slot."""
    chunks, size = [], 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= READ_LIMIT:
            break
        if time.perf_counter() > deadline:
            raise TimeoutError
    return b"".join(chunks)


def new_client(timeout: float) -> httpx.Client:
    """An HTTP client for one sending thread (keep-alive connections, reused across messages)."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
        follow_redirects=False,
        headers={"user-agent": USER_AGENT},
    )


def send(client: httpx.Client, item: Claimed, *, timeout: float) -> Outcome:
    """One attempt: sign anew, POST, read (a little of) the answer. Never raises."""
    attempted_at = utcnow()
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    unreachable = False
    try:
        headers = sign(item.secret, message_id=item.message_id, body=item.body)
        headers["content-type"] = "application/json"
        with client.stream("POST", item.url, content=item.body, headers=headers) as response:
            status = response.status_code
            excerpt = _read(response, deadline=started + timeout)
        if not 200 <= status < 300:
            text = " ".join(excerpt.decode("utf-8", "replace").split())[:EXCERPT_BYTES]
            error = f"HTTP {status}" + (f": {text}" if text else "")
    except (httpx.TimeoutException, TimeoutError):
        error, unreachable, status = f"timed out (limit {timeout:g} s)", True, None
    except httpx.TransportError as exc:
        error, unreachable, status = f"{type(exc).__name__}: {exc}".rstrip(": "), True, None
    except Exception as exc:  # an invalid URL, a bad secret: a failed attempt, never a dead worker
        error, status = f"{type(exc).__name__}: {exc}".rstrip(": "), None
    duration = (time.perf_counter() - started) * 1000
    if error is None:
        return Outcome(item, "delivered", attempted_at, status, None, duration)
    return Outcome(item, "failed", attempted_at, status, error, duration, unreachable)


class Senders:
    """``concurrency`` daemon threads that send claimed messages, each with its own HTTP client."""

    def __init__(self, *, name: str, concurrency: int, timeout: float, abandoned: threading.Event) -> None:
        self.timeout = timeout
        self.abandoned = abandoned
        """Set at a forced stop: claimed messages not yet sent are not sent (the loop releases them)."""
        self._work: queue.SimpleQueue[Claimed | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-send-{n}", daemon=True)
            for n in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        with new_client(self.timeout) as client:
            while (item := self._work.get()) is not None:
                if self.abandoned.is_set():
                    continue  # abandoned: released by the loop, not sent
                self._done.put(send(client, item, timeout=self.timeout))

    def submit(self, item: Claimed) -> None:
        """Queue a claimed message for the next free thread."""
        self._work.put(item)

    def finished(self) -> list[Outcome]:
        """Every outcome that is back, without waiting."""
        outcomes = []
        with contextlib.suppress(queue.Empty):
            while True:
                outcomes.append(self._done.get_nowait())
        return outcomes

    def next_finished(self, timeout: float) -> Outcome | None:
        """The next outcome, waiting up to ``timeout`` seconds."""
        try:
            return self._done.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self, *, wait: bool) -> None:
        """End the threads once they are idle (``wait``: until then; a forced stop does not wait)."""
        for _ in self._threads:
            self._work.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
