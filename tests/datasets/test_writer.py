"""Staging folders, atomic publication, and clean-up after dead builds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from consentry.datasets import writer
from consentry.errors import Conflict, IntegrityFailure, InvalidInput


def test_output_folder_checks(tmp_path: Path) -> None:
    writer.check_out(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    writer.check_out(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput):
        writer.check_out(tmp_path / "file")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(Conflict, match="not empty"):
        writer.check_out(tmp_path / "full")
    (tmp_path / "full" / "manifest.json").write_text("{}")
    with pytest.raises(Conflict, match="already holds a release"):
        writer.check_out(tmp_path / "full")


def test_publish_moves_a_complete_folder(tmp_path: Path) -> None:
    out = tmp_path / "release"
    out.mkdir()  # an empty folder may be the target
    staging = writer.new_staging(out)
    assert staging.parent == tmp_path and staging.name.startswith(f".consentry-build-{os.getpid()}-")
    (staging / "data").mkdir()
    (staging / "data" / "a.txt").write_text("a")
    writer.publish(staging, out)
    assert (out / "data" / "a.txt").read_text() == "a" and not staging.exists()
    again = writer.new_staging(out)
    with pytest.raises(Conflict):
        writer.publish(again, out)


def test_clean_stale_removes_only_folders_of_dead_processes(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    stale = tmp_path / f".consentry-build-{int(dead.stdout)}-abc"
    live = tmp_path / f".consentry-build-{os.getpid()}-def"
    other = tmp_path / "keep"
    for folder in (stale, live, other):
        folder.mkdir()
    assert writer.clean_stale(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def test_shards_are_named_like_hugging_face_expects(tmp_path: Path) -> None:
    parts = []
    for index in range(3):
        part = tmp_path / f"part-{index}.parquet"
        part.write_text(str(index))
        parts.append(part)
    named = writer.name_shards(parts, tmp_path / "data")
    assert [p.name for p in named] == [
        "train-00000-of-00003.parquet",
        "train-00001-of-00003.parquet",
        "train-00002-of-00003.parquet",
    ]
    assert named[2].read_text() == "2"
    assert writer.sha256_file(named[0]) == "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"


def test_shards_of_a_config_drop_files_without_rows_and_an_empty_config_has_no_row_group(
    tmp_path: Path,
) -> None:
    schema = pa.schema([("id", pa.int64()), ("text", pa.string())])
    rows = tmp_path / "part-0.parquet"
    pq.write_table(pa.table({"id": [1, 2], "text": ["a", "b"]}, schema=schema), rows)
    nothing = tmp_path / "part-1.parquet"
    pq.write_table(schema.empty_table(), nothing)  # one row group of zero rows
    assert pq.ParquetFile(nothing).metadata.num_row_groups == 1
    (shard,) = writer.place_shards([nothing, rows], tmp_path / "full", schema)
    assert shard.name == "train-00000-of-00001.parquet" and writer.parquet_rows(shard) == 2
    assert not nothing.exists()

    (empty,) = writer.place_shards([], tmp_path / "empty", schema)
    assert empty.name == "train-00000-of-00001.parquet"
    metadata = pq.ParquetFile(empty).metadata
    assert (metadata.num_rows, metadata.num_row_groups) == (0, 0)
    assert pq.read_schema(empty).equals(schema)
    # Arrow's dataset reader (what Hugging Face datasets uses) reads it as an empty table of the schema
    assert ds.dataset(empty, format="parquet").to_table().equals(schema.empty_table())


def test_shards_must_have_the_config_schema_and_no_empty_row_group(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.int64())])
    other = tmp_path / "part-0.parquet"
    pq.write_table(pa.table({"id": pa.array([1], pa.int32())}), other)
    with pytest.raises(IntegrityFailure, match="schema"):
        writer.place_shards([other], tmp_path / "data", schema)
    gap = tmp_path / "part-1.parquet"
    with pq.ParquetWriter(gap, schema) as parquet:
        parquet.write_table(pa.table({"id": [1]}, schema=schema))
        parquet.write_table(schema.empty_table())
    with pytest.raises(IntegrityFailure, match="row group without rows"):
        writer.place_shards([gap], tmp_path / "data2", schema)
