"""Finishing a release folder once the engine has written its shards: shard names, lineage bitmaps and
the (author, record) index, removals of an incremental release, the dataset card and the manifest's
list of files with their SHA-256 digests and row counts."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from consentry.datasets import lineage, writer
from consentry.datasets.eligibility import SPECS
from consentry.datasets.engines import REMOVALS_SCHEMA, CategoryOutcome
from consentry.datasets.manifest import ReleaseFacts, dataset_card, release_manifest
from consentry.datasets.request import Link
from consentry.errors import IntegrityFailure

REMOVALS = "removals.parquet"
README = "README.md"
WORK = ".work"


def finish_folder(
    staging: Path,
    outcomes: Mapping[str, CategoryOutcome],
    *,
    facts: ReleaseFacts,
    chain: list[Link],
    hashing: ThreadPoolExecutor,
) -> dict[str, Any]:
    """Name the shards, write lineage, removals and the dataset card, and return the manifest (without
    writing it).

    The shards' SHA-256 digests and the (author, record) index are computed and written on ``hashing``'s
    threads while the bitmaps are built (hashing and writing large blocks leave the interpreter free)."""
    digests: dict[Path, Future[str]] = {}
    rows: dict[str, int] = {}
    removal_tables: list[pa.Table] = []
    for category in facts.categories:
        outcome = outcomes[category]
        rows[category] = _place_category(staging, category, outcome, facts.engine, hashing, digests)
        if chain:
            removal_tables.append(_removals(staging, category, outcome, chain))
    if chain:
        table = pa.concat_tables(removal_tables) if removal_tables else REMOVALS_SCHEMA.empty_table()
        pq.write_table(
            table.sort_by([("category", "ascending"), ("id", "ascending")]),
            staging / REMOVALS,
            compression="zstd",
        )
    manifest = release_manifest(
        facts,
        rows=rows,
        excluded={c: dict(outcomes[c].excluded) for c in facts.categories},
        already_held={c: outcomes[c].already_held for c in facts.categories},
        removals={c: len(outcomes[c].removed_ids) for c in facts.categories},
    )
    (staging / README).write_text(dataset_card(manifest), "utf-8")
    manifest["files"] = _files(staging, digests)
    return manifest


def _place_category(
    staging: Path,
    category: str,
    outcome: CategoryOutcome,
    engine: str,
    hashing: ThreadPoolExecutor,
    digests: dict[Path, Future[str]],
) -> int:
    """Move one category's shards into place (their digests start on ``hashing``) and write its
    lineage; returns the rows written, checked against what the engine included."""
    folder = staging / "data" / category
    try:
        shards = writer.place_shards(outcome.shards, folder, SPECS[category].schema)
    except IntegrityFailure as error:
        raise IntegrityFailure(f"{engine} wrote {category}: {error.detail}", field="engine") from error
    digests.update({shard: hashing.submit(writer.sha256_file, shard) for shard in shards})
    written = sum(writer.parquet_rows(shard) for shard in shards)
    if written != outcome.rows:
        raise IntegrityFailure(
            f"{engine} wrote {written} {category} rows but included {outcome.rows}", field="engine"
        )
    by_author = hashing.submit(  # mostly writing: beside the bitmaps
        lineage.write_by_author,
        lineage.by_author_path(staging, category),
        author_ids=outcome.author_ids,
        record_ids=outcome.record_ids,
    )
    lineage.write_bitmap(lineage.records_path(staging, category), lineage.bitmap_of(outcome.record_ids))
    lineage.write_bitmap(lineage.authors_path(staging, category), lineage.bitmap_of(outcome.author_ids))
    by_author.result()
    return written


def _removals(staging: Path, category: str, outcome: CategoryOutcome, chain: list[Link]) -> pa.Table:
    """Write the bitmap of the records an incremental release removes; returns their rows of
    ``removals.parquet``, each naming the latest release of the chain that delivered it."""
    removed = lineage.bitmap_of(outcome.removed_ids)
    lineage.write_bitmap(lineage.removed_path(staging, category), removed)
    delivered_by = np.full(len(outcome.removed_ids), "", dtype=object)
    for release in chain:  # the latest release of the chain that delivered each record
        path = lineage.records_path(Path(release.path), category)
        if category in release.categories and path.exists():
            holds = lineage.ids_of(lineage.read_bitmap(path) & removed)
            delivered_by[np.isin(outcome.removed_ids, holds)] = release.id
    return pa.table(
        {
            "category": pa.array([category] * len(outcome.removed_ids), pa.string()),
            "id": pa.array(outcome.removed_ids, pa.int64()),
            "reason": pa.array(outcome.removed_reasons, pa.string()),
            "release": pa.array(delivered_by.tolist(), pa.string()),
        },
        schema=REMOVALS_SCHEMA,
    )


def _files(staging: Path, digests: Mapping[Path, Future[str]]) -> list[dict[str, Any]]:
    """Every file of the folder but the work folder: path, bytes, SHA-256 and, for Parquet, rows."""
    files = []
    for path in sorted(
        p for p in staging.rglob("*") if p.is_file() and WORK not in p.relative_to(staging).parts
    ):
        entry: dict[str, Any] = {
            "path": path.relative_to(staging).as_posix(),
            "bytes": path.stat().st_size,
            "sha256": digests[path].result() if path in digests else writer.sha256_file(path),
        }
        if path.suffix == ".parquet":
            entry["rows"] = writer.parquet_rows(path)
        files.append(entry)
    return files
