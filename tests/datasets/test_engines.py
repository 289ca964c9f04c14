"""DuckDB and Spark apply the same rule: same record ids, rows, exclusions and lineage on the same input.

Spark starts a JVM (slow), so this module builds with it once, on the generated lake, with retention
and personal-data scrubbing on so that every code path of the queries runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.config import Settings
from consentry.consent.service import ConsentContext
from consentry.datasets import lineage
from consentry.datasets.eligibility import REASONS, SPECS, Retention, reason_name
from consentry.datasets.engines import CategoryJob
from consentry.datasets.engines.duckdb import cut_links, sorted_included, tally
from consentry.datasets.engines.spark import spark_master_options
from consentry.datasets.engines.sql import counts_query, cut_links_query, included_query
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


reason_rows = st.lists(
    st.tuples(
        st.integers(0, 50),  # record id (small ranges make ties of author and record likely)
        st.integers(0, 8),  # author id
        st.sampled_from([0, 0, 0, 1, 3, 5]),  # reason
        st.sampled_from([True, True, False, None]),  # in the window
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(rows=reason_rows, wide=st.sampled_from([0, 1 << 32, 1 << 31]))
def test_the_packed_sort_of_included_records_equals_the_sql_query(
    rows: list[tuple[int, int, int, bool | None]], wide: int
) -> None:
    reasons = pa.table(
        {
            "id": pa.array([r[0] + (wide if wide == 1 << 32 else 0) for r in rows], pa.int64()),
            "author_id": pa.array([r[1] + (wide if wide == 1 << 31 else 0) for r in rows], pa.int64()),
            "reason": pa.array([r[2] for r in rows], pa.int8()),
            "in_window": pa.array([r[3] for r in rows], pa.bool_()),
        }
    )
    connection = duckdb.connect()
    connection.register("reasons_posts", reasons)
    job = CategoryJob(spec=SPECS["posts"], files=(), out_dir=Path("unused"))
    expected = connection.execute(included_query(job)).fetchall()
    found = sorted_included(reasons)
    if wide and any(r[2] == 0 and r[3] for r in rows):  # ids too wide to pack: the caller asks DuckDB
        assert found is None
        return
    assert found is not None
    ids, authors = found
    assert list(zip(ids.tolist(), authors.tolist(), strict=True)) == expected


linked_records = st.lists(
    st.tuples(
        st.integers(0, 40),  # record id (distinct)
        st.sampled_from([0, 0, 0, 1, 3, 4, 5]),  # reason
        st.sampled_from([True, True, False, None]),  # in the window
        st.one_of(st.none(), st.integers(-2, 45)),  # reply_to: a record, a missing one, or none
        st.one_of(st.none(), st.integers(-2, 45)),  # quote_of
        st.booleans(),  # already held (with a prior release)
    ),
    max_size=50,
    unique_by=lambda row: row[0],
)


@settings(max_examples=200, deadline=None)
@given(rows=linked_records, incremental=st.booleans())
def test_counts_and_cut_links_in_numpy_equal_the_sql_queries(
    rows: list[tuple[int, int, bool | None, int | None, int | None, bool]], incremental: bool
) -> None:
    """The DuckDB engine counts reasons and finds the links to cut in NumPy; Spark runs the SQL."""
    reasons = pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.int64()),
            "author_id": pa.array([r[0] % 7 for r in rows], pa.int64()),
            "reason": pa.array([r[1] for r in rows], pa.int8()),
            "in_window": pa.array([r[2] for r in rows], pa.bool_()),
            "reply_to": pa.array([r[3] for r in rows], pa.int64()),
            "quote_of": pa.array([r[4] for r in rows], pa.int64()),
        }
    )
    prior = sorted(r[0] for r in rows if r[5]) if incremental else None
    job = CategoryJob(
        spec=SPECS["posts"],
        files=(),
        out_dir=Path("unused"),
        prior=None if prior is None else np.array(prior, dtype=np.int64),
    )
    connection = duckdb.connect()
    connection.register("reasons_posts", reasons)
    if prior is not None:
        connection.register("prior_posts", pa.table({"id": pa.array(prior, pa.int64())}))
    expected_excluded = dict.fromkeys(REASONS, 0)
    expected_held = 0
    for code, count, held in connection.execute(counts_query(job)).fetchall():
        if code:
            expected_excluded[reason_name(int(code))] += int(count)
        else:
            expected_held = int(held)
    assert tally(reasons, job.prior) == (expected_excluded, expected_held)
    query = cut_links_query(job)
    assert query is not None
    expected = sorted(connection.execute(query).fetchall())
    found = cut_links(reasons, job)
    assert found is not None
    assert (
        sorted(zip(*(found[c].to_pylist() for c in ("id", "cut_reply_to", "cut_quote_of")), strict=True))
        == expected
    )


@pytest.mark.parametrize(
    ("master", "key"),
    [
        ("local[2]", "spark.master"),
        ("local[*]", "spark.master"),
        ("spark://10.0.0.5:7077", "spark.master"),
        ("spark://a:7077,b:7077", "spark.master"),
        ("yarn", "spark.master"),
        ("k8s://https://kube:443", "spark.master"),
        ("sc://127.0.0.1:15002", "spark.remote"),
        ("sc://connect.internal/;token=abc", "spark.remote"),
    ],
)
def test_a_spark_master_becomes_the_engine_option_spark_reads(master: str, key: str) -> None:
    options = spark_master_options(master, engine="spark", options={"spark.executor.memory": "2g"})
    assert options == {"spark.executor.memory": "2g", key: master}
    assert spark_master_options(None, engine="duckdb", options={"threads": "2"}) == {"threads": "2"}


@pytest.mark.parametrize(
    ("master", "engine", "options"),
    [
        ("mesos://host:5050", "spark", {}),
        ("local[0]", "spark", {}),
        ("spark://host", "spark", {}),
        ("sc://host:1; rm -rf /", "spark", {}),
        ("local[2]", "duckdb", {}),
        ("local[2]", "spark", {"spark.master": "local[4]"}),
        ("sc://host:15002", "spark", {"spark.master": "local[4]"}),
    ],
)
def test_a_spark_master_spark_cannot_use_is_refused(
    master: str, engine: str, options: dict[str, str]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        spark_master_options(master, engine=engine, options=options)
    assert caught.value.field == "spark_master"
