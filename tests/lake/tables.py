"""Write a generated Parquet lake as Iceberg tables (pyiceberg, SQL catalog) and as Delta tables
(deltalake), in two versions: the lake as generated, then with posts of some authors deleted.

Every table here is written by the table format's own library; only the row-level deletes, which
neither library writes yet, are committed by hand (``add_position_deletes``, ``add_deletion_vector``),
and the tests check that the library itself then reads them as deletes.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from consentry.lake import schema

NAMESPACE = "lake"
TAG = "v1"


def read_folder(lake: Path, name: str) -> pa.Table:
    """One contract table of a Parquet lake, in the contract's schema."""
    folder = schema.FOLDERS_BY_NAME[name]
    return ds.dataset(lake / name, format="parquet").to_table(columns=list(folder.column_names))


def second_version(lake: Path, out: Path) -> tuple[Path, pa.Table]:
    """A copy of ``lake`` in which every live post of an author whose id is a multiple of 5 is deleted
    an hour after it was written; returns the copy and its new posts table."""
    shutil.copytree(lake, out)
    posts = read_folder(lake, "posts")
    authors = np.asarray(posts["author_id"].to_numpy(), dtype=np.int64)
    hit = pa.array((authors % 5 == 0) & np.asarray(pc.is_null(posts["deleted_at"]).to_numpy(), dtype=bool))
    later = pc.add(posts["created_at"], pa.scalar(3_600_000_000, pa.duration("us")))
    deleted = pc.if_else(hit, later, posts["deleted_at"])
    posts = posts.set_column(posts.schema.get_field_index("deleted_at"), "deleted_at", deleted)
    posts = posts.cast(schema.POSTS.schema)
    shutil.rmtree(out / "posts")
    (out / "posts").mkdir()
    pq.write_table(posts, out / "posts" / "part-00000.parquet")
    return out, posts


# --- Iceberg ----------------------------------------------------------------------------------------


def iceberg_catalog(uri: str, warehouse: Path, name: str = "default") -> Any:
    """A pyiceberg SQL catalog (creating its tables) with its warehouse in ``warehouse``."""
    from pyiceberg.catalog.sql import SqlCatalog

    warehouse.mkdir(parents=True, exist_ok=True)
    return SqlCatalog(name, uri=uri, warehouse=warehouse.as_uri())


def write_iceberg(lake: Path, catalog: Any, namespace: str = NAMESPACE) -> dict[str, int]:
    """Every contract table of ``lake`` as an Iceberg table, each tagged ``TAG``; their snapshot ids."""
    catalog.create_namespace(namespace)
    snapshots = {}
    for folder in schema.FOLDERS:
        data = read_folder(lake, folder.name)
        table = catalog.create_table(f"{namespace}.{folder.name}", schema=folder.schema)
        table.append(data)
        snapshot = table.current_snapshot()
        table.manage_snapshots().create_tag(snapshot.snapshot_id, TAG).commit()
        snapshots[folder.name] = snapshot.snapshot_id
    return snapshots


def overwrite_iceberg(catalog: Any, name: str, data: pa.Table, namespace: str = NAMESPACE) -> int:
    """Replace the rows of one Iceberg table (a new snapshot); its snapshot id."""
    table = catalog.load_table(f"{namespace}.{name}")
    table.overwrite(data)
    return int(catalog.load_table(f"{namespace}.{name}").current_snapshot().snapshot_id)


def add_position_deletes(catalog: Any, name: str, positions: list[int], namespace: str = NAMESPACE) -> int:
    """Commit a position-delete file removing rows ``positions`` of the table's first data file, as an
    engine doing merge-on-read deletes would (pyiceberg only writes copy-on-write deletes). Returns the
    new snapshot id."""
    from pyiceberg.manifest import (
        DataFile,
        DataFileContent,
        FileFormat,
        ManifestContent,
        ManifestWriter,
        ManifestWriterV2,
    )
    from pyiceberg.table.update.snapshot import _FastAppendFiles
    from pyiceberg.typedef import Record

    table = catalog.load_table(f"{namespace}.{name}")
    target = next(iter(table.scan().plan_files())).file.file_path
    location = table.metadata.location.removeprefix("file://")
    path = Path(location) / "data" / f"deletes-{uuid.uuid4().hex}.parquet"
    deletes = pa.table(
        {
            "file_path": pa.array([target] * len(positions), pa.string()),
            "pos": pa.array(sorted(positions), pa.int64()),
        },
        schema=pa.schema(
            [
                pa.field("file_path", pa.string(), False, {b"PARQUET:field_id": b"2147483546"}),
                pa.field("pos", pa.int64(), False, {b"PARQUET:field_id": b"2147483545"}),
            ]
        ),
    )
    pq.write_table(deletes, path)

    class DeleteManifestWriter(ManifestWriterV2):
        def content(self) -> ManifestContent:
            return ManifestContent.DELETES

        @property
        def _meta(self) -> dict[str, str]:
            return {**super()._meta, "content": "deletes"}

    class AppendDeletes(_FastAppendFiles):
        def new_manifest_writer(self, spec: Any) -> ManifestWriter:
            return DeleteManifestWriter(
                spec, self.schema(), self.new_manifest_output(), self._snapshot_id, self._compression
            )

    delete_file = DataFile.from_args(
        content=DataFileContent.POSITION_DELETES,
        file_path=path.as_uri(),
        file_format=FileFormat.PARQUET,
        partition=Record(),
        record_count=len(positions),
        file_size_in_bytes=path.stat().st_size,
    )
    delete_file.spec_id = table.metadata.default_spec_id
    from pyiceberg.table.snapshots import Operation

    with table.transaction() as transaction:
        producer = AppendDeletes(operation=Operation.OVERWRITE, transaction=transaction, io=table.io)
        producer.append_data_file(delete_file)
        producer.commit()
    return int(catalog.load_table(f"{namespace}.{name}").current_snapshot().snapshot_id)


# --- Delta ------------------------------------------------------------------------------------------


def write_delta(lake: Path, root: Path, **options: Any) -> None:
    """Every contract table of ``lake`` as a Delta table ``root/<table>`` (version 0)."""
    from deltalake import write_deltalake

    root.mkdir(parents=True, exist_ok=True)
    for folder in schema.FOLDERS:
        write_deltalake(str(root / folder.name), read_folder(lake, folder.name), **options)


def overwrite_delta(root: Path, name: str, data: pa.Table) -> int:
    """Replace the rows of one Delta table (a new version); the version."""
    from deltalake import DeltaTable, write_deltalake

    write_deltalake(str(root / name), data, mode="overwrite")
    return int(DeltaTable(str(root / name)).version())


_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def _z85(data: bytes) -> str:
    """Z85 (ZeroMQ RFC 32) of ``data`` padded to a multiple of 4 bytes, as Delta's inline vectors use."""
    data += b"\0" * (-len(data) % 4)
    out = []
    for index in range(0, len(data), 4):
        value = int.from_bytes(data[index : index + 4], "big")
        chunk = []
        for _ in range(5):
            value, digit = divmod(value, 85)
            chunk.append(_Z85[digit])
        out.append("".join(reversed(chunk)))
    return "".join(out)


def add_deletion_vector(root: Path, name: str, rows: list[int]) -> int:
    """Commit a new version of Delta table ``name`` marking ``rows`` of its first data file deleted with
    an inline deletion vector (Delta protocol, "Deletion Vectors"), as Spark or Databricks would; the
    table must have the ``deletionVectors`` feature. Returns the new version."""
    from deltalake import DeltaTable
    from pyroaring import BitMap

    table = DeltaTable(str(root / name))
    actions = pa.table(table.get_add_actions(flatten=False)).to_pylist()
    first = actions[0]
    bitmap = BitMap(rows).serialize()
    # RoaringBitmapArray, portable: magic 1681511377, one 64-bit count, then (high 32 bits, bitmap)
    dv = (1681511377).to_bytes(4, "little") + (1).to_bytes(8, "little") + (0).to_bytes(4, "little") + bitmap
    version = table.version() + 1
    stats = json.dumps({"numRecords": int(first["num_records"])})
    add = {
        "path": first["path"],
        "partitionValues": {},
        "size": int(first["size_bytes"]),
        "modificationTime": int(first["modification_time"]),
        "dataChange": True,
        "stats": stats,
        "deletionVector": {
            "storageType": "i",
            "pathOrInlineDv": _z85(dv),
            "sizeInBytes": len(dv),
            "cardinality": len(rows),
        },
    }
    remove = {
        "path": first["path"],
        "deletionTimestamp": int(first["modification_time"]) + 1,
        "dataChange": True,
        "extendedFileMetadata": True,
        "partitionValues": {},
        "size": int(first["size_bytes"]),
    }
    commit = [
        {"commitInfo": {"timestamp": int(first["modification_time"]) + 1, "operation": "DELETE"}},
        {"remove": remove},
        {"add": add},
    ]
    log = root / name / "_delta_log" / f"{version:020d}.json"
    log.write_text("".join(json.dumps(action) + "\n" for action in commit))
    return version
