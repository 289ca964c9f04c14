"""Writing a release safely: a staging folder beside the target, fsync, and one atomic rename.

A build writes everything into ``<parent>/.consentry-build-<pid>-<random>``. Only when every file is
complete and fsynced is the staging folder renamed to the release folder, so a reader sees either no
release or a whole one. A build that dies leaves its staging folder behind; the next build in the same
parent removes staging folders whose process is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from consentry.errors import Conflict, IntegrityFailure, InvalidInput

STAGING_PREFIX = ".consentry-build-"
MANIFEST = "manifest.json"


def check_out(out: Path) -> None:
    """Refuse an output folder that holds a release or anything else."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise InvalidInput(f"{out} exists and is not a folder", field="out")
        if (out / MANIFEST).exists():
            raise Conflict(f"{out} already holds a release; choose a new folder", field="out")
        if any(out.iterdir()):
            raise Conflict(f"{out} is not empty; choose a new folder", field="out")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(parent: Path) -> list[Path]:
    """Remove staging folders in ``parent`` left by builds whose process is gone; returns them."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        if not entry.name.startswith(STAGING_PREFIX) or not entry.is_dir():
            continue
        pid_text = entry.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and _alive(int(pid_text)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def new_staging(out: Path) -> Path:
    """A fresh staging folder next to ``out`` (same file system, so the final rename is atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out.parent))


def shard_name(index: int, count: int) -> str:
    """``train-00000-of-00003.parquet``: the Hugging Face shard naming."""
    return f"train-{index:05d}-of-{count:05d}.parquet"


def name_shards(parts: list[Path], folder: Path) -> list[Path]:
    """Move engine output files into ``folder`` under shard names, in the order given."""
    folder.mkdir(parents=True, exist_ok=True)
    named = []
    for index, part in enumerate(parts):
        target = folder / shard_name(index, len(parts))
        os.replace(part, target)
        named.append(target)
    return named


def empty_shard(path: Path, schema: pa.Schema) -> None:
    """Write a shard of ``schema`` with no rows and no row group (only the footer)."""
    pq.ParquetWriter(path, schema, compression="zstd").close()


def place_shards(parts: list[Path], folder: Path, schema: pa.Schema) -> list[Path]:
    """Make an engine's output files the shards of one config and return them.

    Files without rows are dropped; a config without rows gets one shard holding only its schema. No
    shard may hold a row group of zero rows: Hugging Face ``datasets`` reads a file in batches the
    size of its first row group and refuses a batch size of 0. Every shard must have ``schema``'s
    column names and types (``IntegrityFailure`` otherwise)."""
    kept = []
    for part in parts:
        metadata = pq.ParquetFile(part).metadata
        if metadata.num_rows == 0:
            part.unlink()
            continue
        if any(metadata.row_group(i).num_rows == 0 for i in range(metadata.num_row_groups)):
            raise IntegrityFailure(f"{part.name} holds a row group without rows", field="engine")
        kept.append(part)
    folder.mkdir(parents=True, exist_ok=True)
    if not kept:
        empty = folder / shard_name(0, 1)
        empty_shard(empty, schema)
        return [empty]
    shards = name_shards(kept, folder)
    for shard in shards:
        found = pq.read_schema(shard)
        if [(f.name, f.type) for f in found] != [(f.name, f.type) for f in schema]:
            raise IntegrityFailure(f"{shard.name} has the schema {found}, expected {schema}", field="engine")
    return shards


def parquet_rows(path: Path) -> int:
    """Rows of a Parquet file, from its footer."""
    return int(pq.ParquetFile(path).metadata.num_rows)


def sha256_file(path: Path, *, chunk: int = 4 * 1024 * 1024) -> str:
    """SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (folders after their contents)."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(Path(folder) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def publish(staging: Path, out: Path) -> None:
    """Atomically move a complete, fsynced staging folder to ``out`` (which must be absent or empty)."""
    fsync_tree(staging)
    if out.is_dir():
        with contextlib.suppress(OSError):
            out.rmdir()  # an empty folder made by the caller; a non-empty one makes the rename fail
    try:
        os.rename(staging, out)
    except OSError as error:
        raise Conflict(f"could not publish the release to {out}: {error}", field="out") from error
    _fsync_dir(out.parent)
