"""Engines run the eligibility rule and the transforms over a lake and write the release's shards.

Both engines take the same ``EngineJob`` and return, per category, the shard files they wrote, the
records included (ids and authors), exclusion counts per reason and, for incremental builds, the
removals. The rule's SQL comes from :mod:`consentry.datasets.eligibility`, so both apply the same text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from consentry.datasets.eligibility import CategorySpec, Window
from consentry.errors import InvalidInput

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``; an exception raised by it aborts the build."""

ENGINES = ("duckdb", "spark")
REMOVALS_SCHEMA = pa.schema(
    [("category", pa.string()), ("id", pa.int64()), ("reason", pa.string()), ("release", pa.string())]
)


@dataclass(frozen=True)
class CategoryJob:
    """One category to build: the lake files to read and the folder to write shards to."""

    spec: CategorySpec
    files: tuple[str, ...]
    out_dir: Path
    cutoff: datetime | None = None
    prior: np.ndarray | None = None
    """Record ids the recipient already holds (incremental builds), or ``None`` for a full release."""


@dataclass(frozen=True)
class EngineJob:
    """Everything an engine needs; nothing here refers to the database."""

    window: Window
    categories: tuple[CategoryJob, ...]
    authors: AuthorSource
    scrub_pii: bool
    work_dir: Path
    row_group_rows: int = 122_880
    shard_bytes: int = 256 * 1024 * 1024
    options: Mapping[str, str] = field(default_factory=dict)


class AuthorSource(Protocol):
    """The author facts, computed while the engine reads the records: ``facts`` (for eligibility)
    and ``named`` (the facts plus ``pseudonym``, for writing) block until they are ready."""

    def ready(self) -> bool:
        """Whether ``facts`` would return without waiting."""
        ...

    def facts(self) -> pa.Table:
        """``eligibility.Authors.table``."""
        ...

    def named(self) -> pa.Table:
        """``eligibility.with_pseudonyms`` of the facts."""
        ...


@dataclass
class CategoryOutcome:
    """What an engine produced for one category."""

    shards: list[Path]
    rows: int
    excluded: dict[str, int]
    already_held: int
    record_ids: np.ndarray
    author_ids: np.ndarray
    removed_ids: np.ndarray
    removed_reasons: list[str]


class Engine(Protocol):
    """A way to run a build."""

    name: str

    def run(self, job: EngineJob, *, step: Callable[[str], None]) -> dict[str, CategoryOutcome]:
        """Build every category of ``job``; call ``step(stage)`` as each step starts."""
        ...


def get_engine(name: str) -> Engine:
    """The engine called ``name`` (imports its library only now)."""
    if name == "duckdb":
        from consentry.datasets.engines.duckdb import DuckDBEngine

        return DuckDBEngine()
    if name == "spark":
        from consentry.datasets.engines.spark import SparkEngine

        return SparkEngine()
    raise InvalidInput(f"engine must be one of {', '.join(ENGINES)}, not {name!r}", field="engine")


STEPS_PER_CATEGORY = 4
"""Steps an engine reports per category: records, eligibility, write, lineage."""
