"""The reference platform and the data contract: seed the database from a lake, export the database to one.

``FOLDER_TABLES`` is the one map between the contract's folders and columns (``consentry.lake.schema``)
and the platform's tables and columns; seeding and exporting both read it.

Seeding (``seed_from_lake``) checks the lake first (``consentry.lake.check``), then bulk-inserts every
folder and imports ``consent_events/`` into the ledger, all in one transaction: a failure writes nothing.
Ids are kept when the database is empty; otherwise they are shifted past the ids already present.

Exporting (``export_lake``) reads one consistent snapshot (``REPEATABLE READ`` on PostgreSQL), streams
each table in batches into Parquet with the contract's exact schema, writes into a hidden sibling folder
and renames it into place only when complete. Ledger events are exported for accounts that still have a
subject key (a deleted account's events are anonymous and stay in the ledger only); the ledger's
``(source, client)`` maps back to the contract's ``source``: the holder's own choices to their client,
GPC to ``gpc``, everything else (admin, import, system) to ``admin``.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from sqlalchemy import Select, Table, func, or_, select, text
from sqlalchemy.orm import Session

from consentry.consent import reader
from consentry.consent.importer import import_events
from consentry.consent.models import ConsentEvent, Subject
from consentry.consent.service import ConsentContext
from consentry.db import Base, Database
from consentry.errors import Conflict, InvalidInput
from consentry.lake import schema
from consentry.social.models import Account, AssistantInteraction, Block, Follow, Post

_BATCH = 50_000
AnySelect = Select[*tuple[Any, ...]]
_ROW_GROUP = 131_072


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


FOLDER_TABLES: dict[str, tuple[Table, dict[str, str]]] = {
    "accounts": (
        _table(Account),
        {
            "account_id": "id",
            "handle": "handle",
            "created_at": "created_at",
            "country": "country",
            "birth_year": "birth_year",
            "protected": "protected",
            "status": "status",
            "status_changed_at": "status_changed_at",
        },
    ),
    "posts": (
        _table(Post),
        {
            "post_id": "id",
            "author_id": "author_id",
            "created_at": "created_at",
            "text": "text",
            "visibility": "visibility",
            "reply_to": "reply_to",
            "quote_of": "quote_of",
            "media": "media",
            "deleted_at": "deleted_at",
        },
    ),
    "assistant_interactions": (
        _table(AssistantInteraction),
        {
            "interaction_id": "id",
            "account_id": "account_id",
            "created_at": "created_at",
            "prompt": "prompt",
            "response": "response",
            "deleted_at": "deleted_at",
        },
    ),
    "blocks": (
        _table(Block),
        {"blocker_id": "blocker_id", "blocked_id": "blocked_id", "created_at": "created_at"},
    ),
    "follows": (
        _table(Follow),
        {"follower_id": "follower_id", "followee_id": "followee_id", "created_at": "created_at"},
    ),
}
"""Contract folder -> (table, {contract column: table column}); ``consent_events`` goes through the ledger."""

# columns naming an account, a post or an interaction: shifted together when seeding a non-empty database
_ACCOUNT_REFS = {
    "accounts": ("account_id",),
    "posts": ("author_id",),
    "assistant_interactions": ("account_id",),
    "blocks": ("blocker_id", "blocked_id"),
    "follows": ("follower_id", "followee_id"),
}
_OWN_IDS = {"posts": ("post_id", "reply_to", "quote_of"), "assistant_interactions": ("interaction_id",)}
_SEQUENCED = ("accounts", "posts", "assistant_interactions")


# --- seeding ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedReport:
    """What ``seed_from_lake`` loaded: rows per folder, the id shifts applied, and the wall time."""

    rows: dict[str, int]
    account_offset: int
    post_offset: int
    interaction_offset: int
    seconds: float


def _read_folder(lake: Path, folder: schema.Folder) -> pa.Table:
    table = ds.dataset(lake / folder.name, format="parquet").to_table(columns=list(folder.column_names))
    return table.cast(folder.schema)


def _shift(table: pa.Table, columns: Sequence[str], offset: int) -> pa.Table:
    if not offset:
        return table
    for name in columns:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.add(table[name], pa.scalar(offset, pa.int64())))
    return table


def _max_id(session: Session, table: Table) -> int:
    return int(session.scalar(select(func.max(table.c.id))) or 0)


def insert_rows(session: Session, table: Table, rows: pa.Table, names: dict[str, str]) -> None:
    """Bulk-insert Arrow rows (contract column names) into ``table`` through the driver: ``COPY`` on
    PostgreSQL, ``executemany`` on SQLite. Timestamps go in as UTC text, as ``UTCDateTime`` stores them."""
    rows = rows.rename_columns([names[name] for name in rows.column_names])
    for index, field in enumerate(rows.schema):
        if pa.types.is_timestamp(field.type):
            as_text = pc.strftime(rows.column(index), format="%Y-%m-%d %H:%M:%S")
            rows = rows.set_column(index, field.name, as_text)
    columns = ", ".join(rows.column_names)
    dialect = reader.dialect_of(session)
    with reader.cursor(session) as cursor:
        if dialect == "sqlite":  # replies may name posts later in the file
            cursor.execute("PRAGMA defer_foreign_keys = ON")
        for batch in rows.to_batches(max_chunksize=_BATCH):
            if dialect == "postgresql":
                buffer = io.BytesIO()
                pa_csv.write_csv(batch, buffer, pa_csv.WriteOptions(include_header=False))
                with cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
                    copy.write(buffer.getvalue())
            else:
                marks = ", ".join("?" * batch.num_columns)
                values = zip(*(column.to_pylist() for column in batch.columns), strict=True)
                cursor.executemany(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", values)


def _check_lake(lake: Path) -> None:
    from consentry.lake.check import check_lake

    report = check_lake(lake)
    if not report.ok:
        first = report.violations[0]
        where = f"{first.folder}.{first.column}" if first.column else first.folder
        raise InvalidInput(
            f"{lake} breaks the data contract ({len(report.violations)} violation(s); first: {where}: "
            f"{first.message}); run 'consentry lake check {lake}'",
            field="lake",
        )


def _import_consent(session: Session, lake: Path, ctx: ConsentContext, account_offset: int) -> int:
    if not account_offset:
        return import_events(session, lake, ctx=ctx).events
    with tempfile.TemporaryDirectory(prefix="consentry-seed-") as scratch:
        shifted = Path(scratch)
        for folder, column in ((schema.ACCOUNTS, "account_id"), (schema.CONSENT_EVENTS, "account_id")):
            (shifted / folder.name).mkdir()
            table = _shift(_read_folder(lake, folder), (column,), account_offset)
            pq.write_table(table, shifted / folder.name / "part-00000.parquet")
        return import_events(session, shifted, ctx=ctx).events


def seed_from_lake(database: Database, lake: Path, *, ctx: ConsentContext | None = None) -> SeedReport:
    """Load a lake (accounts, posts, interactions, blocks, follows, consent events) into the database.

    All or nothing, in one transaction. The lake must pass ``consentry lake check``; its handles must be
    free. ``ctx`` (catalog, jurisdictions) defaults to the configured one.
    """
    started = time.perf_counter()
    lake = Path(lake)
    _check_lake(lake)
    if ctx is None:
        from consentry.config import get_settings

        ctx = ConsentContext.from_settings(get_settings())
    tables = {name: _read_folder(lake, schema.FOLDERS_BY_NAME[name]) for name in FOLDER_TABLES}
    rows: dict[str, int] = {}
    with database.write() as session:
        offsets = {name: _max_id(session, FOLDER_TABLES[name][0]) for name in _SEQUENCED}
        _check_handles(session, tables["accounts"]["handle"])
        for name, (table, names) in FOLDER_TABLES.items():
            data = _shift(tables[name], _ACCOUNT_REFS[name], offsets["accounts"])
            if name in _OWN_IDS:
                data = _shift(data, _OWN_IDS[name], offsets[name])
            if name == "posts":  # parents (smaller ids) first: replies and quotes reference them
                data = data.sort_by("post_id")
            if name == "follows":  # the lake holds current, approved follows
                data = data.append_column("pending", pa.repeat(pa.scalar(False), data.num_rows))
            insert_rows(session, table, data, {**names, "pending": "pending"})
            rows[name] = data.num_rows
        restart_sequences(session)
        rows["consent_events"] = _import_consent(session, lake, ctx, offsets["accounts"])
    return SeedReport(
        rows=rows,
        account_offset=offsets["accounts"],
        post_offset=offsets["posts"],
        interaction_offset=offsets["assistant_interactions"],
        seconds=time.perf_counter() - started,
    )


def _check_handles(session: Session, handles: pa.ChunkedArray) -> None:
    wanted = handles.to_pylist()
    taken: list[str] = []
    for start in range(0, len(wanted), 5_000):
        chunk = wanted[start : start + 5_000]
        taken += session.scalars(select(Account.handle).where(Account.handle.in_(chunk))).all()
    if taken:
        raise Conflict(
            f"{len(taken)} handle(s) of the lake are taken in the database (e.g. {', '.join(taken[:5])})",
            field="handle",
        )


def restart_sequences(session: Session, tables: Sequence[str] = _SEQUENCED) -> None:
    """On PostgreSQL, move the id sequences of ``tables`` past the ids inserted explicitly."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for name in tables:
        session.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                f"COALESCE((SELECT max(id) FROM {name}), 0) + 1, false)"
            )
        )


# --- exporting --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportReport:
    """What ``export_lake`` wrote: rows per folder, and the wall time."""

    path: Path
    rows: dict[str, int]
    seconds: float


_LAKE_CLIENTS = ("web", "ios", "android", "api")


def lake_source(source: str, client: str) -> str:
    """The contract's ``consent_events.source`` of a ledger event's ``(source, client)``."""
    if source == "user":
        return client if client in _LAKE_CLIENTS else "api"
    if source == "gpc":
        return "gpc"
    return "admin"


def _check_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise InvalidInput(f"{out} exists and is not a folder", field="out")
        if any(out.iterdir()):
            raise Conflict(f"{out} already exists and is not empty; choose a new folder", field="out")


def _countries(session: Session, default_country: str | None) -> str | None:
    """Check every account has a contract country; returns the upper-cased fill-in for those without."""
    if default_country is not None:
        default_country = default_country.upper()
        if default_country not in schema.COUNTRY_CODES:
            raise InvalidInput(
                f"{default_country!r} is not an ISO 3166-1 alpha-2 code", field="default_country"
            )
        return default_country
    unknown = or_(Account.country.is_(None), Account.country.not_in(sorted(schema.COUNTRY_CODES)))
    count = int(session.scalar(select(func.count()).select_from(Account).where(unknown)) or 0)
    if count:
        examples = session.scalars(select(Account.id).where(unknown).order_by(Account.id).limit(5)).all()
        raise Conflict(
            f"{count} account(s) have no ISO 3166-1 country, which the data contract requires "
            f"(e.g. {', '.join(map(str, examples))}); pass a default country for them",
            field="country",
        )
    return None


def _batches(session: Session, query: AnySelect) -> Iterator[Sequence[Any]]:
    result = session.execute(query.execution_options(yield_per=_BATCH))
    yield from result.partitions()


def _write_folder(directory: Path, folder: schema.Folder, batches: Iterator[Sequence[Sequence[Any]]]) -> int:
    """Write rows (tuples in contract column order) as one Parquet file; returns the row count."""
    directory.mkdir()
    count = 0
    with pq.ParquetWriter(directory / "part-00000.parquet", folder.schema, compression="zstd") as writer:
        for rows in batches:
            columns = list(zip(*rows, strict=True)) if rows else [()] * len(folder.columns)
            arrays = [
                pa.array(list(values), type=c.type) for values, c in zip(columns, folder.columns, strict=True)
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=folder.schema), row_group_size=_ROW_GROUP)
            count += len(rows)
        if not count:
            writer.write_table(folder.schema.empty_table())
    return count


def _folder_query(name: str, fill_country: str | None) -> AnySelect:
    table, names = FOLDER_TABLES[name]
    columns: list[Any] = [table.c[names[column]] for column in schema.FOLDERS_BY_NAME[name].column_names]
    if name == "accounts" and fill_country is not None:
        columns[3] = func.coalesce(table.c.country, fill_country)
    query = select(*columns)
    if name == "follows":
        query = query.where(table.c.pending.is_(False))
    return query.order_by(*table.primary_key.columns)


def _consent_batches(session: Session) -> Iterator[list[tuple[Any, ...]]]:
    query = (
        select(
            Subject.account_id,
            ConsentEvent.setting,
            ConsentEvent.value,
            ConsentEvent.source,
            ConsentEvent.client,
            ConsentEvent.recorded_at,
        )
        .join(Subject, Subject.subject_key == ConsentEvent.subject_key)
        .order_by(ConsentEvent.seq)
    )
    for rows in _batches(session, query):
        yield [(a, s, v, lake_source(src, c), at) for a, s, v, src, c, at in rows]


def export_lake(database: Database, out: Path, *, default_country: str | None = None) -> ExportReport:
    """Write the platform's data to ``out`` in the data contract; nothing appears there unless complete.

    Accounts without an ISO 3166-1 country (the contract requires one) make the export fail unless
    ``default_country`` is given for them.
    """
    started = time.perf_counter()
    out = Path(out)
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    rows: dict[str, int] = {}
    try:
        with database.read() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            fill = _countries(session, default_country)
            for folder in schema.FOLDERS:
                if folder.name == "consent_events":
                    batches: Iterator[Sequence[Any]] = _consent_batches(session)
                else:
                    batches = _batches(session, _folder_query(folder.name, fill))
                rows[folder.name] = _write_folder(staging / folder.name, folder, batches)
        try:
            os.replace(staging, out)
        except OSError as error:
            raise Conflict(f"could not move the export into {out}: {error}", field="out") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportReport(path=out, rows=rows, seconds=time.perf_counter() - started)
