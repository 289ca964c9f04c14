"""Claims of one-time values (signature nonces): the first claim of a name wins until it expires.

The meters expose ``claim(name, until=...)``: :class:`MemoryClaims` in one process, Redis
(``SET ... NX EXAT``) when the meter is shared, so a nonce replayed to another worker is caught too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class MemoryClaims:
    """Claimed names with their expiry (epoch seconds), in memory; thread-safe and bounded."""

    def __init__(self, *, limit: int = 1_000_000, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, name: str, *, until: float) -> bool:
        """True when ``name`` was not claimed (or its claim expired); it is claimed until ``until``."""
        now = self.clock()
        with self._lock:
            previous = self._until.get(name)
            if previous is not None and previous >= now:
                return False
            if len(self._until) >= self.limit:
                self._sweep(now)
            self._until[name] = until
            return True

    def _sweep(self, now: float) -> None:
        for name in [name for name, until in self._until.items() if until < now]:
            del self._until[name]
        while len(self._until) >= self.limit:  # still full: forget the oldest claims
            del self._until[next(iter(self._until))]

    def __len__(self) -> int:
        return len(self._until)
