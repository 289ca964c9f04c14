"""The lake validator: every way a lake breaks the data contract, each with a count and examples.

A lake is a folder of Parquet folders, or Iceberg or Delta tables at a snapshot (``lake.source``); each
table comes down to its Parquet data files. Schemas are read from the Parquet footers (no data), and for
Iceberg and Delta from the table's own schema too, mapped to Arrow types (Iceberg ``timestamptz`` is
``timestamp[us, UTC]``; its 32-bit ``int`` stands for ``int16``, whose values must then fit). Values are
checked by DuckDB straight from the files, so a ten-million-post lake never becomes Python objects.
Checks that depend on a broken column (missing, or of the wrong type in any file) are skipped for that
column: fix the type first, then the values are checked. Extra columns and extra tables are allowed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from consentry.lake import schema
from consentry.lake.source import Lake, LakeSpec, TableSnapshot, as_lake, parquet_files

ViolationKind = Literal[
    "missing_folder",
    "missing_table",
    "unsupported_table",
    "no_files",
    "unreadable",
    "missing_column",
    "wrong_type",
    "null_value",
    "invalid_value",
    "duplicate_key",
    "dangling_reference",
]

EXAMPLES = 5
"""How many example values a violation carries at most."""


@dataclass(frozen=True)
class Violation:
    """One way the lake breaks the contract, with how often and a few offending values."""

    folder: str
    column: str | None
    kind: ViolationKind
    count: int
    examples: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class LakeReport:
    """The outcome of ``check_lake``: violations in contract order, and rows and files per table;
    ``lake`` describes what was checked (the folder, or the tables and their snapshots)."""

    lake: str
    violations: tuple[Violation, ...]
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the lake satisfies the contract."""
        return not self.violations


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


_parquet_files = parquet_files  # the name other modules import
INT16 = (-(2**15), 2**15 - 1)


class _Checker:
    def __init__(self, lake: Lake, settings: Collection[str]) -> None:
        self.lake = lake
        self.allowed = {("consent_events", "setting"): frozenset(settings)}
        self.violations: list[Violation] = []
        self.rows: dict[str, int] = {}
        self.files: dict[str, int] = {}
        self.valid: dict[str, set[str]] = {}  # folder -> columns present with the right type everywhere
        self.widened: set[tuple[str, str]] = set()  # int16 columns stored wider: values checked to fit
        self.connection = duckdb.connect(":memory:")
        self.connection.execute("SET preserve_insertion_order = false")

    def add(
        self,
        folder: str,
        column: str | None,
        kind: ViolationKind,
        count: int,
        examples: Iterable[str],
        message: str,
    ) -> None:
        self.violations.append(Violation(folder, column, kind, count, tuple(examples)[:EXAMPLES], message))

    def scalar(self, sql: str) -> Any:
        rows = self.connection.execute(sql).fetchall()  # all: leaves no result open on the connection
        return rows[0][0] if rows else None

    def shown_values(self, sql: str) -> list[str]:
        """The first column of a query's rows, as examples (strings quoted, to show stray spaces)."""
        return [_show(row[0]) for row in self.connection.execute(sql).fetchall()]

    # --- structure ---------------------------------------------------------------------------------

    def load(self, folder: schema.Folder) -> None:
        """Check files and column types of one table and expose its valid columns as a view."""
        problem = self.lake.problems.get(folder.name)
        if problem is not None:
            self.add(folder.name, None, problem.kind, 1, [problem.example], problem.message)
            return
        table = self.lake.tables[folder.name]
        self.files[folder.name] = len(table.files)
        if not table.files and table.schema is None:
            self.add(
                folder.name,
                None,
                "no_files",
                1,
                [f"{folder.name}/"],
                f"{folder.name}/ holds no Parquet file (an empty table is a file with zero rows)",
            )
            return
        declared = self.declared(folder, table)
        if not table.files and table.schema is not None:  # an empty table: its schema says it all
            self._load_empty(folder, table.schema, declared)
            return
        schemas = self._file_schemas(folder, table)
        if not schemas:
            return
        valid = {
            column.name
            for column in folder.columns
            if column.name in declared and self._column_fits(folder, table, column, schemas)
        }
        file_list = ", ".join(_literal(path) for path in schemas)
        columns = ", ".join(_quote(name) for name in folder.column_names if name in valid) or "NULL AS _none"
        try:
            self.connection.execute(
                f"CREATE VIEW {_quote(folder.name)} AS SELECT {columns} "
                f"FROM read_parquet([{file_list}], union_by_name = true)"
            )
            self.rows[folder.name] = int(self.scalar(f"SELECT count(*) FROM {_quote(folder.name)}"))
        except duckdb.Error as error:
            self.add(
                folder.name, None, "unreadable", len(schemas), [], f"DuckDB cannot read the files: {error}"
            )
            return
        self.valid[folder.name] = valid

    def _load_empty(self, folder: schema.Folder, declared_schema: pa.Schema, declared: set[str]) -> None:
        """Expose a table without data files (its own schema declares its columns) as an empty view."""
        empty = declared_schema.empty_table().select(sorted(declared, key=folder.column_names.index))
        self.connection.register(f"empty_{folder.name}", empty)
        columns = ", ".join(_quote(name) for name in empty.column_names) or "NULL AS _none"
        self.connection.execute(
            f"CREATE VIEW {_quote(folder.name)} AS SELECT {columns} FROM {_quote('empty_' + folder.name)}"
        ).fetchall()
        self.rows[folder.name] = 0
        self.valid[folder.name] = declared

    def _file_schemas(self, folder: schema.Folder, table: TableSnapshot) -> dict[str, pa.Schema]:
        """The Parquet schema of every readable data file (the others are reported)."""
        schemas: dict[str, pa.Schema] = {}
        unreadable: list[str] = []
        for path in table.files:
            try:
                schemas[path] = pq.read_schema(path)
            except (pa.ArrowException, OSError):
                unreadable.append(table.show(path))
        if unreadable:
            self.add(
                folder.name,
                None,
                "unreadable",
                len(unreadable),
                unreadable,
                f"{len(unreadable):,} file(s) are not readable Parquet",
            )
        return schemas

    def _column_fits(
        self,
        folder: schema.Folder,
        table: TableSnapshot,
        column: schema.Column,
        schemas: dict[str, pa.Schema],
    ) -> bool:
        """Whether every file holds ``column`` with an accepted type (else the files that do not are
        reported); a column some file stores in a wider accepted type is noted in ``widened``."""
        missing = [table.show(path) for path, found in schemas.items() if column.name not in found.names]
        wrong = [
            f"{table.show(path)}: {schema.describe_type(found.field(column.name).type)}"
            for path, found in schemas.items()
            if column.name in found.names and not self.lake.accepts(column, found.field(column.name).type)
        ]
        if missing:
            self.add(
                folder.name,
                column.name,
                "missing_column",
                len(missing),
                missing,
                f"column {column.name} is missing from {len(missing):,} file(s)",
            )
        if wrong:
            self.add(
                folder.name,
                column.name,
                "wrong_type",
                len(wrong),
                wrong,
                f"column {column.name} should be {schema.describe_type(column.type)} "
                f"in {len(wrong):,} file(s)",
            )
        if missing or wrong:
            return False
        if any(
            not schema.type_matches(column.type, found.field(column.name).type) for found in schemas.values()
        ):
            self.widened.add((folder.name, column.name))
        return True

    def declared(self, folder: schema.Folder, table: TableSnapshot) -> set[str]:
        """The contract columns the table's own schema (Iceberg, Delta) declares with a fitting type;
        every column for a folder, which has no schema but its files'."""
        if table.schema is None:
            return set(folder.column_names)
        good = set()
        for column in folder.columns:
            if column.name not in table.schema.names:
                self.add(
                    folder.name,
                    column.name,
                    "missing_column",
                    1,
                    ["table schema"],
                    f"column {column.name} is missing from the table schema",
                )
            elif not self.lake.accepts(column, table.schema.field(column.name).type):
                actual = schema.describe_type(table.schema.field(column.name).type)
                self.add(
                    folder.name,
                    column.name,
                    "wrong_type",
                    1,
                    [f"table schema: {actual}"],
                    f"column {column.name} should be {schema.describe_type(column.type)} in the table "
                    f"schema, not {actual}",
                )
            else:
                good.add(column.name)
        return good

    # --- values ------------------------------------------------------------------------------------

    def values(self, folder: schema.Folder) -> None:
        """Nulls in non-null columns and values outside the allowed set, in one pass over the folder."""
        valid = self.valid[folder.name]
        checks: list[tuple[str, ViolationKind, schema.Column]] = []
        for column in folder.columns:
            if column.name not in valid:
                continue
            name = _quote(column.name)
            if not column.nullable:
                checks.append((f"{name} IS NULL", "null_value", column))
            if (folder.name, column.name) in self.widened:
                low, high = INT16
                checks.append((f"{name} NOT BETWEEN {low} AND {high}", "invalid_value", column))
            allowed = self.allowed.get((folder.name, column.name), column.allowed)
            if allowed is not None:
                listed = ", ".join(_literal(value) for value in sorted(allowed)) or "NULL"
                checks.append((f"{name} NOT IN ({listed})", "invalid_value", column))
        if not checks:
            return
        table = _quote(folder.name)
        counts = ", ".join(f"count(*) FILTER (WHERE {condition})" for condition, _, _ in checks)
        row = self.connection.execute(f"SELECT {counts} FROM {table}").fetchone()
        assert row is not None
        key = next((k[0] for k in folder.keys if len(k) == 1 and k[0] in valid), None)
        for (condition, kind, column), count in zip(checks, row, strict=True):
            if not count:
                continue
            if kind == "null_value":
                if key is not None and key != column.name:
                    examples = [
                        f"{key}={value}"
                        for value in self.shown_values(
                            f"SELECT {_quote(key)} FROM {table} WHERE {condition} ORDER BY 1 LIMIT {EXAMPLES}"
                        )
                    ]
                else:
                    examples = []
                message = f"{column.name} is null in {count:,} row(s) but may not be"
            else:
                examples = self.shown_values(
                    f"SELECT DISTINCT {_quote(column.name)} FROM {table} WHERE {condition} "
                    f"ORDER BY 1 LIMIT {EXAMPLES}"
                )
                outside = "int16 range" if (folder.name, column.name) in self.widened else "allowed values"
                message = f"{column.name} is outside the {outside} in {count:,} row(s)"
            self.add(folder.name, column.name, kind, int(count), examples, message)

    def duplicates(self, folder: schema.Folder) -> None:
        """Key values (ids, handles, pairs) that appear more than once."""
        valid = self.valid[folder.name]
        table = _quote(folder.name)
        for key in folder.keys:
            if not set(key) <= valid:
                continue
            columns = ", ".join(_quote(name) for name in key)
            not_null = " AND ".join(f"{_quote(name)} IS NOT NULL" for name in key)
            grouped = (
                f"SELECT {columns}, count(*) AS n FROM {table} WHERE {not_null} GROUP BY ALL HAVING n > 1"
            )
            row = self.connection.execute(f"SELECT count(*), coalesce(sum(n), 0) FROM ({grouped})").fetchone()
            assert row is not None
            keys, surplus = int(row[0]), int(row[1]) - int(row[0])
            if not keys:
                continue
            rows = self.connection.execute(f"{grouped} ORDER BY {columns} LIMIT {EXAMPLES}").fetchall()
            examples = [", ".join(_show(value) for value in row[:-1]) for row in rows]
            if len(key) > 1:
                examples = [f"({example})" for example in examples]
            label = key[0] if len(key) == 1 else "(" + ", ".join(key) + ")"
            self.add(
                folder.name,
                ", ".join(key),
                "duplicate_key",
                keys,
                examples,
                f"{keys:,} {label} value(s) appear more than once ({surplus:,} surplus row(s))",
            )

    def references(self, folder: schema.Folder) -> None:
        """Values naming a row that does not exist in the referenced folder."""
        for reference in folder.references:
            target_valid = self.valid.get(reference.target)
            if reference.column not in self.valid[folder.name] or target_valid is None:
                continue
            if reference.target_column not in target_valid:
                continue
            column = _quote(reference.column)
            dangling = (
                f"FROM {_quote(folder.name)} AS r ANTI JOIN {_quote(reference.target)} AS t "
                f"ON r.{column} = t.{_quote(reference.target_column)} WHERE r.{column} IS NOT NULL"
            )
            count = int(self.scalar(f"SELECT count(*) {dangling}"))
            if not count:
                continue
            examples = self.shown_values(f"SELECT DISTINCT r.{column} {dangling} ORDER BY 1 LIMIT {EXAMPLES}")
            self.add(
                folder.name,
                reference.column,
                "dangling_reference",
                count,
                examples,
                f"{reference.column} names no {reference.target}.{reference.target_column} "
                f"in {count:,} row(s)",
            )


def check_lake(lake: Path | str | LakeSpec | Lake, *, settings: Collection[str] | None = None) -> LakeReport:
    """Check a lake against the data contract and report every violation.

    ``lake`` is a folder of Parquet folders, a ``LakeSpec`` (Iceberg or Delta tables at a snapshot) or
    an opened ``Lake``. ``settings`` replaces the setting keys accepted in ``consent_events.setting``
    (default: the shipped catalog). Raises ``NotFound`` when the folder, catalog or namespace does not
    exist, ``InvalidInput`` when a named snapshot does not."""
    opened = as_lake(lake)
    checker = _Checker(opened, schema.SETTING_KEYS if settings is None else settings)
    try:
        for folder in schema.FOLDERS:
            checker.load(folder)
        for folder in schema.FOLDERS:
            if folder.name not in checker.valid:
                continue
            try:
                checker.values(folder)
                checker.duplicates(folder)
                checker.references(folder)
            except duckdb.Error as error:
                checker.add(folder.name, None, "unreadable", 1, [], f"DuckDB cannot read the files: {error}")
    finally:
        checker.connection.close()
    order = {folder.name: number for number, folder in enumerate(schema.FOLDERS)}
    violations = sorted(checker.violations, key=lambda violation: order[violation.folder])
    return LakeReport(
        lake=opened.describe(),
        violations=tuple(violations),
        rows=dict(checker.rows),
        files=dict(checker.files),
    )
