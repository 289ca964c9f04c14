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

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from consentry.datasets.eligibility import DUCKDB, REASONS, combine_reasons, reason_name
from consentry.datasets.engines import CategoryJob, CategoryOutcome, EngineJob
from consentry.datasets.engines.sql import (
    counts_query,
    cut_links_query,
    included_query,
    records_query,
    release_query,
    removals_query,
)
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
        waiting = not job.authors.ready()
        if waiting:  # leave a core to the consent evaluation running beside
            connection.execute(f"SET threads = {max(1, (os.cpu_count() or 2) - 1)}").fetchall()
        records = connection.sql(records_query(category, job.window, DUCKDB)).to_arrow_table()
        if waiting:
            connection.execute(f"SET threads = {self._threads}").fetchall()
        step(f"{name}: eligibility")
        reason = combine_reasons(
            category.spec,
            author_ids=np.asarray(records["author_id"].to_numpy(), dtype=np.int64),
            codes=np.asarray(records["code"].to_numpy(), dtype=np.int8),
            authors=job.authors.facts(),
        )
        reasons = records.set_column(records.schema.get_field_index("code"), "reason", pa.array(reason))
        del records
        connection.register(f"reasons_{name}", reasons)
        excluded = dict.fromkeys(REASONS, 0)
        already_held = 0
        for code, count, held in connection.execute(counts_query(category)).fetchall():
            if code:
                excluded[reason_name(int(code))] += int(count)
            else:
                already_held = int(held)

        cut_links = cut_links_query(category)
        if cut_links is not None:
            connection.execute(f"CREATE OR REPLACE TEMP TABLE cut_links_{name} AS {cut_links}").fetchall()

        step(f"{name}: write")
        connection.register("authors", job.authors.named())
        parts = job.work_dir / f"parts-{name}"
        query = release_query(category, job.window, DUCKDB, scrub_pii=job.scrub_pii)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lineage") as pool:
            # the lineage pairs need only the reasons: sorted on a thread while DuckDB writes
            packed = pool.submit(sorted_included, reasons) if category.prior is None else None
            connection.execute(
                f"COPY ({query}) TO {_literal(str(parts))} (FORMAT parquet, COMPRESSION zstd, "
                f"ROW_GROUP_SIZE {int(job.row_group_rows)}, FILE_SIZE_BYTES {int(job.shard_bytes)}, "
                "FILENAME_PATTERN 'part-{i}')"
            ).fetchall()
            shards = sorted(parts.glob("part-*.parquet"), key=lambda path: int(path.stem.split("-")[1]))
            step(f"{name}: lineage")
            found = None if packed is None else packed.result()
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
        if cut_links is not None:
            connection.execute(f"DROP TABLE cut_links_{name}").fetchall()
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
