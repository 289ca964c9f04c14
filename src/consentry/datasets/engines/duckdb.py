"""The DuckDB engine (default): the author facts go in as an Arrow table and are joined against
``read_parquet`` of the lake inside DuckDB; records never become Python objects. The narrow
per-record columns (id, author, record code, links) come back once as Arrow arrays, so that the
record codes, read while the consent evaluation runs, combine with the author facts in NumPy
(``eligibility.combine_reasons``); texts never leave DuckDB. Shards are written by
DuckDB's ``COPY`` as zstd Parquet with bounded row groups and bounded file sizes.

Options (``--engine-option KEY=VALUE``): ``memory_limit`` (e.g. ``4GB``), ``threads``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from consentry.datasets.eligibility import DUCKDB, REASONS, combine_reasons, positions, reason_name
from consentry.datasets.engines import CategoryJob, CategoryOutcome, EngineJob
from consentry.datasets.engines.sql import included_query, records_query, release_query, removals_query
from consentry.errors import ConsentryError, InvalidInput

OPTIONS = ("memory_limit", "threads")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDBEngine:
    """Runs a build in an in-process DuckDB database."""

    name = "duckdb"

    _threads = 1

    def run(self, job: EngineJob, *, step: Callable[[str], None]) -> dict[str, CategoryOutcome]:
        """Build every category of ``job``."""
        unknown = sorted(set(job.options) - set(OPTIONS))
        if unknown:
            raise InvalidInput(
                f"unknown DuckDB option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}",
                field="engine_options",
            )
        scratch = job.work_dir / "duckdb"
        scratch.mkdir(parents=True, exist_ok=True)
        connection = duckdb.connect(":memory:")
        try:
            connection.execute("SET preserve_insertion_order = false").fetchall()
            connection.execute("SET enable_progress_bar = false").fetchall()
            connection.execute(f"SET temp_directory = {_literal(str(scratch))}").fetchall()
            for key in OPTIONS:
                if key in job.options:
                    connection.execute(f"SET {key} = {_literal(job.options[key])}").fetchall()
            row = connection.execute("SELECT current_setting('threads')").fetchone()
            self._threads = int(row[0]) if row else 1
            return {
                category.spec.name: self._category(connection, job, category, step)
                for category in job.categories
            }
        except duckdb.Error as error:
            raise ConsentryError(f"DuckDB failed: {error}") from error
        finally:
            connection.close()

    def _category(
        self,
        connection: duckdb.DuckDBPyConnection,
        job: EngineJob,
        category: CategoryJob,
        step: Callable[[str], None],
    ) -> CategoryOutcome:
        name = category.spec.name
        files = ", ".join(_literal(path) for path in category.files)
        connection.execute(
            f"CREATE OR REPLACE TEMP VIEW lake_{name} AS "
            f"SELECT * FROM read_parquet([{files}], union_by_name = true)"
        ).fetchall()
        if category.prior is not None:
            connection.register(f"prior_{name}", pa.table({"id": pa.array(category.prior, pa.int64())}))

        step(f"{name}: records")  # needs no consent: runs while the author facts are computed
        records = self._records(connection, job, category)
        step(f"{name}: eligibility")
        reasons = _reasons(records, category, job.authors.facts())
        del records
        excluded, already_held = tally(reasons, category.prior)
        cut = cut_links(reasons, category)
        if cut is not None:
            connection.register(f"cut_links_{name}", cut)

        step(f"{name}: write")
        connection.register("authors", job.authors.named())
        shards, found = self._write(connection, job, category, reasons, step)
        connection.register(f"reasons_{name}", reasons)
        if found is None:  # ids too wide to pack, or an incremental release: let DuckDB sort
            included = connection.sql(included_query(category)).to_arrow_table()
            found = (
                np.asarray(included["id"].to_numpy(), dtype=np.int64),
                np.asarray(included["author_id"].to_numpy(), dtype=np.int64),
            )
        record_ids, author_ids = found
        removed_ids = np.zeros(0, dtype=np.int64)
        removed_reasons: list[str] = []
        if category.prior is not None:
            removals = connection.sql(removals_query(category)).to_arrow_table()
            removed_ids = np.asarray(removals["id"].to_numpy(), dtype=np.int64)
            removed_reasons = [reason_name(int(code)) for code in removals["reason"].to_pylist()]
            connection.unregister(f"prior_{name}")
        connection.unregister(f"reasons_{name}")
        if cut is not None:
            connection.unregister(f"cut_links_{name}")
        return CategoryOutcome(
            shards=shards,
            rows=len(record_ids),
            excluded=excluded,
            already_held=already_held,
            record_ids=record_ids,
            author_ids=author_ids,
            removed_ids=removed_ids,
            removed_reasons=removed_reasons,
        )

    def _records(
        self, connection: duckdb.DuckDBPyConnection, job: EngineJob, category: CategoryJob
    ) -> pa.Table:
        """``records_query`` as Arrow; while the author facts are still being computed, on one core
        fewer, so the consent evaluation keeps one."""
        waiting = not job.authors.ready()
        if waiting:
            connection.execute(f"SET threads = {max(1, (os.cpu_count() or 2) - 1)}").fetchall()
        records = connection.sql(records_query(category, job.window, DUCKDB)).to_arrow_table()
        if waiting:
            connection.execute(f"SET threads = {self._threads}").fetchall()
        return records

    def _write(
        self,
        connection: duckdb.DuckDBPyConnection,
        job: EngineJob,
        category: CategoryJob,
        reasons: pa.Table,
        step: Callable[[str], None],
    ) -> tuple[list[Path], tuple[np.ndarray, np.ndarray] | None]:
        """Write the shards with ``COPY``; returns them and, for a full release, the lineage pairs
        (sorted on a thread meanwhile: they need only the reasons)."""
        name = category.spec.name
        parts = job.work_dir / f"parts-{name}"
        query = release_query(category, job.window, DUCKDB, scrub_pii=job.scrub_pii)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lineage") as pool:
            packed = pool.submit(sorted_included, reasons) if category.prior is None else None
            connection.execute(
                f"COPY ({query}) TO {_literal(str(parts))} (FORMAT parquet, COMPRESSION zstd, "
                f"ROW_GROUP_SIZE {int(job.row_group_rows)}, FILE_SIZE_BYTES {int(job.shard_bytes)}, "
                "FILENAME_PATTERN 'part-{i}')"
            ).fetchall()
            shards = sorted(parts.glob("part-*.parquet"), key=lambda path: int(path.stem.split("-")[1]))
            step(f"{name}: lineage")
            return shards, None if packed is None else packed.result()


def _reasons(records: pa.Table, category: CategoryJob, authors: pa.Table) -> pa.Table:
    """``records`` with each record's reason code (0 eligible) in place of its record code."""
    reason = combine_reasons(
        category.spec,
        author_ids=np.asarray(records["author_id"].to_numpy(), dtype=np.int64),
        codes=np.asarray(records["code"].to_numpy(), dtype=np.int8),
        authors=authors,
    )
    return records.set_column(records.schema.get_field_index("code"), "reason", pa.array(reason))


def _held(ids: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Which of ``ids`` the recipient already holds (``prior``: sorted, distinct)."""
    if not len(prior):
        return np.zeros(len(ids), dtype=bool)
    at = np.minimum(np.searchsorted(prior, ids), len(prior) - 1)
    held: np.ndarray = prior[at] == ids
    return held


def tally(reasons: pa.Table, prior: np.ndarray | None) -> tuple[dict[str, int], int]:
    """``counts_query`` in NumPy: records in the window per exclusion reason, and how many eligible
    ones the recipient already holds."""
    in_window = np.asarray(pc.fill_null(reasons["in_window"], False).to_numpy(), dtype=bool)
    reason = np.asarray(reasons["reason"].to_numpy(), dtype=np.int8)[in_window]
    counts = np.bincount(reason, minlength=len(REASONS) + 1)
    excluded = {reason_name(code): int(counts[code]) for code in range(1, len(REASONS) + 1)}
    held = 0
    if prior is not None:
        ids = np.asarray(reasons["id"].to_numpy(), dtype=np.int64)[in_window]
        held = int(np.count_nonzero(_held(ids[reason == 0], prior)))
    return excluded, held


def cut_links(reasons: pa.Table, category: CategoryJob) -> pa.Table | None:
    """``cut_links_query`` in NumPy: the included records with a link to a record that is not
    eligible or not in the lake (``id`` and one ``cut_<link>`` flag per link); ``None`` when the
    category has no links."""
    links = category.spec.links
    if not links:
        return None
    ids = np.asarray(reasons["id"].to_numpy(), dtype=np.int64)
    reason = np.asarray(reasons["reason"].to_numpy(), dtype=np.int8)
    included = (reason == 0) & np.asarray(pc.fill_null(reasons["in_window"], False).to_numpy(), dtype=bool)
    if category.prior is not None:
        included &= ~_held(ids, category.prior)
    flags: dict[str, np.ndarray] = {}
    for link in links:
        column = reasons[link]
        linked = np.asarray(column.is_valid().to_numpy(), dtype=bool) & included
        targets = np.asarray(pc.fill_null(column, 0).to_numpy(), dtype=np.int64)
        cut = np.zeros(len(ids), dtype=bool)
        position = positions(ids, targets[linked])
        cut[linked] = (position < 0) | (reason[np.maximum(position, 0)] != 0)  # a missing record is deleted
        flags[f"cut_{link}"] = cut
    rows = np.logical_or.reduce(list(flags.values()))
    return pa.table({"id": pa.array(ids[rows]), **{key: pa.array(flag[rows]) for key, flag in flags.items()}})


def sorted_included(reasons: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
    """``included_query`` without a prior release, in NumPy: the (record, author) ids of the eligible
    records in the window, ordered by author, then record. Each pair is packed into one int64 (author
    in the high 31 bits, record in the low 32) and sorted at once; ``None`` when the ids do not fit."""
    keep = pc.and_(pc.fill_null(reasons["in_window"], False), pc.equal(reasons["reason"], 0))
    ids = np.asarray(reasons["id"].filter(keep).to_numpy(), dtype=np.int64)
    authors = np.asarray(reasons["author_id"].filter(keep).to_numpy(), dtype=np.int64)
    if ids.size and (
        int(ids.min()) < 0
        or int(ids.max()) >= 1 << 32
        or int(authors.min()) < 0
        or int(authors.max()) >= 1 << 31
    ):
        return None
    packed = np.sort((authors << 32) | ids)
    return packed & 0xFFFFFFFF, packed >> 32
