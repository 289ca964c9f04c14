"""Throttled progress: every step when there is no interval, otherwise the last step of each stage."""

from __future__ import annotations

from consentry.progress import throttled


def test_every_step_passes_without_an_interval() -> None:
    seen: list[tuple[str, int, int]] = []
    progress = throttled(lambda *step: seen.append(step), min_interval=0)
    for done in range(4):
        progress("write", done, 3)
    assert seen == [("write", 0, 3), ("write", 1, 3), ("write", 2, 3), ("write", 3, 3)]


def test_a_long_interval_keeps_only_the_end_of_each_stage() -> None:
    seen: list[tuple[str, int, int]] = []
    progress = throttled(lambda *step: seen.append(step), min_interval=10**9)
    for stage in ("read", "write"):
        for done in range(3):
            progress(stage, done, 2)
    assert seen == [("read", 2, 2), ("write", 2, 2)]
