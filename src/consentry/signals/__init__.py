"""Machine-readable AI signals: per-post ``Content-Usage`` / ``X-Robots-Tag``, robots.txt, tdmrep.json."""

from __future__ import annotations

from consentry.signals.headers import (
    RESTRICTIVE,
    Usage,
    covering_settings,
    current_signal_headers,
    current_usage,
    most_restrictive,
    post_signal_headers,
    post_usage,
    restrictive_headers,
    signal_headers,
    signal_headers_many,
    usage_many,
    usage_of,
)
from consentry.signals.robots import ContentSignals, blocked_crawlers, robots_txt, tdmrep, trains_models

__all__ = [
    "RESTRICTIVE",
    "ContentSignals",
    "Usage",
    "blocked_crawlers",
    "covering_settings",
    "current_signal_headers",
    "current_usage",
    "most_restrictive",
    "post_signal_headers",
    "post_usage",
    "restrictive_headers",
    "robots_txt",
    "signal_headers",
    "signal_headers_many",
    "tdmrep",
    "trains_models",
    "usage_many",
    "usage_of",
]
