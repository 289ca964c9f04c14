"""Lake sources: Iceberg tables (pyiceberg, SQL catalog on SQLite and PostgreSQL) and Delta tables
(deltalake), written by those libraries from a generated lake, resolved at the snapshot named and
checked like folders; what cannot be read as plain data files is refused."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from consentry.errors import InvalidInput, NotFound
from consentry.lake import schema
from consentry.lake.check import LakeReport, check_lake
from consentry.lake.cli import app
from consentry.lake.generate import generate_lake
from consentry.lake.source import LakeSpec, lake_spec, open_lake
from tests.lake.tables import (
    NAMESPACE,
    TAG,
    add_deletion_vector,
    add_position_deletes,
    iceberg_catalog,
    overwrite_delta,
    overwrite_iceberg,
    read_folder,
    second_version,
    write_delta,
    write_iceberg,
)
from tests.services import POSTGRES_URL, missing_service


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pa.Table]:
    """A generated lake, a second version of it with more posts deleted, and that version's posts."""
    folder = tmp_path_factory.mktemp("sources")
    generate_lake(folder / "lake", accounts=400, posts=4000, seed=5)
    second, posts = second_version(folder / "lake", folder / "lake-2")
    return folder / "lake", second, posts


def deleted_posts(files: tuple[str, ...]) -> int:
    """Posts with a ``deleted_at`` in these data files (read by DuckDB, independently of the check)."""
    listed = ", ".join(f"'{f}'" for f in files)
    query = f"SELECT count(deleted_at) FROM read_parquet([{listed}])"
    [(count,)] = duckdb.connect().execute(query).fetchall()
    return int(count)


def kinds(report: LakeReport) -> list[tuple[str, str | None, str]]:
    return [(v.folder, v.column, v.kind) for v in report.violations]


# --- naming a lake ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"format": "orc", "lake": "x"}, "lake_format"),
        ({}, "lake"),
        ({"lake": "x", "snapshot": ["3"]}, "snapshot"),
        ({"lake": "x", "snapshot_at": datetime(2026, 1, 1, tzinfo=UTC)}, "snapshot_at"),
        ({"lake": "x", "namespace": "lake"}, "namespace"),
        ({"format": "delta", "lake": "x", "catalog": "sqlite:///c.db"}, "catalog"),
        ({"format": "iceberg", "catalog": "sqlite:///c.db"}, "namespace"),
        ({"format": "iceberg", "namespace": "lake"}, "catalog"),
        ({"format": "iceberg", "lake": "x", "catalog": "sqlite:///c.db", "namespace": "n"}, "lake"),
        ({"format": "delta", "lake": "x", "snapshot": ["v1"]}, "snapshot"),
        ({"format": "delta", "lake": "x", "snapshot": ["tweets=1"]}, "snapshot"),
        ({"format": "delta", "lake": "x", "snapshot": ["1", "2"]}, "snapshot"),
        ({"format": "delta", "lake": "x", "snapshot": ["posts=1 OR 1"]}, "snapshot"),
        (
            {
                "format": "delta",
                "lake": "x",
                "snapshot": ["1"],
                "snapshot_at": datetime(2026, 1, 1, tzinfo=UTC),
            },
            "snapshot_at",
        ),
        ({"format": "delta", "lake": "x", "snapshot_at": datetime(2026, 1, 1)}, "snapshot_at"),
    ],
)
def test_a_badly_named_lake_is_refused_naming_the_option(arguments: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        lake_spec(**arguments)
    assert caught.value.field == field


def test_a_spec_survives_the_round_trip_through_job_parameters() -> None:
    specs = [
        lake_spec(lake="/data/lake"),
        lake_spec(format="delta", lake="/data/delta", snapshot=["3", "posts=5"]),
        lake_spec(
            format="iceberg",
            catalog="postgresql+psycopg://u:secret@db/cat",
            catalog_name="prod",
            namespace="exports.lake",
            snapshot_at=datetime(2026, 11, 1, tzinfo=UTC),
        ),
    ]
    for spec in specs:
        assert LakeSpec.from_params(spec.to_params()) == spec
    assert specs[1].ref_for("posts") == "5" and specs[1].ref_for("accounts") == "3"
    assert "secret" not in specs[2].describe()


# --- Iceberg ----------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database for an Iceberg SQL catalog: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    name = f"consentry_iceberg_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as error:
        admin.dispose()
        missing_service("postgres", POSTGRES_URL, error)
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def iceberg(uri: str, **options: Any) -> LakeSpec:
    return lake_spec(format="iceberg", catalog=uri, namespace=NAMESPACE, **options)


def test_iceberg_tables_are_read_at_the_snapshot_named(
    lakes: tuple[Path, Path, pa.Table], catalog_uri: str, tmp_path: Path
) -> None:
    first, second, posts = lakes
    catalog = iceberg_catalog(catalog_uri, tmp_path / "warehouse")
    tagged = write_iceberg(first, catalog)
    between = datetime.now(UTC)
    time.sleep(0.01)
    current = overwrite_iceberg(catalog, "posts", posts)
    catalog.engine.dispose()
    expected = {1: deleted_posts(tuple(str(p) for p in (first / "posts").glob("*.parquet")))}
    expected[2] = deleted_posts(tuple(str(p) for p in (second / "posts").glob("*.parquet")))
    assert expected[2] > expected[1]

    for options, version, snapshot_id in [
        ({}, 2, current),
        ({"snapshot": [TAG]}, 1, tagged["posts"]),
        ({"snapshot": [f"posts={tagged['posts']}"]}, 1, tagged["posts"]),
        ({"snapshot_at": between}, 1, tagged["posts"]),
        ({"snapshot": [TAG, f"posts={current}"]}, 2, current),
    ]:
        lake = open_lake(iceberg(catalog_uri, **options))
        assert not lake.problems
        table = lake.table("posts")
        assert table.version["snapshot_id"] == snapshot_id
        assert deleted_posts(table.files) == expected[version], options
        report = check_lake(lake)
        assert report.ok, report.violations
        assert report.rows["posts"] == 4000
        provenance = lake.provenance()
        assert provenance["format"] == "iceberg" and provenance["namespace"] == NAMESPACE
        assert provenance["tables"]["accounts"]["snapshot_id"] == tagged["accounts"]
        assert provenance["tables"]["posts"]["snapshot_id"] == snapshot_id
    assert open_lake(iceberg(catalog_uri, snapshot=[TAG])).table("posts").version["ref"] == TAG
    # the same snapshots give the same fingerprint; another snapshot another one
    assert open_lake(iceberg(catalog_uri)).fingerprint == open_lake(iceberg(catalog_uri)).fingerprint
    assert (
        open_lake(iceberg(catalog_uri)).fingerprint
        != open_lake(iceberg(catalog_uri, snapshot=[TAG])).fingerprint
    )


def test_iceberg_schema_types_are_mapped_to_the_contract(
    lakes: tuple[Path, Path, pa.Table], tmp_path: Path
) -> None:
    first, _, _ = lakes
    uri = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = iceberg_catalog(uri, tmp_path / "warehouse")
    write_iceberg(first, catalog)
    # Iceberg has no int16: birth_year is an int, checked to fit; an int beyond int16 is reported
    accounts = read_folder(first, "accounts")
    birth = accounts["birth_year"].to_pylist()
    birth[0] = 40_000
    wide = accounts.set_column(
        accounts.schema.get_field_index("birth_year"), "birth_year", pa.array(birth, pa.int32())
    )
    overwrite_iceberg(catalog, "accounts", wide)
    # a naive timestamp (Iceberg "timestamp", not "timestamptz") breaks the contract
    blocks = read_folder(first, "blocks")
    naive = blocks.set_column(2, "created_at", blocks["created_at"].cast(pa.timestamp("us")))
    catalog.drop_table(f"{NAMESPACE}.blocks")
    catalog.create_table(f"{NAMESPACE}.blocks", schema=naive.schema).append(naive)
    catalog.engine.dispose()

    lake = open_lake(iceberg(uri))
    assert lake.table("accounts").schema is not None
    assert pa.types.is_int32(lake.table("accounts").schema.field("birth_year").type)
    assert lake.table("posts").schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    report = check_lake(lake)
    assert kinds(report) == [
        ("accounts", "birth_year", "invalid_value"),
        ("blocks", "created_at", "wrong_type"),
    ]
    assert "int16 range" in report.violations[0].message
    assert report.violations[0].examples == ("40000",)
    assert report.violations[1].examples == ("table schema: timestamp[us, no time zone]",)
    # the tagged snapshot of accounts is still right
    fixed = check_lake(iceberg(uri, snapshot=[f"accounts={TAG}"]))
    assert kinds(fixed) == [("blocks", "created_at", "wrong_type")]


def test_iceberg_delete_files_are_refused(lakes: tuple[Path, Path, pa.Table], tmp_path: Path) -> None:
    first, _, _ = lakes
    uri = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = iceberg_catalog(uri, tmp_path / "warehouse")
    write_iceberg(first, catalog)
    add_position_deletes(catalog, "posts", [0, 7])
    # pyiceberg itself applies the delete file: two rows fewer
    assert catalog.load_table(f"{NAMESPACE}.posts").scan().to_arrow().num_rows == 4000 - 2
    catalog.engine.dispose()

    report = check_lake(iceberg(uri))
    assert kinds(report) == [("posts", None, "unsupported_table")]
    assert "delete file" in report.violations[0].message
    with pytest.raises(InvalidInput, match="delete file"):
        open_lake(iceberg(uri)).table("posts")
    assert check_lake(iceberg(uri, snapshot=[TAG])).ok  # the snapshot before the deletes is fine


def test_a_missing_catalog_namespace_table_or_snapshot_is_named(
    lakes: tuple[Path, Path, pa.Table], tmp_path: Path
) -> None:
    first, _, _ = lakes
    nowhere = tmp_path / "none.db"
    with pytest.raises(NotFound) as caught:
        open_lake(iceberg(f"sqlite:///{nowhere}"))
    assert caught.value.field == "catalog" and not nowhere.exists()  # never created by reading
    empty = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{empty}").connect().close()
    with pytest.raises(NotFound) as caught:
        open_lake(iceberg(f"sqlite:///{empty}"))
    assert caught.value.field == "catalog"
    with pytest.raises(InvalidInput) as caught:
        open_lake(lake_spec(format="iceberg", catalog="mysql://db/cat", namespace="n"))
    assert caught.value.field == "catalog"

    uri = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = iceberg_catalog(uri, tmp_path / "warehouse")
    write_iceberg(first, catalog)
    catalog.drop_table(f"{NAMESPACE}.follows")
    catalog.engine.dispose()
    with pytest.raises(NotFound) as caught:
        open_lake(lake_spec(format="iceberg", catalog=uri, namespace="elsewhere"))
    assert caught.value.field == "namespace"
    assert kinds(check_lake(iceberg(uri))) == [("follows", None, "missing_table")]
    for snapshot in (["v9"], ["posts=12345"]):
        with pytest.raises(InvalidInput) as caught:
            open_lake(iceberg(uri, snapshot=snapshot))
        assert caught.value.field == "snapshot"
    with pytest.raises(InvalidInput) as caught:
        open_lake(iceberg(uri, snapshot_at=datetime(2001, 1, 1, tzinfo=UTC)))
    assert caught.value.field == "snapshot_at"


# --- Delta ------------------------------------------------------------------------------------------


def test_delta_tables_are_read_at_the_version_named(
    lakes: tuple[Path, Path, pa.Table], tmp_path: Path
) -> None:
    first, second, posts = lakes
    root = tmp_path / "delta"
    write_delta(first, root)
    between = datetime.now(UTC)
    time.sleep(0.01)
    assert overwrite_delta(root, "posts", posts) == 1
    expected = {
        0: deleted_posts(tuple(str(p) for p in (first / "posts").glob("*.parquet"))),
        1: deleted_posts(tuple(str(p) for p in (second / "posts").glob("*.parquet"))),
    }
    for options, version in [
        ({}, 1),
        ({"snapshot": ["0"]}, 0),
        ({"snapshot": ["posts=0"]}, 0),
        ({"snapshot_at": between}, 0),
        ({"snapshot_at": datetime.now(UTC)}, 1),
    ]:
        lake = open_lake(lake_spec(format="delta", lake=root, **options))
        assert lake.table("posts").version == {"version": version}
        assert deleted_posts(lake.table("posts").files) == expected[version], options
        assert check_lake(lake).ok
        assert lake.provenance()["tables"]["accounts"]["version"] == 0
    declared = open_lake(lake_spec(format="delta", lake=root)).table("accounts").schema
    assert declared is not None and declared.field("birth_year").type == pa.int16()
    assert declared.field("created_at").type == pa.timestamp("us", tz="UTC")
    with pytest.raises(InvalidInput) as caught:
        open_lake(lake_spec(format="delta", lake=root, snapshot=["posts=2"]))
    assert caught.value.field == "snapshot"
    with pytest.raises(InvalidInput) as caught:
        open_lake(lake_spec(format="delta", lake=root, snapshot_at=between - timedelta(days=1)))
    assert caught.value.field == "snapshot_at"


def test_delta_types_and_tables_are_checked(lakes: tuple[Path, Path, pa.Table], tmp_path: Path) -> None:
    from deltalake import write_deltalake

    first, _, _ = lakes
    root = tmp_path / "delta"
    write_delta(first, root)
    follows = read_folder(first, "follows")
    naive = follows.set_column(2, "created_at", follows["created_at"].cast(pa.timestamp("us")))
    write_deltalake(str(root / "follows"), naive, mode="overwrite", schema_mode="overwrite")
    (root / "blocks" / "_delta_log").rename(root / "blocks" / "log")
    report = check_lake(lake_spec(format="delta", lake=root))
    assert kinds(report) == [("blocks", None, "missing_table"), ("follows", "created_at", "wrong_type")]
    assert report.violations[1].examples == ("table schema: timestamp[us, no time zone]",)
    with pytest.raises(NotFound):
        open_lake(lake_spec(format="delta", lake=tmp_path / "nowhere"))


def test_delta_deletion_vectors_and_contract_partitions_are_refused(
    lakes: tuple[Path, Path, pa.Table], tmp_path: Path
) -> None:
    from deltalake import DeltaTable, write_deltalake

    first, _, _ = lakes
    root = tmp_path / "delta"
    write_delta(first, root, configuration={"delta.enableDeletionVectors": "true"})
    assert check_lake(lake_spec(format="delta", lake=root)).ok  # the feature alone is fine
    add_deletion_vector(root, "posts", [1, 2, 3])
    # deltalake itself reads the vector: three rows fewer
    assert pa.table(DeltaTable(str(root / "posts")).scan()).num_rows == 4000 - 3
    report = check_lake(lake_spec(format="delta", lake=root))
    assert kinds(report) == [("posts", None, "unsupported_table")]
    assert "deletion vectors" in report.violations[0].message
    assert check_lake(lake_spec(format="delta", lake=root, snapshot=["0"])).ok

    # a partition column outside the contract is fine; a contract column's values are not in the files
    for column, refused in (("media", True), ("year", False)):
        target = tmp_path / column
        write_delta(first, target)
        shutil.rmtree(target / "posts")
        data = read_folder(first, "posts")
        data = data.append_column("year", pc.strftime(data["created_at"], "%Y"))
        write_deltalake(str(target / "posts"), data, partition_by=[column])
        report = check_lake(lake_spec(format="delta", lake=target))
        if refused:
            assert kinds(report) == [("posts", None, "unsupported_table")]
            assert "partitioned by contract column(s) media" in report.violations[0].message
        else:
            assert report.ok, report.violations


# --- command line -----------------------------------------------------------------------------------


def test_lake_check_reads_iceberg_and_delta_from_the_command_line(
    lakes: tuple[Path, Path, pa.Table], tmp_path: Path
) -> None:
    first, _, posts = lakes
    uri = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = iceberg_catalog(uri, tmp_path / "warehouse")
    tagged = write_iceberg(first, catalog)
    catalog.engine.dispose()
    write_delta(first, tmp_path / "delta")
    overwrite_delta(tmp_path / "delta", "posts", posts)
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["check", "--lake-format", "iceberg", "--catalog", uri, "--namespace", NAMESPACE, "--snapshot", TAG],
    )
    assert result.exit_code == 0, result.output
    assert "satisfies the data contract" in result.output and str(tagged["posts"]) in result.output
    result = runner.invoke(
        app, ["check", "--lake-format", "delta", str(tmp_path / "delta"), "--snapshot", "posts=0"]
    )
    assert result.exit_code == 0, result.output
    assert "posts version 0" in result.output and "accounts version 0" in result.output
    result = runner.invoke(app, ["check", "--lake-format", "iceberg", "--catalog", uri])
    assert result.exit_code == 2 and "--namespace" in result.output
    result = runner.invoke(
        app, ["check", "--lake-format", "delta", str(tmp_path / "delta"), "--snapshot", "9"]
    )
    assert result.exit_code == 2 and "no version 9" in result.output


def test_empty_tables_pass_and_give_the_engines_an_empty_file(tmp_path: Path) -> None:
    from tests.datasets.scenario import write_scenario

    lake = write_scenario(tmp_path / "lake")  # blocks/ and follows/ hold one file with zero rows
    uri = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = iceberg_catalog(uri, tmp_path / "warehouse")
    write_iceberg(lake, catalog)
    catalog.drop_table(f"{NAMESPACE}.follows")
    catalog.create_table(f"{NAMESPACE}.follows", schema=schema.FOLLOWS.schema)  # created, never written
    catalog.engine.dispose()
    write_delta(lake, tmp_path / "delta")
    for spec in (iceberg(uri), lake_spec(format="delta", lake=tmp_path / "delta")):
        opened = open_lake(spec)
        assert opened.table("blocks").files == ()  # the libraries write no file for no rows
        report = check_lake(opened)
        assert report.ok, report.violations
        assert report.rows["blocks"] == 0 and report.rows["follows"] == 0
        [empty] = opened.data_files("blocks", scratch=tmp_path / spec.format)
        assert pq.read_table(empty).schema.equals(schema.BLOCKS.schema)
        assert pq.read_table(empty).num_rows == 0
        assert opened.data_files("posts", scratch=tmp_path) == opened.table("posts").files
