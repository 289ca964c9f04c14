"""One webhook attempt's retry wait: full jitter under an exponential ceiling."""

from __future__ import annotations

from consentry.partners.delivery import backoff_seconds


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 50.0), (90, 50.0)]:
        samples = [backoff_seconds(attempt, base=1.0, cap=50.0) for _ in range(200)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling / 2  # spread over the whole range, not a fixed delay
