"""Group commit for consent changes: writer threads apply queued requests, one transaction per batch.

Every consent change must take a ledger head in turn, so the throughput of one head is bounded by how
long each transaction holds it. Callers (API request threads) submit a ``ChangeRequest`` and wait for
its receipts; a writer thread drains its queue, applies everything queued in one transaction with
``change_settings_many`` and commits once. A request that is invalid fails alone; a batch whose commit
fails fails every request in it, and nothing of it is kept.

A ledger of one partition has one writer thread. A ledger of ``P`` partitions has one writer thread per
partition, each taking only its partition's head, so batches of different partitions commit side by
side, and one more that may take several heads, for changes of scope ``linked`` (accounts of several
partitions). A request goes to the writer of its account's partition when the writer knows it, else to
the writer of partition ``id mod P``: that one makes the account a key of its own partition if it has
none, and hands the request to the writer of the account's partition if it has one elsewhere (the
batch reads every account anyway, so routing costs no query). Within a partition, batches commit one
after another, in queue order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from consentry.consent import ledger
from consentry.consent.changes import ChangeRequest, Known, Misrouted, change_settings_many
from consentry.consent.context import ConsentContext
from consentry.db import Database
from consentry.errors import ConsentryError

log = logging.getLogger(__name__)

Receipts = list[dict[str, Any]]
Item = tuple[ChangeRequest, Future[Receipts]]
_STOP = object()
LINGER_SECONDS = 0.002
"""How long a writer thread waits for the callers of its previous batch to come back (at most)."""
IDLE_SECONDS = 1.0
"""A writer thread idle longer than this gives its connection back to the pool (which checks a
connection before handing it out again)."""
KNOWN_ACCOUNTS = 1_000_000
"""Accounts whose partition a writer remembers (forgotten all at once past this many)."""


class _Lane:
    """One writer thread and its queue: the one of a partition (the only one, partition 0, on a
    ledger of one partition), or the one that may take several heads (``partition`` ``None``)."""

    def __init__(self, writer: ConsentWriter, partition: int | None) -> None:
        self.writer = writer
        self.partition = partition
        self.queue: queue.SimpleQueue[Item | object] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.connection: Connection | None = None
        self.known = Known()
        self.used = 0.0

    def put(self, item: Item) -> None:
        with self.lock:
            if self.thread is None:
                name = "consent-writer" if self.partition is None else f"consent-writer-{self.partition}"
                self.thread = threading.Thread(target=self._run, name=name, daemon=True)
                self.thread.start()
        self.queue.put(item)

    def stop(self) -> None:
        with self.lock:
            thread, self.thread = self.thread, None
        if thread is not None:
            self.queue.put(_STOP)
            thread.join()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for one batch, committed at the end, on the connection the lane keeps while
        batches follow each other (one checked out of the pool, and so checked, after a pause)."""
        if self.connection is not None and time.monotonic() - self.used > IDLE_SECONDS:
            self.release()
        if self.connection is None:
            self.connection = self.writer.database.write_engine.connect()
        try:
            with Session(bind=self.connection, expire_on_commit=False) as session, session.begin():
                yield session
        except BaseException:
            if self.connection.invalidated or self.connection.closed:
                self.release()
            raise
        finally:
            self.used = time.monotonic()

    def release(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.release()

    def _loop(self) -> None:
        last = 0  # the size of the previous batch: how many callers are likely to come back at once
        while True:
            first = self.queue.get()
            if first is _STOP:
                return
            batch, stop = self._gather(first, expected=min(last, self.writer.max_batch))
            last = len(batch)
            self.writer._apply(self, batch)
            if stop:
                return

    def _gather(self, first: Item | object, *, expected: int) -> tuple[list[Item], bool]:
        """``first`` and whatever else is queued; when fewer than half of the callers of the previous
        batch are back yet, wait for them a little (``LINGER_SECONDS`` at most). Without that wait,
        many callers alternate between a batch of all but one and a batch of the one that was late,
        which pays a transaction for a single change."""
        items = [first]
        deadline: float | None = None
        while len(items) < self.writer.max_batch:
            try:
                if deadline is None:
                    item = self.queue.get_nowait()
                else:
                    item = self.queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                if deadline is not None or len(items) * 2 >= expected:
                    break
                deadline = time.monotonic() + LINGER_SECONDS
                continue
            if item is _STOP:
                return [i for i in items if isinstance(i, tuple)], True
            items.append(item)
            if deadline is not None and len(items) >= expected:
                break
        return [i for i in items if isinstance(i, tuple)], False


class ConsentWriter:
    """Writer threads applying consent changes in batches: one, or one per ledger partition and one
    that may take several heads."""

    def __init__(
        self,
        database: Database,
        ctx: ConsentContext,
        *,
        max_batch: int = 512,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.database = database
        self.ctx = ctx
        self.max_batch = max_batch
        self.on_commit = on_commit  # told after each committed batch (the checkpoint publisher)
        self._lock = threading.Lock()
        self._spanning = _Lane(self, None)
        self._lanes: dict[int, _Lane] = {}
        self._partitions: int | None = None
        self._known: dict[int, int] = {}  # account id -> partition of its subject key
        self.batches = 0
        self.requests = 0
        self.lane_batches: dict[int | None, int] = {}
        """Committed batches per writer thread: its partition, or ``None`` for the one of several heads."""

    def submit(self, request: ChangeRequest) -> Future[Receipts]:
        """Queue a request; the future yields its signed receipts or raises its error."""
        future: Future[Receipts] = Future()
        self._lane_of(request).put((request, future))
        return future

    def change(self, request: ChangeRequest, *, timeout: float = 60.0) -> Receipts:
        """Apply a request and wait for its receipts."""
        return self.submit(request).result(timeout=timeout)

    def close(self) -> None:
        """Finish what is queued and stop the threads (the partitions' first: they may hand requests on)."""
        with self._lock:
            lanes = list(self._lanes.values())
        for lane in lanes:
            lane.stop()
        self._spanning.stop()

    def _count(self) -> int:
        count = self._partitions
        if count is None:
            with self.database.read() as session:
                count = self._partitions = ledger.partition_count(session)
        return count

    def _lane_of(self, request: ChangeRequest) -> _Lane:
        """The lane of a request: its account's partition's when known, else partition ``id mod P``
        (whose writer makes the key of an account without one, and hands on one it finds elsewhere)."""
        count = self._count()
        if request.scope != "account" and count > 1:
            return self._spanning
        partition = 0 if count == 1 else self._known.get(request.account_id, request.account_id % count)
        return self._lane(partition)

    def _lane(self, partition: int) -> _Lane:
        with self._lock:
            lane = self._lanes.get(partition)
            if lane is None:
                lane = self._lanes[partition] = _Lane(self, partition)
        return lane

    def _remember(self, account_id: int, subject_key: str, count: int) -> int:
        if len(self._known) >= KNOWN_ACCOUNTS:
            self._known.clear()
        partition = self._known[account_id] = ledger.partition_of(subject_key, count)
        return partition

    def _apply(self, lane: _Lane, batch: list[Item]) -> None:
        requests = [request for request, _ in batch]
        try:
            with lane.session() as session:
                results = change_settings_many(
                    session, requests, ctx=self.ctx, partition=lane.partition, known=lane.known
                )
        except Exception as error:  # the whole transaction failed: every request in it fails, nothing kept
            log.exception("consent batch of %d requests failed", len(batch))
            for _, future in batch:
                future.set_exception(error)
            return
        done = [result for result in results if not isinstance(result, Misrouted)]
        with self._lock:
            self.batches += 1
            self.requests += len(done)
            self.lane_batches[lane.partition] = self.lane_batches.get(lane.partition, 0) + 1
        if self.on_commit is not None and done:
            self.on_commit()
        for item, result in zip(batch, results, strict=True):
            self._settle(item, result)

    def _settle(self, item: Item, result: Receipts | ConsentryError) -> None:
        request, future = item
        if isinstance(result, Misrouted):  # to its account's partition, or to the writer of several heads
            count = self._partitions
            if result.partition is not None and count is not None and result.partition < count:
                self._known[request.account_id] = result.partition
                self._lane(result.partition).put(item)
            else:
                self._partitions = None  # the partitions may have changed: count them again
                self._spanning.put(item)
        elif isinstance(result, ConsentryError):
            future.set_exception(result)
        else:
            count = self._partitions
            if result and request.scope == "account" and count is not None and count > 1:
                self._remember(request.account_id, str(result[0]["receipt"]["subject"]), count)
            future.set_result(result)
