"""The Spark engine: the same queries as DuckDB (``engines/sql.py``) run as Spark SQL through PySpark.

By default Spark runs in local mode (``local[*]``) inside the build process. Any Spark property can be
given as an engine option (``--engine-option spark.master=spark://host:7077``,
``--engine-option spark.executor.memory=8g``); ``docs/datasets.md`` explains pointing it at a cluster
and at object storage. The author facts travel from the driver as one Arrow table and are broadcast.
The session runs in UTC, writes timestamps as Parquet ``TIMESTAMP_MICROS`` and zstd-compressed files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from consentry.datasets.eligibility import REASONS, SPARK, reason_name
from consentry.datasets.engines import CategoryJob, CategoryOutcome, EngineJob
from consentry.datasets.engines.sql import (
    counts_query,
    cut_links_query,
    included_query,
    reasons_query,
    records_query,
    release_query,
    removals_query,
)
from consentry.errors import ConsentryError, InvalidInput

DEFAULTS: dict[str, str] = {
    "spark.master": "local[*]",
    "spark.app.name": "consentry-dataset-build",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.autoBroadcastJoinThreshold": str(64 * 1024 * 1024),
    "spark.driver.memory": "4g",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


@contextlib.contextmanager
def spark_errors(what: str) -> Iterator[None]:
    """Turn a failure inside Spark into a ``ConsentryError`` naming ``what`` was running."""
    try:
        yield
    except ConsentryError:
        raise
    except Exception as error:
        module = type(error).__module__ or ""
        if module.startswith(("pyspark", "py4j")):
            raise ConsentryError(f"Spark failed while {what}: {_cause(error)}") from error
        raise


def _cause(error: Exception) -> str:
    """The most telling line of a Spark error (the Java exception, not the Py4J wrapper)."""
    lines = [line.strip(": \t") for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if "Exception:" in line or "Error:" in line]
    text = (telling or lines or [type(error).__name__])[0]
    return text if len(text) <= 400 else text[:400] + "..."


def spark_session(options: Mapping[str, str]) -> Any:
    """The process's Spark session, created with ``DEFAULTS`` overridden by ``options``."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in {**DEFAULTS, **options}.items():
        builder = builder.config(key, value)
    with spark_errors("starting"):
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        for key, value in options.items():  # runtime properties also apply to a reused session
            with contextlib.suppress(Exception):
                session.conf.set(key, value)
    return session


class SparkEngine:
    """Runs a build on Apache Spark (local mode unless told otherwise)."""

    name = "spark"
    _authors_loaded = False

    def run(self, job: EngineJob, *, step: Callable[[str], None]) -> dict[str, CategoryOutcome]:
        """Build every category of ``job``."""
        unknown = sorted(key for key in job.options if not key.startswith("spark."))
        if unknown:
            raise InvalidInput(
                f"Spark options are Spark properties (spark.*); not {', '.join(unknown)}",
                field="engine_options",
            )
        spark = spark_session(job.options)
        self._authors_loaded = False
        try:
            return {c.spec.name: self._category(spark, job, c, step) for c in job.categories}
        finally:
            with contextlib.suppress(Exception):
                spark.catalog.dropTempView("authors")

    def _category(
        self, spark: Any, job: EngineJob, category: CategoryJob, step: Callable[[str], None]
    ) -> CategoryOutcome:
        name = category.spec.name
        with spark_errors(f"reading the lake's {name}/"):
            spark.read.parquet(*category.files).createOrReplaceTempView(f"lake_{name}")
            if category.prior is not None:
                prior = pa.table({"id": pa.array(category.prior, pa.int64())})
                spark.createDataFrame(prior).createOrReplaceTempView(f"prior_{name}")

        step(f"{name}: records")
        cached: list[Any] = []
        try:
            with spark_errors(f"reading the records of {name}"):
                records = spark.sql(records_query(category, job.window, SPARK)).persist()
                cached.append(records)
                records.createOrReplaceTempView(f"records_{name}")
                records.count()  # materialise while the author facts are computed

            step(f"{name}: eligibility")
            if not self._authors_loaded:
                with spark_errors("loading the author facts"):
                    spark.createDataFrame(job.authors.named()).createOrReplaceTempView("authors")
                self._authors_loaded = True
            with spark_errors(f"deciding eligibility of {name}"):
                reasons = spark.sql(reasons_query(category)).persist()
                cached.append(reasons)
                reasons.createOrReplaceTempView(f"reasons_{name}")
                excluded = dict.fromkeys(REASONS, 0)
                already_held = 0
                for row in spark.sql(counts_query(category)).collect():
                    if row["reason"]:
                        excluded[reason_name(int(row["reason"]))] += int(row["n"])
                    else:
                        already_held = int(row["held"])
                cut = cut_links_query(category)
                if cut is not None:
                    links = spark.sql(cut).persist()
                    cached.append(links)
                    links.createOrReplaceTempView(f"cut_links_{name}")

            step(f"{name}: write")
            parts = job.work_dir / f"parts-{name}"
            with spark_errors(f"writing {name}"):
                (
                    spark.sql(release_query(category, job.window, SPARK, scrub_pii=job.scrub_pii))
                    .write.option("compression", "zstd")
                    .option("parquet.block.size", str(min(job.shard_bytes, 64 * 1024 * 1024)))
                    .option("maxRecordsPerFile", str(max(job.row_group_rows * 8, 1)))
                    .parquet(str(parts))
                )
            shards = sorted(parts.glob("part-*.parquet"))

            step(f"{name}: lineage")
            with spark_errors(f"collecting the lineage of {name}"):
                included = spark.sql(included_query(category)).toArrow()
                removed_ids = np.zeros(0, dtype=np.int64)
                removed_reasons: list[str] = []
                if category.prior is not None:
                    removals = spark.sql(removals_query(category)).toArrow()
                    removed_ids = np.asarray(removals["id"].to_numpy(), dtype=np.int64)
                    removed_reasons = [reason_name(int(code)) for code in removals["reason"].to_pylist()]
        finally:
            for frame in cached:
                with contextlib.suppress(Exception):
                    frame.unpersist()
            for view in (
                f"lake_{name}",
                f"prior_{name}",
                f"records_{name}",
                f"reasons_{name}",
                f"cut_links_{name}",
            ):
                with contextlib.suppress(Exception):
                    spark.catalog.dropTempView(view)
        return CategoryOutcome(
            shards=shards,
            rows=included.num_rows,
            excluded=excluded,
            already_held=already_held,
            record_ids=np.asarray(included["id"].to_numpy(), dtype=np.int64),
            author_ids=np.asarray(included["author_id"].to_numpy(), dtype=np.int64),
            removed_ids=removed_ids,
            removed_reasons=removed_reasons,
        )
