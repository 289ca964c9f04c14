"""Where the metering middleware gets its attribution snapshot: a fixed one, or one loaded from the
database and reloaded every ``ttl`` seconds, ready before the first request is served. Loading also
fetches the Web Bot Auth key directories that are due (``KeyStore.refresh``)."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Protocol

import anyio.to_thread

from consentry.db import Database
from consentry.errors import ConsentryError
from consentry.metering.attribution import CrawlerCatalog, Directory
from consentry.metering.webbotauth import KeyStore

log = logging.getLogger("consentry.metering")


class DirectorySource(Protocol):
    """Where the middleware gets its attribution snapshot."""

    async def get(self) -> Directory:
        """The current directory."""
        ...


class StaticDirectory:
    """A fixed directory (tests, embedded setups); replace it with ``set``."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def set(self, directory: Directory) -> None:
        """Replace the snapshot."""
        self.directory = directory

    async def get(self) -> Directory:
        """The snapshot."""
        return self.directory


class DatabaseDirectory:
    """A snapshot loaded from the database, reloaded every ``ttl`` seconds (in a worker thread).

    Until the first load has finished, every request waits for that one load (one load at a time,
    whatever the thread or event loop); the middleware also loads it at application start-up, before
    the first request is served. If a reload fails the previous snapshot stays in use and the failure is
    logged. If the first load fails, ``get`` raises (the middleware then counts the request against
    ``unknown``) and the next request after ``retry_interval`` seconds tries again.
    """

    def __init__(
        self,
        database: Database,
        *,
        ttl: float = 30.0,
        crawlers: CrawlerCatalog | None = None,
        retry_interval: float = 1.0,
        key_store: KeyStore | None = None,
    ) -> None:
        self.database = database
        self.key_store = key_store or KeyStore()
        self.ttl = ttl
        self.crawlers = crawlers
        self.retry_interval = retry_interval
        self.failures = 0
        self._directory: Directory | None = None
        self._loaded = -math.inf
        self._failed_at = -math.inf
        self._loading = False
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether a snapshot has been loaded."""
        return self._directory is not None

    def _load(self) -> Directory:
        from consentry.metering.service import load_directory

        with self.database.read() as session:
            directory = load_directory(session, crawlers=self.crawlers, key_store=self.key_store)
        # key directories due for a refresh are fetched here, in the loading thread, never by a request
        self.key_store.refresh(directory.identities.by_agent.values())
        return directory

    def _first_load(self) -> Directory:
        """The first snapshot, loaded once by whichever thread gets the lock first (the others wait)."""
        with self._lock:
            if self._directory is not None:
                return self._directory
            if time.monotonic() - self._failed_at < self.retry_interval:
                raise ConsentryError("the metering directory could not be loaded; retrying shortly")
            try:
                self._directory = self._load()
            except Exception as error:
                self.failures += 1
                self._failed_at = time.monotonic()
                log.warning("loading the metering directory failed", exc_info=True)
                raise ConsentryError("the metering directory could not be loaded") from error
            self._loaded = time.monotonic()
            return self._directory

    def _reload(self) -> None:
        with self._lock:
            try:
                self._directory = self._load()
            except Exception:
                self.failures += 1
                log.warning(
                    "reloading the metering directory failed; keeping the previous one", exc_info=True
                )
            finally:
                self._loaded = time.monotonic()

    def invalidate(self) -> None:
        """Reload on the next request."""
        self._loaded = -math.inf

    async def get(self) -> Directory:
        """The snapshot, reloaded when older than ``ttl`` (by one request; the others keep the old one)."""
        directory = self._directory
        if directory is None:
            return await anyio.to_thread.run_sync(self._first_load)
        if time.monotonic() - self._loaded > self.ttl and not self._loading:
            self._loading = True
            try:
                await anyio.to_thread.run_sync(self._reload)
            finally:
                self._loading = False
            directory = self._directory or directory
        return directory
