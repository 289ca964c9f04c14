"""Product defaults that commands name in their options: plain values, importable without the
configuration machinery (``consentry.config`` loads pydantic-settings, which ``--help`` does not need)."""

from __future__ import annotations

DAMAGES_THRESHOLD_POSTS = 1_000_000
"""The damages clause's default threshold: posts served to one organisation in any 24 hours."""
DAMAGES_RATE_CENTS = 1_500_000
"""The damages clause's default rate: USD 15,000 (in cents) per 1,000,000 posts."""
