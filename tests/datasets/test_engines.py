"""DuckDB and Spark apply the same rule: same record ids, rows, exclusions and lineage on the same input.

Spark starts a JVM (slow), so this module builds with it once, on the generated lake, with retention
and personal-data scrubbing on so that every code path of the queries runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consentry.config import Settings
from consentry.consent.service import ConsentContext
from consentry.datasets import lineage
from consentry.datasets.eligibility import Retention
from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.migrate import upgrade
from tests.datasets.conftest import CATEGORIES, build, load, released

AS_OF = datetime(2026, 10, 1, tzinfo=UTC)
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")


@pytest.fixture(scope="module")
def loaded(
    tmp_path_factory: pytest.TempPathFactory, generated_lake: Path
) -> Iterator[tuple[Database, ConsentContext]]:
    folder = tmp_path_factory.mktemp("engines")
    url = f"sqlite:///{folder / 'consentry.db'}"
    database = Database(url)
    upgrade(database)
    ctx = ConsentContext.from_settings(Settings(home=folder / "home", database_url=url))
    load(database, ctx, generated_lake)
    yield database, ctx
    database.dispose()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


def test_duckdb_and_spark_release_the_same_records(
    loaded: tuple[Database, ConsentContext], generated_lake: Path, tmp_path: Path
) -> None:
    database, ctx = loaded
    outs = {}
    for engine in ("duckdb", "spark"):
        outs[engine] = tmp_path / engine
        build(
            database,
            ctx,
            generated_lake,
            outs[engine],
            recipient="partner",
            categories=CATEGORIES,
            as_of=AS_OF,
            engine=engine,
            retention=Retention({"posts": 700}),
            engine_options={"spark.sql.shuffle.partitions": "2"} if engine == "spark" else {},
        )
    manifests = {e: json.loads((outs[e] / "manifest.json").read_text()) for e in outs}
    assert manifests["duckdb"]["excluded"] == manifests["spark"]["excluded"]
    assert manifests["duckdb"]["rows"] == manifests["spark"]["rows"]
    assert manifests["duckdb"]["excluded"]["posts"]["outside_retention"] > 0
    for category in CATEGORIES:
        duck, spark = released(outs["duckdb"], category), released(outs["spark"], category)
        assert duck.num_rows > 0
        assert duck["id"].to_pylist() == spark["id"].to_pylist()
        assert duck.equals(spark)  # pseudonyms, links and scrubbed texts too
        assert set(lineage.read_bitmap(lineage.records_path(outs["spark"], category))) == set(
            duck["id"].to_pylist()
        )
    assert any("[email]" in text for text in released(outs["spark"], "posts")["text"].to_pylist())


def test_spark_refuses_options_that_are_not_spark_properties(
    loaded: tuple[Database, ConsentContext], generated_lake: Path, tmp_path: Path
) -> None:
    database, ctx = loaded
    with pytest.raises(InvalidInput, match="Spark properties"):
        build(database, ctx, generated_lake, tmp_path / "x", engine="spark", engine_options={"threads": "2"})
    with pytest.raises(InvalidInput, match="unknown DuckDB option"):
        build(database, ctx, generated_lake, tmp_path / "x", engine_options={"spark.master": "local"})
    assert not (tmp_path / "x").exists()
