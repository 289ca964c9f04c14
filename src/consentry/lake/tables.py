"""Iceberg and Delta Lake sources (``consentry.lake.source``): each contract table resolved, through the
table format's own library, to the Parquet data files of one snapshot.

pyiceberg and deltalake are imported here only, when such a lake is opened (the ``lake`` extra).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pyarrow as pa

from consentry.errors import ConsentryError, InvalidInput, NotFound
from consentry.lake import schema
from consentry.lake.source import (
    TABLES,
    Lake,
    LakeSpec,
    TableProblem,
    TableSnapshot,
    local_path,
    redact,
)


def _need(module: str) -> NoReturn:
    raise ConsentryError(
        f"reading this lake needs {module}; install Consentry's 'lake' extra (pip install 'consentry[lake]')"
    )


def _digest(lines: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def _remote(name: str, where: str, files: list[str]) -> TableProblem:
    return TableProblem(
        name,
        "unsupported_table",
        f"{where}: {len(files):,} data file(s) are not on a file system (e.g. {files[0]}); the engines read "
        "data files as paths, so mount the storage and register the table with file paths",
        files[0],
    )


def _iso(milliseconds: int) -> str:
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC).isoformat()


# --- Apache Iceberg ---------------------------------------------------------------------------------


def open_iceberg(spec: LakeSpec) -> Lake:
    """The contract tables of an Iceberg namespace in a SQL catalog, at the snapshots ``spec`` names."""
    try:
        from pyiceberg.catalog.sql import SqlCatalog
        from pyiceberg.exceptions import NoSuchNamespaceError
    except ImportError:
        _need("pyiceberg")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    uri = spec.catalog or ""
    try:
        url = make_url(uri)
    except ArgumentError:
        raise InvalidInput(f"--catalog is not a database URI: {uri!r}", field="catalog") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:" or not Path(url.database).is_file():
            raise NotFound(f"no SQLite Iceberg catalog at {url.database or uri}", field="catalog")
    elif backend != "postgresql":
        raise InvalidInput(
            "--catalog must name an Iceberg SQL catalog in SQLite or PostgreSQL "
            "(sqlite:///path/catalog.db, postgresql+psycopg://user@host/db)",
            field="catalog",
        )
    namespace = spec.namespace or ""
    shown = redact(uri)
    try:  # read only: never create the catalog's tables in a database named by mistake
        catalog = SqlCatalog(spec.catalog_name, uri=uri, init_catalog_tables="false")
    except (SQLAlchemyError, ImportError) as error:
        raise NotFound(f"cannot open the Iceberg catalog at {shown}: {error}", field="catalog") from None
    try:
        try:
            catalog.load_namespace_properties(namespace)
        except NoSuchNamespaceError:
            raise NotFound(
                f"no namespace {namespace!r} in the Iceberg catalog {spec.catalog_name!r} at {shown}",
                field="namespace",
            ) from None
        except SQLAlchemyError as error:
            raise NotFound(
                f"no Iceberg SQL catalog at {shown} ({type(error).__name__}: {str(error).splitlines()[0]})",
                field="catalog",
            ) from None
        tables: dict[str, TableSnapshot] = {}
        problems: dict[str, TableProblem] = {}
        for name in TABLES:
            found = _iceberg_table(catalog, spec, name)
            if isinstance(found, TableProblem):
                problems[name] = found
            else:
                tables[name] = found
        return Lake(spec=spec, tables=tables, problems=problems)
    finally:
        catalog.engine.dispose()


def _iceberg_table(catalog: Any, spec: LakeSpec, name: str) -> TableSnapshot | TableProblem:
    from pyiceberg.exceptions import NoSuchTableError
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    identifier = f"{spec.namespace}.{name}"
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        return TableProblem(
            name, "missing_table", f"table {identifier} is missing from the catalog", identifier
        )
    ref = spec.ref_for(name)
    snapshot = _iceberg_snapshot(table, spec, name, identifier)
    if snapshot is None:  # created, never written: an empty table
        return TableSnapshot(
            name=name,
            location=local_path(table.metadata.location) or table.metadata.location,
            files=(),
            schema=schema_to_pyarrow(table.schema(), include_field_ids=False),
            version={"snapshot_id": None},
            fingerprint=_digest([f"{identifier}\0empty\0{table.schema().schema_id}"]),
        )
    where = f"table {identifier} at snapshot {snapshot.snapshot_id}"
    location = local_path(table.metadata.location) or table.metadata.location
    tasks = _iceberg_tasks(table, snapshot, name, identifier, where)
    if isinstance(tasks, TableProblem):
        return tasks
    paths = [task.file.file_path for task in tasks]
    remote = [path for path in paths if local_path(path) is None]
    if remote:
        return _remote(name, where, remote)
    files = sorted(str(local_path(path)) for path in paths)
    sizes = {str(local_path(task.file.file_path)): task.file.file_size_in_bytes for task in tasks}
    iceberg_schema = (
        table.schemas().get(snapshot.schema_id, table.schema())
        if snapshot.schema_id is not None
        else table.schema()
    )
    version: dict[str, Any] = {
        "snapshot_id": snapshot.snapshot_id,
        "committed_at": _iso(snapshot.timestamp_ms),
        "schema_id": iceberg_schema.schema_id,
    }
    if ref is not None and not ref.isdigit():
        version["ref"] = ref
    return TableSnapshot(
        name=name,
        location=location,
        files=tuple(files),
        schema=schema_to_pyarrow(iceberg_schema, include_field_ids=False),
        version=version,
        fingerprint=_digest([f"{identifier}\0{snapshot.snapshot_id}", *(f"{f}\0{sizes[f]}" for f in files)]),
    )


def _iceberg_snapshot(table: Any, spec: LakeSpec, name: str, identifier: str) -> Any:
    """The snapshot of ``table`` that ``spec`` names (time, id, tag or branch; default the current
    one); ``None`` for a table never written. ``InvalidInput`` when the named one does not exist."""
    ref = spec.ref_for(name)
    if spec.snapshot_at is not None:
        snapshot = table.snapshot_as_of_timestamp(int(spec.snapshot_at.timestamp() * 1000))
        if snapshot is None:
            raise InvalidInput(
                f"table {identifier} has no snapshot at or before {spec.snapshot_at.isoformat()}",
                field="snapshot_at",
            )
        return snapshot
    if ref is None:
        return table.current_snapshot()
    snapshot = table.snapshot_by_id(int(ref)) if ref.isdigit() else table.snapshot_by_name(ref)
    if snapshot is None:
        what = "snapshot id" if ref.isdigit() else "tag or branch"
        scope = "" if dict(spec.snapshots).get(name) else f" (--snapshot {ref} applies to every table)"
        raise InvalidInput(f"table {identifier} has no {what} {ref!r}{scope}", field="snapshot")
    return snapshot


def _iceberg_tasks(table: Any, snapshot: Any, name: str, identifier: str, where: str) -> Any:
    """The scan tasks of a snapshot, or a ``TableProblem`` when its rows are not plain data files."""
    try:
        tasks = list(table.scan(snapshot_id=snapshot.snapshot_id).plan_files())
    except (ValueError, NotImplementedError) as error:  # e.g. equality deletes or unknown content
        return TableProblem(
            name,
            "unsupported_table",
            f"{where} cannot be read as plain data files ({error}); rewrite the table's data files "
            "(Spark: CALL system.rewrite_data_files with delete-file-threshold 1) or name another snapshot",
            identifier,
        )
    deletes = sorted({delete.file_path for task in tasks for delete in task.delete_files})
    if deletes:
        return TableProblem(
            name,
            "unsupported_table",
            f"{where} has {len(deletes):,} delete file(s) (row-level deletes kept beside the data); "
            "Consentry reads data files directly and would release deleted rows, so it refuses them: "
            "rewrite the data files (Spark: CALL system.rewrite_data_files(table => ..., "
            "options => map('delete-file-threshold', '1'))) or name a snapshot without deletes",
            deletes[0],
        )
    return tasks


# --- Delta Lake -------------------------------------------------------------------------------------


def open_delta(spec: LakeSpec) -> Lake:
    """The Delta tables ``ROOT/<table>`` of the contract, at the versions ``spec`` names."""
    root = Path(spec.path or "")
    if not root.is_dir():
        raise NotFound(f"no lake folder at {root}", field="lake")
    try:
        import deltalake  # noqa: F401
    except ImportError:
        _need("deltalake")
    root = root.resolve()
    tables: dict[str, TableSnapshot] = {}
    problems: dict[str, TableProblem] = {}
    for name in TABLES:
        found = _delta_table(spec, root, name)
        if isinstance(found, TableProblem):
            problems[name] = found
        else:
            tables[name] = found
    return Lake(spec=spec, tables=tables, problems=problems)


def _version_at(table: Any, at: datetime) -> int | None:
    """The latest version committed at or before ``at`` (from the table's history)."""
    limit = int(at.timestamp() * 1000)
    versions = [int(c["version"]) for c in table.history() if int(c["timestamp"]) <= limit]
    return max(versions) if versions else None


def _delta_table(spec: LakeSpec, root: Path, name: str) -> TableSnapshot | TableProblem:
    location = root / name
    if not (location / "_delta_log").is_dir():
        return TableProblem(
            name, "missing_table", f"no Delta table at {name}/ (no _delta_log/)", f"{name}/_delta_log/"
        )
    loaded = _delta_version(spec, location, name)
    if isinstance(loaded, TableProblem):
        return loaded
    table, wanted = loaded
    where = f"Delta table {name}/ at version {wanted}"
    problem = _delta_unsupported(table, name, where)
    if problem is not None:
        return problem
    paths = list(table.file_uris())
    remote = [path for path in paths if local_path(path) is None]
    if remote:
        return _remote(name, where, remote)
    files = sorted(str(local_path(path)) for path in paths)
    return TableSnapshot(
        name=name,
        location=str(location),
        files=tuple(files),
        schema=pa.schema(table.schema().to_arrow()),
        version={"version": wanted},
        fingerprint=_digest([f"{location}\0{wanted}", *files]),
    )


def _delta_version(spec: LakeSpec, location: Path, name: str) -> tuple[Any, int] | TableProblem:
    """The Delta table at ``location`` loaded at the version ``spec`` names (default the latest), with
    that version. ``InvalidInput`` when the named version does not exist."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, DeltaProtocolError

    ref = spec.ref_for(name)
    try:
        table = DeltaTable(str(location))
        latest = table.version()
        if spec.snapshot_at is not None:
            wanted = _version_at(table, spec.snapshot_at)
            if wanted is None:
                raise InvalidInput(
                    f"Delta table {name}/ has no version at or before {spec.snapshot_at.isoformat()}",
                    field="snapshot_at",
                )
        else:
            wanted = latest if ref is None else int(ref)
        if wanted > latest:
            raise InvalidInput(
                f"Delta table {name}/ has no version {wanted} (latest {latest})", field="snapshot"
            )
        if wanted != latest:
            table.load_as_version(wanted)
    except DeltaProtocolError as error:
        return TableProblem(name, "unsupported_table", f"Delta table {name}/: {error}", f"{name}/")
    except DeltaError as error:
        if ref is not None:
            raise InvalidInput(
                f"Delta table {name}/: cannot load version {ref}: {error}", field="snapshot"
            ) from None
        return TableProblem(name, "unsupported_table", f"Delta table {name}/: {error}", f"{name}/")
    return table, wanted


def _delta_unsupported(table: Any, name: str, where: str) -> TableProblem | None:
    """Why the loaded version's data files do not hold its rows as they are, if they do not: column
    mapping, partitions by contract columns, deletion vectors."""
    metadata = table.metadata()
    mapping = metadata.configuration.get("delta.columnMapping.mode", "none")
    if mapping not in (None, "", "none"):
        return TableProblem(
            name,
            "unsupported_table",
            f"{where} uses column mapping ({mapping}): its data files name columns differently from the "
            "table, so Consentry cannot read them directly; rewrite it without column mapping",
            f"{name}/",
        )
    contract = set(schema.FOLDERS_BY_NAME[name].column_names)
    partitioned = [column for column in metadata.partition_columns if column in contract]
    if partitioned:
        return TableProblem(
            name,
            "unsupported_table",
            f"{where} is partitioned by contract column(s) {', '.join(partitioned)}, whose values are not "
            "in its data files; partition by another column (for example a date derived from created_at)",
            f"{name}/",
        )
    if "deletionVectors" in (table.protocol().reader_features or []):
        marked = pa.table(table.deletion_vectors())
        if marked.num_rows:
            return TableProblem(
                name,
                "unsupported_table",
                f"{where} has deletion vectors on {marked.num_rows:,} data file(s) (rows deleted without "
                "rewriting the files); Consentry reads data files directly and would release deleted "
                "rows, so it refuses them: purge them (Delta: REORG TABLE ... APPLY (PURGE), or OPTIMIZE) "
                "or name a version without them",
                str(marked["filepath"][0]),
            )
    return None
