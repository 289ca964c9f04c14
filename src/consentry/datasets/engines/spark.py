"""The Spark engine: the same queries as DuckDB (``engines/sql.py``) run as Spark SQL through PySpark.

Where Spark runs is the master (``--spark-master`` / ``CONSENTRY_SPARK_MASTER``): local mode inside the
build process (``local[*]``, the default), a cluster the build process drives as the Spark driver
(``spark://host:7077`` standalone, ``yarn``, ``k8s://...``), or a Spark Connect server
(``sc://host:15002``), which is the driver itself and runs the same SQL on its side. Any Spark property
can be given as an engine option (``--engine-option spark.executor.memory=8g``); through Spark Connect
only runtime SQL properties can be set. ``docs/datasets.md`` explains clusters and object storage. The
author facts travel from the driver as one Arrow table and are broadcast. The session runs in UTC,
writes timestamps as Parquet ``TIMESTAMP_MICROS`` and zstd-compressed files.
"""

from __future__ import annotations

import contextlib
import re
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

APPLICATION: dict[str, str] = {
    "spark.master": "local[*]",
    "spark.app.name": "consentry-dataset-build",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "4g",
}
"""Properties of the Spark application (set when the driver starts; a Spark Connect server has its own)."""
SESSION: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.autoBroadcastJoinThreshold": str(64 * 1024 * 1024),
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
"""Runtime SQL properties of the build's session (also set on a Spark Connect session)."""
DEFAULTS: dict[str, str] = {**APPLICATION, **SESSION}
MASTER = re.compile(
    r"^(local(\[(\*|[1-9][0-9]*)(,[0-9]+)?\])?"
    r"|spark://[A-Za-z0-9.\-]+:[0-9]{1,5}(,[A-Za-z0-9.\-]+:[0-9]{1,5})*"
    r"|sc://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/(;[A-Za-z0-9_]+=[^;\s]*)*)?"
    r"|yarn|k8s://\S+)$"
)


def spark_master_options(
    master: str | None, *, engine: str, options: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The engine options with the Spark master merged in: a Spark Connect URL (``sc://``) as
    ``spark.remote``, any other master as ``spark.master``. ``InvalidInput`` (field ``spark_master``)
    for a master Spark does not know, for a master with another engine, or for one that contradicts a
    ``spark.master`` / ``spark.remote`` engine option."""
    merged = dict(options or {})
    if not master:
        return merged
    if engine != "spark":
        raise InvalidInput("a Spark master needs the Spark engine (--engine spark)", field="spark_master")
    if not MASTER.match(master):
        raise InvalidInput(
            f"{master!r} is not a Spark master: local[N], spark://host:port, sc://host:port (Spark "
            "Connect), yarn or k8s://...",
            field="spark_master",
        )
    for key in ("spark.master", "spark.remote"):
        if key in merged and merged[key] != master:
            raise InvalidInput(
                f"the Spark master {master!r} contradicts the engine option {key}={merged[key]}",
                field="spark_master",
            )
        merged.pop(key, None)
    merged["spark.remote" if master.startswith("sc://") else "spark.master"] = master
    return merged


@contextlib.contextmanager
def spark_errors(what: str) -> Iterator[None]:
    """Turn a failure inside Spark into a ``ConsentryError`` naming ``what`` was running."""
    try:
        yield
    except ConsentryError:
        raise
    except Exception as error:
        module = type(error).__module__ or ""
        if module.startswith(("pyspark", "py4j", "grpc")):
            raise ConsentryError(f"Spark failed while {what}: {_cause(error)}") from error
        raise


def _cause(error: Exception) -> str:
    """The most telling line of a Spark error (the Java exception, not the Py4J wrapper)."""
    lines = [line.strip(": \t") for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if "Exception:" in line or "Error:" in line]
    text = (telling or lines or [type(error).__name__])[0]
    return text if len(text) <= 400 else text[:400] + "..."


def spark_session(options: Mapping[str, str]) -> Any:
    """A Spark session with ``DEFAULTS`` overridden by ``options``: the process's own (its driver started
    again when the master differs from the running one's), or, with ``spark.remote``, a new session on
    that Spark Connect server (the caller stops it)."""
    from pyspark.sql import SparkSession

    if "spark.remote" in options:
        return _connect_session(options)
    wanted = {**DEFAULTS, **options}
    with spark_errors("starting"):
        from pyspark import SparkContext

        running = getattr(SparkContext, "_active_spark_context", None)
        if running is not None and running.master != wanted["spark.master"]:
            SparkSession.builder.getOrCreate().stop()  # one driver per process: the other master's goes
        builder = SparkSession.builder
        for key, value in wanted.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        for key, value in options.items():  # runtime properties also apply to a reused session
            with contextlib.suppress(Exception):
                session.conf.set(key, value)
    return session


def _connect_session(options: Mapping[str, str]) -> Any:
    """A new session on the Spark Connect server ``options["spark.remote"]``, with the build's SQL
    properties; properties a Connect client cannot set (the server's own) are refused."""
    from pyspark.sql import SparkSession

    url = options["spark.remote"]
    with spark_errors(f"connecting to Spark Connect at {url}"):
        session = SparkSession.builder.remote(url).create()
    try:
        with spark_errors(f"configuring the session at {url}"):
            for key, value in {**SESSION, **options}.items():
                if key == "spark.remote":
                    continue
                if key not in SESSION and not session.conf.isModifiable(key):
                    raise InvalidInput(
                        f"{key} cannot be set through Spark Connect; set it where the server starts",
                        field="engine_options",
                    )
                session.conf.set(key, value)
    except BaseException:
        with contextlib.suppress(Exception):
            session.stop()
        raise
    return session


class SparkEngine:
    """Runs a build on Apache Spark: local mode, a cluster, or a Spark Connect server."""

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
            if "spark.remote" in job.options:  # a Connect session of its own: its server state goes too
                with contextlib.suppress(Exception):
                    spark.stop()

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
            excluded, already_held = self._eligibility(spark, job, category, cached)

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
            included, removed_ids, removed_reasons = _lineage(spark, category)
        finally:
            _release_views(spark, name, cached)
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

    def _eligibility(
        self, spark: Any, job: EngineJob, category: CategoryJob, cached: list[Any]
    ) -> tuple[dict[str, int], int]:
        """Each record's reason (``reasons_<category>``), the links to cut, and the counts per reason
        and of records already held; the frames it persists are added to ``cached``."""
        name = category.spec.name
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
        return excluded, already_held


def _lineage(spark: Any, category: CategoryJob) -> tuple[pa.Table, np.ndarray, list[str]]:
    """The (id, author_id) pairs released, and the removals of an incremental release."""
    with spark_errors(f"collecting the lineage of {category.spec.name}"):
        included = spark.sql(included_query(category)).toArrow()
        removed_ids = np.zeros(0, dtype=np.int64)
        removed_reasons: list[str] = []
        if category.prior is not None:
            removals = spark.sql(removals_query(category)).toArrow()
            removed_ids = np.asarray(removals["id"].to_numpy(), dtype=np.int64)
            removed_reasons = [reason_name(int(code)) for code in removals["reason"].to_pylist()]
    return included, removed_ids, removed_reasons


def _release_views(spark: Any, name: str, cached: list[Any]) -> None:
    """Unpersist the frames of one category and drop its temporary views."""
    for frame in cached:
        with contextlib.suppress(Exception):
            frame.unpersist()
    for view in (f"lake_{name}", f"prior_{name}", f"records_{name}", f"reasons_{name}", f"cut_links_{name}"):
        with contextlib.suppress(Exception):
            spark.catalog.dropTempView(view)
