"""The eligibility rule written independently of the code under test: one DuckDB query from DESIGN.md.

It recomputes effective consent from the lake's own ``consent_events/`` (the same events the ledger
imported), the shipped starting policy (allow everywhere except EEA, UK and CH) and the accounts, then
gives every record created at or before ``as_of`` its reason by precedence (``None``: eligible), and
the links a release must carry.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from consentry.consent.catalog import load_jurisdictions

OPT_IN_GROUPS = ("EEA", "UK", "CH")


def _ts(at: datetime) -> str:
    return f"TIMESTAMPTZ '{at.isoformat()}'"


def expected(
    lake: Path,
    *,
    category: str,
    settings: list[str],
    as_of: datetime,
    retention_days: int | None = None,
) -> tuple[dict[int, str | None], dict[int, tuple[int | None, int | None]]]:
    """Per record id: its exclusion reason (None: eligible); and per eligible post, its released
    (reply_to, quote_of)."""
    groups = load_jurisdictions().groups
    opt_in = sorted({c for g in OPT_IN_GROUPS for c in groups.get(g, ())})
    countries = ", ".join(f"'{c}'" for c in opt_in)
    t = _ts(as_of)
    default = f"CASE WHEN acc.country IN ({countries}) THEN 'deny' ELSE 'allow' END"
    allow = (
        " AND ".join(f"coalesce(l_{i}.value, {default}) = 'allow'" for i, _ in enumerate(settings)) or "FALSE"
    )
    latest = " ".join(
        f"LEFT JOIN (SELECT account_id, arg_max(value, recorded_at) AS value "
        f"FROM read_parquet('{lake}/consent_events/*.parquet') "
        f"WHERE setting = '{key}' AND recorded_at <= {t} GROUP BY account_id) l_{i} "
        f"ON l_{i}.account_id = acc.account_id"
        for i, key in enumerate(settings)
    )
    if category == "posts":
        source, rid, author = "posts", "post_id", "author_id"
        not_public = "r.visibility <> 'public' OR c.protected"
    else:  # private exchanges with the assistant have no audience
        source, rid, author, not_public = "assistant_interactions", "interaction_id", "account_id", "FALSE"
    retention = (
        f"WHEN r.created_at < {t} - INTERVAL {retention_days} DAY THEN 'outside_retention'"
        if retention_days is not None
        else ""
    )
    query = f"""
        WITH consent AS (
            SELECT acc.account_id,
                   acc.status <> 'active' AND (acc.status_changed_at IS NULL OR acc.status_changed_at <= {t})
                       AS inactive,
                   acc.birth_year IS NULL OR year({t}) - acc.birth_year <= 18 AS minor,
                   acc.protected,
                   {allow} AS allow
            FROM read_parquet('{lake}/accounts/*.parquet') acc {latest}
        ),
        decided AS (
            SELECT r.{rid} AS id,
                   CASE WHEN c.inactive THEN 'inactive_account'
                        WHEN c.minor THEN 'minor'
                        WHEN r.deleted_at IS NOT NULL AND r.deleted_at <= {t} THEN 'deleted'
                        WHEN {not_public} THEN 'not_public'
                        WHEN NOT c.allow THEN 'opted_out'
                        {retention}
                        ELSE NULL END AS reason
            FROM read_parquet('{lake}/{source}/*.parquet') r JOIN consent c ON c.account_id = r.{author}
            WHERE r.created_at <= {t}
        )
        SELECT id, reason FROM decided
    """
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'").fetchall()
    reasons = {int(i): r for i, r in connection.execute(query).fetchall()}
    links: dict[int, tuple[int | None, int | None]] = {}
    if category == "posts":
        rows = connection.execute(
            f"SELECT post_id, reply_to, quote_of FROM read_parquet('{lake}/posts/*.parquet')"
        ).fetchall()
        for post, reply, quote in rows:
            if post in reasons and reasons[post] is None:
                links[int(post)] = (
                    reply if reply is not None and reasons.get(reply, "x") is None else None,
                    quote if quote is not None and reasons.get(quote, "x") is None else None,
                )
    connection.close()
    return reasons, links
