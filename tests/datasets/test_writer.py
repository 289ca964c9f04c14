"""Staging folders, atomic publication, and clean-up after dead builds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from consentry.datasets import writer
from consentry.errors import Conflict, InvalidInput


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
