"""The access log: posts served per subject, merged per minute, route and client, and
:class:`AccessLogWriter`, which buffers them in memory and appends them in batches off the request path
(it owns a ``Database`` and commits one batch per flush, by design).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.metering.attribution import (
    BASES,
)
from consentry.metering.meter import check_posts, check_time
from consentry.metering.models import (
    AccessRecord,
    Organisation,
)

log = logging.getLogger("consentry.metering")
SUBJECT = re.compile(r"^(?:(?:org|crawler|net|spoofed):\S{1,110}|unknown)$")
"""Subjects of the access log: the kinds attribution returns, and ``unknown`` (not attributed)."""

BASIS = frozenset({"", *BASES})


@dataclass(frozen=True)
class AccessEvent:
    """Posts served to a subject at a time (aggregated to the minute when stored)."""

    subject: str
    at: datetime
    posts: int
    organisation_id: int | None = None
    route: str = ""
    client: str = ""
    requests: int = 1
    basis: str = ""
    evidence: str = ""


BucketKey = tuple[str, int | None, datetime, str, str, str, str]


def minute_of(at: datetime) -> datetime:
    """The minute ``at`` falls in (its access-log bucket)."""
    return check_time(at).replace(second=0, microsecond=0)


def _aggregate(events: Iterable[AccessEvent]) -> dict[BucketKey, list[int]]:
    buckets: dict[BucketKey, list[int]] = {}
    for event in events:
        if not isinstance(event.subject, str) or not SUBJECT.match(event.subject):
            raise InvalidInput(
                f"subject {event.subject!r} is not org:, crawler:, net: or unknown", field="subject"
            )
        posts = check_posts(event.posts)
        requests = check_posts(event.requests, field="requests")
        if event.basis not in BASIS:
            raise InvalidInput(f"basis {event.basis!r} is not one of {', '.join(BASES)}", field="basis")
        key = (
            event.subject,
            event.organisation_id,
            minute_of(event.at),
            event.route[:200],
            event.client[:64],
            event.basis,
            event.evidence[:120],
        )
        bucket = buckets.setdefault(key, [0, 0])
        bucket[0] += posts
        bucket[1] += requests
    return buckets


def _insert(session: Session, buckets: dict[BucketKey, list[int]]) -> int:
    rows = [
        {
            "subject": subject,
            "organisation_id": organisation_id,
            "minute": minute,
            "posts": posts,
            "requests": requests,
            "route": route,
            "client": client,
            "basis": basis,
            "evidence": evidence,
        }
        for (subject, organisation_id, minute, route, client, basis, evidence), (
            posts,
            requests,
        ) in buckets.items()
        if posts > 0 or requests > 0
    ]
    if not rows:
        return 0
    wanted = {row["organisation_id"] for row in rows if row["organisation_id"] is not None}
    if wanted:
        known = set(session.scalars(select(Organisation.id).where(Organisation.id.in_(wanted))))
        for row in rows:
            if row["organisation_id"] is not None and row["organisation_id"] not in known:
                row["organisation_id"] = None  # deleted since attribution; the subject still names it
    session.execute(insert(AccessRecord), rows)
    return len(rows)


def append_access_log(session: Session, *, events: Iterable[AccessEvent]) -> int:
    """Append events, merged per (subject, minute, route, client); returns the rows written.

    ``InvalidInput`` for negative or non-integer counts, naive times or malformed subjects: nothing is
    written then.
    """
    return _insert(session, _aggregate(events))


class AccessLogWriter:
    """Buffers metered events in memory and appends them to the access log in batches.

    ``record`` is cheap and thread-safe (a dictionary update); a daemon thread flushes every
    ``interval`` seconds, in one transaction per flush. If the database refuses a batch, the batch stays
    buffered (up to ``max_buckets`` distinct buckets; beyond that the oldest are dropped and counted in
    ``dropped``) and is retried at the next flush.
    """

    def __init__(self, database: Database, *, interval: float = 1.0, max_buckets: int = 1_000_000) -> None:
        self.database = database
        self.interval = interval
        self.max_buckets = max_buckets
        self.failures = 0
        self.dropped = 0
        self.written = 0
        self._buckets: dict[BucketKey, list[int]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(
        self,
        *,
        subject: str,
        at: datetime,
        posts: int,
        organisation_id: int | None = None,
        route: str = "",
        client: str = "",
        basis: str = "",
        evidence: str = "",
    ) -> None:
        """Buffer one response's posts (validated like ``append_access_log``)."""
        event = AccessEvent(subject, at, posts, organisation_id, route, client, 1, basis, evidence)
        for key, (count, requests) in _aggregate([event]).items():
            with self._lock:
                bucket = self._buckets.get(key)
                if bucket is None:
                    if len(self._buckets) >= self.max_buckets:
                        oldest = next(iter(self._buckets))
                        self.dropped += self._buckets.pop(oldest)[0]
                    bucket = self._buckets[key] = [0, 0]
                bucket[0] += count
                bucket[1] += requests
        if self._thread is None and self.interval > 0:
            self.start()

    def pending(self) -> int:
        """Posts buffered and not yet written."""
        with self._lock:
            return sum(bucket[0] for bucket in self._buckets.values())

    def flush(self) -> int:
        """Write the buffer now; returns the rows written (0 and keeps the buffer on failure)."""
        with self._flush_lock:
            with self._lock:
                batch, self._buckets = self._buckets, {}
            if not batch:
                return 0
            try:
                with self.database.write() as session:
                    written = _insert(session, batch)
            except Exception:
                self.failures += 1
                log.warning("access log flush failed; %d buckets kept for retry", len(batch), exc_info=True)
                with self._lock:
                    for key, (posts, requests) in batch.items():
                        bucket = self._buckets.setdefault(key, [0, 0])
                        bucket[0] += posts
                        bucket[1] += requests
                return 0
            self.written += written
            return written

    def start(self) -> None:
        """Start the background flusher (done on the first ``record``)."""
        with self._flush_lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="consentry-access-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        """Stop the flusher and write what is buffered."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)
        self.flush()
