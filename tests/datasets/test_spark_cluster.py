"""The Spark engine on a real cluster: a standalone master and two workers started from the installed
PySpark, and a Spark Connect server on that cluster. Each release is identical, record for record, to the
DuckDB engine's on the same input (the Connect build reads the lake as Delta tables).

These tests start JVMs, so they run apart (``make test-cluster``, marker ``cluster``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consentry.config import Settings
from consentry.consent.service import ConsentContext
from consentry.datasets.eligibility import Retention
from consentry.datasets.engines.spark_cluster import (
    ClusterError,
    SparkProcesses,
    start_connect_server,
    start_standalone,
)
from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.lake.source import LakeSpec, lake_spec
from consentry.migrate import upgrade
from tests.datasets.conftest import CATEGORIES, build, load, released
from tests.lake.tables import write_delta
from tests.services import spark_cluster_unavailable

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]
AS_OF = datetime(2026, 10, 1, tzinfo=UTC)
SMALL = {  # the machine is shared: small executors, few partitions
    "spark.executor.memory": "512m",
    "spark.driver.memory": "1g",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkProcesses]:
    try:
        started = start_standalone(work=tmp_path_factory.mktemp("spark"), workers=2, cores=1, memory="1g")
    except ClusterError as error:
        spark_cluster_unavailable(error)
    with started:
        yield started


@pytest.fixture(scope="module")
def ledger(
    tmp_path_factory: pytest.TempPathFactory, generated_lake: Path
) -> Iterator[tuple[Database, ConsentContext]]:
    folder = tmp_path_factory.mktemp("cluster-ledger")
    url = f"sqlite:///{folder / 'consentry.db'}"
    database = Database(url)
    upgrade(database)
    ctx = ConsentContext.from_settings(Settings(home=folder / "home", database_url=url))
    load(database, ctx, generated_lake)
    yield database, ctx
    database.dispose()


@pytest.fixture(scope="module")
def reference(
    ledger: tuple[Database, ConsentContext], generated_lake: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The DuckDB engine's release of the generated lake."""
    out = tmp_path_factory.mktemp("reference") / "duckdb"
    release(ledger, generated_lake, out, engine="duckdb")
    return out


def release(
    ledger: tuple[Database, ConsentContext], lake: Path | LakeSpec, out: Path, **options: Any
) -> dict[str, Any]:
    database, ctx = ledger
    build(
        database,
        ctx,
        lake,
        out,
        recipient="partner",
        categories=CATEGORIES,
        as_of=AS_OF,
        retention=Retention({"posts": 700}),
        **options,
    )
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return manifest


def same_as(reference: Path, out: Path) -> None:
    for category in CATEGORIES:
        expected, found = released(reference, category), released(out, category)
        assert expected.num_rows > 0
        assert expected.equals(found), category  # ids, pseudonyms, links and scrubbed texts


def test_a_standalone_cluster_builds_the_same_release_as_duckdb(
    cluster: SparkProcesses,
    ledger: tuple[Database, ConsentContext],
    generated_lake: Path,
    reference: Path,
    tmp_path: Path,
) -> None:
    from pyspark.sql import SparkSession

    out = tmp_path / "standalone"
    try:
        manifest = release(
            ledger, generated_lake, out, engine="spark", spark_master=cluster.url, engine_options=SMALL
        )
        # the work ran on the cluster: one application holding an executor on each worker
        status = cluster.status()
        [application] = status["activeapps"]
        assert application["name"] == "consentry-dataset-build"
        assert [worker["coresused"] for worker in status["workers"]] == [1, 1]
        session = SparkSession.getActiveSession()
        assert session is not None and session.sparkContext.master == cluster.url
    finally:
        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()  # frees the cluster's cores for the Connect server
    reference_manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["rows"] == reference_manifest["rows"]
    assert manifest["excluded"] == reference_manifest["excluded"]
    same_as(reference, out)


def test_spark_connect_builds_the_same_release_from_delta_tables(
    cluster: SparkProcesses,
    ledger: tuple[Database, ConsentContext],
    generated_lake: Path,
    reference: Path,
    tmp_path: Path,
) -> None:
    write_delta(generated_lake, tmp_path / "delta")
    try:
        server = start_connect_server(
            work=tmp_path / "connect",
            master=cluster.url,
            conf={"spark.executor.memory": "512m", "spark.cores.max": "2"},
        )
    except ClusterError as error:
        spark_cluster_unavailable(error)
    with server:
        options = {"spark.sql.shuffle.partitions": "4"}
        spec = lake_spec(format="delta", lake=tmp_path / "delta")
        manifest = release(
            ledger,
            spec,
            tmp_path / "connect-release",
            engine="spark",
            spark_master=server.url,
            engine_options=options,
        )
        assert [application["name"] for application in cluster.status()["activeapps"]] == [
            "consentry-connect-server"
        ]
        # properties of the server's own driver cannot be set through Connect: refused, nothing published
        with pytest.raises(InvalidInput, match=r"spark\.executor\.memory") as caught:
            release(
                ledger,
                spec,
                tmp_path / "refused",
                engine="spark",
                spark_master=server.url,
                engine_options={"spark.executor.memory": "8g"},
            )
        assert caught.value.field == "engine_options"
        assert not (tmp_path / "refused").exists()
    assert manifest["lake"]["format"] == "delta"
    same_as(reference, tmp_path / "connect-release")
