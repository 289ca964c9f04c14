"""The queries of a build, written once for both engines (they differ only in their ``Dialect``).

Table names the queries expect: ``lake_<category>`` (the lake folder), ``authors`` (author facts),
``prior_<category>`` (ids already held, incremental builds only), and the tables the engine
materialises from ``records_query`` (``records_<category>``), ``reasons_query``
(``reasons_<category>``) and ``cut_links_query`` (``cut_links_<category>``).
"""

from __future__ import annotations

from consentry.datasets.eligibility import (
    DUCKDB,
    Dialect,
    Window,
    combined_reason_sql,
    eligible_sql,
    record_code_sql,
    window_sql,
)
from consentry.datasets.engines import CategoryJob
from consentry.datasets.transforms import scrub_sql


def records_query(job: CategoryJob, window: Window, dialect: Dialect) -> str:
    """Every record created at or before ``as_of`` with what can be decided without consent: id,
    author, record code, whether it is in the window, and its links (materialised as
    ``records_<category>``)."""
    spec = job.spec
    code = record_code_sql(spec, record="r", as_of=window.as_of, cutoff=job.cutoff, dialect=dialect)
    links = "".join(f", r.{link}" for link in spec.links)
    return (
        f"SELECT r.{spec.id_column} AS id, r.{spec.author_column} AS author_id, {code} AS code, "
        f"{window_sql('r', window, dialect)} AS in_window{links} "
        f"FROM lake_{spec.name} r WHERE r.created_at <= {dialect.timestamp(window.as_of)}"
    )


def reasons_query(job: CategoryJob) -> str:
    """``records_<category>`` with each record's reason code (0 eligible), once the author facts are
    known (materialised as ``reasons_<category>``)."""
    spec = job.spec
    reason = combined_reason_sql(spec, facts="x", author="a")
    links = "".join(f", x.{link}" for link in spec.links)
    return (
        f"SELECT x.id, x.author_id, {reason} AS reason, x.in_window{links} "
        f"FROM records_{spec.name} x LEFT JOIN authors a ON x.author_id = a.account_id"
    )


def _new(job: CategoryJob, alias: str, column: str) -> tuple[str, str]:
    """A join and condition keeping only records the recipient does not hold yet."""
    if job.prior is None:
        return "", ""
    return f" LEFT JOIN prior_{job.spec.name} p ON {alias}.{column} = p.id", " AND p.id IS NULL"


def included_query(job: CategoryJob) -> str:
    """Ids and authors of the records the release delivers, by author (the order of the lineage index)."""
    join, condition = _new(job, "x", "id")
    return (
        f"SELECT x.id, x.author_id FROM reasons_{job.spec.name} x{join} "
        f"WHERE x.in_window AND x.reason = 0{condition} ORDER BY x.author_id, x.id"
    )


def counts_query(job: CategoryJob) -> str:
    """Records in the window per reason code, and how many of them the recipient already holds."""
    held = "count(p.id)" if job.prior is not None else "0"
    join = f" LEFT JOIN prior_{job.spec.name} p ON x.id = p.id" if job.prior is not None else ""
    return (
        f"SELECT x.reason, count(*) AS n, {held} AS held FROM reasons_{job.spec.name} x{join} "
        "WHERE x.in_window GROUP BY x.reason"
    )


def cut_links_query(job: CategoryJob) -> str | None:
    """Included records with at least one link to a record that is not eligible (or not in the lake):
    id and one ``cut_<link>`` flag per link. ``None`` when the category has no links."""
    spec, name = job.spec, job.spec.name
    if not spec.links:
        return None
    joins, flags, any_link = [], [], []
    for number, link in enumerate(spec.links):
        alias = f"l{number}"
        joins.append(f"LEFT JOIN reasons_{name} {alias} ON x.{link} = {alias}.id")
        flags.append(f"(x.{link} IS NOT NULL AND coalesce({alias}.reason, 3) <> 0) AS cut_{link}")
        any_link.append(f"x.{link} IS NOT NULL")
    join, condition = _new(job, "x", "id")
    inner = (
        f"SELECT x.id, {', '.join(flags)} FROM reasons_{name} x {' '.join(joins)}{join} "
        f"WHERE x.in_window AND x.reason = 0 AND ({' OR '.join(any_link)}){condition}"
    )
    return f"SELECT * FROM ({inner}) c WHERE {' OR '.join(f'c.cut_{link}' for link in spec.links)}"


def removals_query(job: CategoryJob) -> str:
    """Held ids that are no longer eligible, with their reason code (3, deleted, when gone from the
    lake)."""
    name = job.spec.name
    return (
        f"SELECT p.id, coalesce(x.reason, 3) AS reason FROM prior_{name} p "
        f"LEFT JOIN reasons_{name} x ON p.id = x.id WHERE x.id IS NULL OR x.reason <> 0"
    )


def release_query(job: CategoryJob, window: Window, dialect: Dialect, *, scrub_pii: bool) -> str:
    """The released rows, in the release schema: eligible, in the window, not yet held; pseudonymous
    authors; links to ineligible records set to null; texts scrubbed when asked."""
    spec, name = job.spec, job.spec.name
    eligible = eligible_sql(
        spec, record="r", author="a", as_of=window.as_of, cutoff=job.cutoff, dialect=dialect
    )
    engine = "duckdb" if dialect == DUCKDB else "spark"
    joins = [f"lake_{name} r JOIN authors a ON r.{spec.author_column} = a.account_id"]
    if spec.links:
        joins.append(f"LEFT JOIN cut_links_{name} c ON r.{spec.id_column} = c.id")
    columns = []
    for column, _type in spec.output:
        if column == "id":
            columns.append(f"r.{spec.id_column} AS id")
        elif column == "author":
            columns.append("a.pseudonym AS author")
        elif column in spec.texts:
            expression = scrub_sql(f"r.{column}", engine=engine) if scrub_pii else f"r.{column}"
            columns.append(f"{expression} AS {column}")
        elif column in spec.links:
            columns.append(f"CASE WHEN c.cut_{column} THEN NULL ELSE r.{column} END AS {column}")
        else:
            columns.append(f"r.{column}")
    join, condition = _new(job, "r", spec.id_column)
    return (
        f"SELECT {', '.join(columns)} FROM {' '.join(joins)}{join} "
        f"WHERE r.created_at <= {dialect.timestamp(window.as_of)} AND {eligible} "
        f"AND {window_sql('r', window, dialect)}{condition}"
    )
