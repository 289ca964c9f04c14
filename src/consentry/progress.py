"""Progress of long background jobs, recorded on their rows without writing on every step."""

from __future__ import annotations

import time
from collections.abc import Callable

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``."""


def throttled(record: Progress, *, min_interval: float) -> Progress:
    """A progress callback passing a step to ``record`` at most every ``min_interval`` seconds, and
    always the last step of a stage (``done == total``)."""
    last = 0.0

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= min_interval or done == total:
            last = now
            record(stage, done, total)

    return progress
