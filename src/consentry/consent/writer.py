"""Group commit for consent changes: one thread applies queued requests, one transaction per batch.

Every consent change must take the ledger head in turn, so its throughput is bounded by how long each
transaction holds it. Callers (API request threads) submit a ``ChangeRequest`` and wait for its receipts;
the writer thread drains the queue, applies everything queued in one transaction with
``change_settings_many`` and commits once. A request that is invalid fails alone; a batch whose commit
fails fails every request in it, and nothing of it is kept.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from consentry.consent.service import ChangeRequest, ConsentContext, change_settings_many
from consentry.db import Database
from consentry.errors import ConsentryError

log = logging.getLogger(__name__)

Receipts = list[dict[str, Any]]
_STOP = object()


class ConsentWriter:
    """A single writer thread applying consent changes in batches."""

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
        self._queue: queue.SimpleQueue[tuple[ChangeRequest, Future[Receipts]] | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.requests = 0

    def submit(self, request: ChangeRequest) -> Future[Receipts]:
        """Queue a request; the future yields its signed receipts or raises its error."""
        future: Future[Receipts] = Future()
        self._ensure_started()
        self._queue.put((request, future))
        return future

    def change(self, request: ChangeRequest, *, timeout: float = 60.0) -> Receipts:
        """Apply a request and wait for its receipts."""
        return self.submit(request).result(timeout=timeout)

    def close(self) -> None:
        """Finish what is queued and stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="consent-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._apply([b for b in batch if isinstance(b, tuple)])
            if stop:
                return

    def _apply(self, batch: list[tuple[ChangeRequest, Future[Receipts]]]) -> None:
        requests = [request for request, _ in batch]
        try:
            with self.database.write() as session:
                results = change_settings_many(session, requests, ctx=self.ctx)
        except Exception as error:  # the whole transaction failed: every request in it fails, nothing kept
            log.exception("consent batch of %d requests failed", len(batch))
            for _, future in batch:
                future.set_exception(error)
            return
        self.batches += 1
        self.requests += len(batch)
        if self.on_commit is not None:
            self.on_commit()
        for (_, future), result in zip(batch, results, strict=True):
            if isinstance(result, ConsentryError):
                future.set_exception(result)
            else:
                future.set_result(result)
