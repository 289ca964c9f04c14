"""Lake sources: the data contract read from Parquet folders, Apache Iceberg tables or Delta Lake tables.

A source resolves every contract table (``accounts``, ``posts``, ...) to the Parquet data files of one
snapshot; the validator (DuckDB) and the engines (DuckDB, Spark) then read those files directly, as they
read a folder. Three formats:

- ``parquet``: a folder holding one sub-folder of Parquet files per table (today's layout);
- ``iceberg``: one Iceberg table per contract table in a namespace of a SQL catalog (SQLite or
  PostgreSQL, read through pyiceberg), at the current snapshot, a snapshot id, a tag or branch name, or
  the snapshot current at a time;
- ``delta``: one Delta table per contract table under a root folder (``root/posts/_delta_log``, read
  through deltalake), at the latest version, a version number, or the version current at a time.

Reading data files directly is only right when they hold the whole truth of the snapshot. Row-level
deletes kept outside the data files (Iceberg delete files, Delta deletion vectors), Delta column mapping
(physical column names differ from the logical ones) and Delta partition columns that are contract
columns (their values live in the log, not in the files) would make a direct read wrong, possibly
releasing deleted rows. Such a table is refused as ``unsupported_table`` (fail safe), with what to do
about it (compact the table, or name another snapshot).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from consentry.errors import InvalidInput, NotFound
from consentry.lake import schema

LakeFormat = Literal["parquet", "iceberg", "delta"]
LAKE_FORMATS: tuple[str, ...] = ("parquet", "iceberg", "delta")
TABLES: tuple[str, ...] = tuple(folder.name for folder in schema.FOLDERS)
ProblemKind = Literal["missing_folder", "missing_table", "no_files", "unsupported_table"]
ALL = "*"
"""The key of a snapshot reference that applies to every table without its own."""
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


# --- what the caller names --------------------------------------------------------------------------


@dataclass(frozen=True)
class LakeSpec:
    """Where a lake is and which snapshot of it to read; made by ``lake_spec`` (which checks it)."""

    format: str = "parquet"
    path: str | None = None
    """The folder (``parquet``) or the root holding one Delta table per contract table (``delta``)."""
    catalog: str | None = None
    """SQLAlchemy URI of an Iceberg SQL catalog (``sqlite:///...``, ``postgresql+psycopg://...``)."""
    catalog_name: str = "default"
    namespace: str | None = None
    snapshots: tuple[tuple[str, str], ...] = ()
    """``(table, ref)`` pairs; table ``*`` applies to every table without its own."""
    snapshot_at: datetime | None = None

    def ref_for(self, table: str) -> str | None:
        """The snapshot reference asked for ``table`` (its own, else the one for every table)."""
        refs = dict(self.snapshots)
        return refs.get(table, refs.get(ALL))

    def describe(self) -> str:
        """A short human description (the catalog's password hidden)."""
        if self.format == "parquet":
            return str(self.path)
        if self.format == "iceberg":
            catalog = redact(self.catalog or "")
            where = f"Iceberg namespace {self.namespace} of catalog {self.catalog_name} at {catalog}"
        else:
            where = f"Delta tables under {self.path}"
        if self.snapshot_at is not None:
            return f"{where}, as at {self.snapshot_at.isoformat()}"
        if self.snapshots:
            return f"{where}, snapshot " + ", ".join(
                ref if table == ALL else f"{table}={ref}" for table, ref in self.snapshots
            )
        return where

    def to_params(self) -> dict[str, Any]:
        """JSON-safe form (stored with build jobs); ``from_params`` reverses it."""
        return {
            "lake_format": self.format,
            "lake": self.path,
            "catalog": self.catalog,
            "catalog_name": self.catalog_name if self.format == "iceberg" else None,
            "namespace": self.namespace,
            "snapshot": [ref if table == ALL else f"{table}={ref}" for table, ref in self.snapshots],
            "snapshot_at": self.snapshot_at.isoformat() if self.snapshot_at else None,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LakeSpec:
        """The spec stored by ``to_params`` (or a build job's parameters)."""
        at = params.get("snapshot_at")
        return lake_spec(
            format=params.get("lake_format") or "parquet",
            lake=params.get("lake"),
            catalog=params.get("catalog"),
            catalog_name=params.get("catalog_name"),
            namespace=params.get("namespace"),
            snapshot=list(params.get("snapshot") or []),
            snapshot_at=datetime.fromisoformat(at) if isinstance(at, str) else at,
        )


def redact(uri: str) -> str:
    """A database URI with its password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(uri).render_as_string(hide_password=True)
    except ArgumentError:
        return uri


def lake_spec(
    *,
    lake: str | Path | None = None,
    format: str = "parquet",
    catalog: str | None = None,
    catalog_name: str | None = None,
    namespace: str | None = None,
    snapshot: Sequence[str] = (),
    snapshot_at: datetime | None = None,
) -> LakeSpec:
    """Check a lake's description and return it; ``InvalidInput`` names the offending option.

    ``snapshot`` entries are ``REF`` (every table) or ``TABLE=REF``: for Iceberg a snapshot id or a tag
    or branch name, for Delta a version number. ``snapshot_at`` (with a time zone) picks, per table, the
    snapshot or version current at that time instead."""
    if format not in LAKE_FORMATS:
        raise InvalidInput(f"lake format must be one of {', '.join(LAKE_FORMATS)}", field="lake_format")
    path = None if lake is None or str(lake) == "" else str(lake)
    if format == "iceberg":
        if path is not None:
            raise InvalidInput(
                "an Iceberg lake is named by --catalog and --namespace, not by --lake", field="lake"
            )
        if not catalog:
            raise InvalidInput("an Iceberg lake needs --catalog (a SQL catalog URI)", field="catalog")
        if not namespace:
            raise InvalidInput("an Iceberg lake needs --namespace", field="namespace")
    else:
        if path is None:
            raise InvalidInput(f"a {format} lake needs --lake (a folder)", field="lake")
        for name, value in (("catalog", catalog), ("catalog_name", catalog_name), ("namespace", namespace)):
            if value:
                raise InvalidInput(f"--{name.replace('_', '-')} applies to Iceberg lakes only", field=name)
    if format == "parquet" and (snapshot or snapshot_at is not None):
        field_name = "snapshot" if snapshot else "snapshot_at"
        raise InvalidInput(
            "a Parquet folder has no snapshots; --snapshot and --snapshot-at apply to Iceberg and Delta",
            field=field_name,
        )
    if snapshot and snapshot_at is not None:
        raise InvalidInput("give --snapshot or --snapshot-at, not both", field="snapshot_at")
    if snapshot_at is not None and snapshot_at.tzinfo is None:
        raise InvalidInput("--snapshot-at must carry a time zone", field="snapshot_at")
    refs: dict[str, str] = {}
    for entry in snapshot:
        table, sep, ref = str(entry).rpartition("=")
        table, ref = (table.strip() if sep else ALL), ref.strip()
        if table != ALL and table not in TABLES:
            raise InvalidInput(
                f"unknown table {table!r} in --snapshot; tables: {', '.join(TABLES)}", field="snapshot"
            )
        if not _REF.match(ref):
            raise InvalidInput(f"{entry!r} is not REF or TABLE=REF", field="snapshot")
        if format == "delta" and not ref.isdigit():
            raise InvalidInput(f"a Delta snapshot is a version number, not {ref!r}", field="snapshot")
        if table in refs:
            raise InvalidInput(f"two snapshots for {table!r}", field="snapshot")
        refs[table] = ref
    return LakeSpec(
        format=format,
        path=path,
        catalog=catalog or None,
        catalog_name=catalog_name or "default",
        namespace=namespace or None,
        snapshots=tuple(sorted(refs.items())),
        snapshot_at=snapshot_at.astimezone(UTC) if snapshot_at else None,
    )


def parquet_spec(path: str | Path) -> LakeSpec:
    """The spec of a Parquet-folder lake."""
    return lake_spec(lake=path)


# --- what a source yields ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TableSnapshot:
    """One contract table at one snapshot: the Parquet data files to read, and what identifies them."""

    name: str
    location: str
    """The folder, or the table's root folder (data file names are shown relative to it)."""
    files: tuple[str, ...]
    schema: pa.Schema | None = None
    """The table's declared schema as Arrow types (Iceberg, Delta); ``None`` for a folder."""
    version: Mapping[str, Any] = field(default_factory=dict)
    """What the manifest records of this snapshot (snapshot id, ref, version)."""
    fingerprint: str = ""

    def show(self, file: str) -> str:
        """A data file's name as a message shows it: relative to the lake (folder) or the table."""
        prefix = self.location.rstrip("/") + "/"
        return file[len(prefix) :] if file.startswith(prefix) else file


@dataclass(frozen=True)
class TableProblem:
    """Why a contract table cannot be read (a violation of the contract check)."""

    name: str
    kind: ProblemKind
    message: str
    example: str


@dataclass(frozen=True)
class Lake:
    """An opened lake: every contract table resolved to a snapshot, or the problem that prevented it."""

    spec: LakeSpec
    tables: Mapping[str, TableSnapshot]
    problems: Mapping[str, TableProblem]

    @property
    def format(self) -> str:
        """``parquet``, ``iceberg`` or ``delta``."""
        return self.spec.format

    def describe(self) -> str:
        """A short human description of the lake."""
        return self.spec.describe()

    def table(self, name: str) -> TableSnapshot:
        """The table called ``name``; ``InvalidInput`` (field ``lake``) when it could not be resolved."""
        if name in self.problems:
            raise InvalidInput(self.problems[name].message, field="lake")
        return self.tables[name]

    @property
    def fingerprint(self) -> str:
        """SHA-256 identifying these exact snapshots: a folder's files by path, size and modification
        time; a table's snapshot (id or version) and data files."""
        digest = hashlib.sha256(f"{self.format}\n".encode())
        for name in TABLES:
            if name in self.tables:
                digest.update(f"{name}\0{self.tables[name].fingerprint}\n".encode())
            elif name in self.problems:
                digest.update(f"{name}\0{self.problems[name].kind}\n".encode())
        return digest.hexdigest()

    def accepts(self, column: schema.Column, actual: pa.DataType) -> bool:
        """Whether a column of type ``actual`` satisfies the contract column in this lake's format.

        Iceberg has no 16-bit integer: its ``int`` (32 bits) stands for the contract's ``int16``, and
        the check then verifies that every value fits."""
        if schema.type_matches(column.type, actual):
            return True
        return bool(self.format == "iceberg" and pa.types.is_int16(column.type) and pa.types.is_int32(actual))

    def provenance(self) -> dict[str, Any]:
        """What a release manifest records of the lake: its format and location, and per table the
        snapshot read (Iceberg snapshot id, Delta version), so the release can be built again."""
        spec = self.spec
        found: dict[str, Any] = {"format": spec.format}
        if spec.format == "iceberg":
            found.update(catalog=redact(spec.catalog or ""), catalog_name=spec.catalog_name)
            found["namespace"] = spec.namespace
        else:
            found["path"] = str(Path(spec.path or "").resolve())
        if spec.snapshot_at is not None:
            found["snapshot_at"] = spec.snapshot_at.isoformat()
        found["fingerprint"] = self.fingerprint
        found["tables"] = {
            name: {**table.version, "files": len(table.files)} for name, table in self.tables.items()
        }
        return found

    def data_files(self, name: str, *, scratch: Path) -> tuple[str, ...]:
        """The data files of table ``name`` for an engine to read; for a table without any (an empty
        Iceberg or Delta table), one Parquet file with zero rows in the contract's schema, written in
        ``scratch`` (which the engine must be able to read, like the lake)."""
        files = self.table(name).files
        if files:
            return files
        import pyarrow.parquet as pq

        scratch.mkdir(parents=True, exist_ok=True)
        path = scratch / f"empty-{name}.parquet"
        pq.write_table(schema.FOLDERS_BY_NAME[name].schema.empty_table(), path)
        return (str(path),)

    def read(self, name: str, target: pa.Schema) -> pa.Table:
        """The columns of ``target`` from every data file of table ``name``, cast to its types (an
        Iceberg ``int`` to the contract's ``int16``; a value that does not fit raises); a column a file
        lacks is null. (File by file with ``pyarrow.parquet``: ``pyarrow.dataset`` imports pandas, which
        takes longer than reading a million accounts.)"""
        import pyarrow.parquet as pq

        tables = []
        for path in self.table(name).files:
            file = pq.ParquetFile(path)
            present = set(file.schema_arrow.names)
            table = file.read(columns=[column for column in target.names if column in present])
            columns = [
                table[f.name] if f.name in present else pa.nulls(table.num_rows, f.type) for f in target
            ]
            tables.append(pa.Table.from_arrays(columns, names=target.names).cast(target))
        return pa.concat_tables(tables) if tables else target.empty_table()


def open_lake(spec: LakeSpec) -> Lake:
    """Resolve every contract table of the lake ``spec`` names. ``NotFound`` when the lake itself
    (folder, catalog, namespace) does not exist; ``InvalidInput`` for a snapshot that does not exist;
    per-table problems are returned in ``Lake.problems``."""
    if spec.format == "iceberg":
        from consentry.lake.tables import open_iceberg

        return open_iceberg(spec)
    if spec.format == "delta":
        from consentry.lake.tables import open_delta

        return open_delta(spec)
    return _open_folder(spec)


def as_lake(lake: Path | str | LakeSpec | Lake) -> Lake:
    """An opened lake from a folder, a spec or an opened lake."""
    if isinstance(lake, Lake):
        return lake
    return open_lake(lake if isinstance(lake, LakeSpec) else parquet_spec(lake))


# --- Parquet folders --------------------------------------------------------------------------------


def parquet_files(directory: Path) -> list[Path]:
    """Parquet files under ``directory``, skipping hidden and ``_``-prefixed names (``_SUCCESS``, ...)."""
    found = []
    for path in directory.rglob("*.parquet"):
        parts = path.relative_to(directory).parts
        if not any(part.startswith((".", "_")) for part in parts):
            found.append(path)
    return sorted(found)


def _open_folder(spec: LakeSpec) -> Lake:
    root = Path(spec.path or "")
    if not root.is_dir():
        raise NotFound(f"no lake folder at {root}", field="path")
    root = root.resolve()
    tables: dict[str, TableSnapshot] = {}
    problems: dict[str, TableProblem] = {}
    for name in TABLES:
        directory = root / name
        if not directory.is_dir():
            problems[name] = TableProblem(name, "missing_folder", f"folder {name}/ is missing", f"{name}/")
            continue
        files = parquet_files(directory)
        digest = hashlib.sha256()
        for path in files:
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        tables[name] = TableSnapshot(
            name=name,
            location=str(root),
            files=tuple(str(path) for path in files),
            fingerprint=digest.hexdigest(),
        )
    return Lake(spec=spec, tables=tables, problems=problems)


def local_path(uri: str) -> str | None:
    """The local path of a data file named by a path or a ``file:`` URI; ``None`` for any other scheme
    (object stores), which the engines here cannot read as files."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return unquote(parts.path)
    if parts.scheme == "":
        return uri
    return None
