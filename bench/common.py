"""Small helpers shared by the benchmarks: timing with medians, and printing results."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import consentry.wiring  # noqa: F401  (each benchmark is an entry point: the domains wired together)


def median_seconds(func: Callable[[], Any], runs: int) -> tuple[float, list[float]]:
    """Median wall time of ``runs`` calls of ``func`` and every sample."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples


def report(name: str, figures: dict[str, Any]) -> None:
    """Print a benchmark's figures as one JSON line plus a readable block."""
    figures = {
        "bench": name,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        **figures,
    }
    print(json.dumps(figures))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else value
        print(f"  {key:<{width}}  {shown}")
