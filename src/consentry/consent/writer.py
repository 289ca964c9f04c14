"""Group commit for consent changes: writer threads apply queued requests, one transaction per batch.

Every consent change must take a ledger head in turn, so the throughput of one head is bounded by how
long each transaction holds it. Callers (API request threads) submit a ``ChangeRequest`` and wait for
its receipts; a writer thread drains its queue, applies everything queued in one transaction with
``change_settings_many`` and commits once. A request that is invalid fails alone; a batch whose commit
fails fails every request in it, and nothing of it is kept.

A ledger of one partition has one writer thread. A ledger of ``P`` partitions has one writer thread per
partition, each taking only its partition's head, so batches of different partitions commit side by
side, and one more that may take several heads: a request goes to the writer of its account's
partition when the account's subject key is known, and to that one otherwise (the first change of an
account, whose subject key is made in the batch, and changes of scope ``linked``, which span accounts
of several partitions). Within a partition, batches commit one after another, in queue order.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from consentry.consent import ledger
from consentry.consent.changes import ChangeRequest, Misrouted, change_settings_many
from consentry.consent.context import ConsentContext
from consentry.db import Database
from consentry.errors import ConsentryError

log = logging.getLogger(__name__)

Receipts = list[dict[str, Any]]
Item = tuple[ChangeRequest, Future[Receipts]]
_STOP = object()
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

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.writer.max_batch:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self.writer._apply(self, [b for b in batch if isinstance(b, tuple)])
            if stop:
                return


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
        """The lane of a request: its account's partition's when the subject key is known."""
        count = self._count()
        if request.scope != "account" and count > 1:
            return self._spanning
        partition = 0 if count == 1 else self._known.get(request.account_id)
        if partition is None:
            with self.database.read() as session:
                key = ledger.subject_key_for(session, request.account_id, create=False)
            if key is None:  # its first change: the writer of this partition makes its subject key there
                partition = request.account_id % count
            else:
                partition = self._remember(request.account_id, key, count)
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
            with self.database.write() as session:
                results = change_settings_many(session, requests, ctx=self.ctx, partition=lane.partition)
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
        if isinstance(result, Misrouted):  # the partitions changed, or a stale account: any head may do
            self._partitions = None
            self._known.pop(request.account_id, None)
            self._spanning.put(item)
        elif isinstance(result, ConsentryError):
            future.set_exception(result)
        else:
            count = self._partitions
            if result and request.scope == "account" and count is not None and count > 1:
                self._remember(request.account_id, str(result[0]["receipt"]["subject"]), count)
            future.set_result(result)
