"""Retention plans over a lake folder (the data contract), counted by DuckDB over the Parquet files."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consentry.consent.rules import DUCKDB
from consentry.errors import InvalidInput
from consentry.retention.plan import (
    EXAMPLES,
    Conditions,
    check_at,
    finish_outcomes,
    outcome_of,
)
from consentry.retention.rules import Rules
from consentry.retention.schemas import RetentionPlan, RuleOutcome

if TYPE_CHECKING:
    import duckdb

FOLDERS = ("accounts", "posts", "assistant_interactions", "follows", "blocks", "consent_events")
"""The lake folders a plan reads (the others hold nothing a rule removes)."""


def plan_lake(
    lake: Path, *, rules: Rules, at: datetime | None = None, held: Sequence[int] = ()
) -> RetentionPlan:
    """What the rules would remove from a lake folder (data contract), computed by DuckDB over the
    Parquet files (rows never become Python objects). ``held``: accounts under legal hold (from the
    database). Tables the contract has no folder for (likes, reposts, notifications, the access log,
    subject mappings) are not counted."""
    started = time.perf_counter()
    at = check_at(at, apply=False)
    if not lake.is_dir():
        raise InvalidInput(f"{lake} is not a folder", field="lake")
    c = Conditions(rules.cutoffs(at))
    import duckdb  # only plans over a lake need it

    connection = duckdb.connect(":memory:")
    try:
        present = _open(connection, lake, held=held, deactivated=c.cut.deactivated)
        outcomes = _outcomes(connection, present, c)
    finally:
        connection.close()
    return RetentionPlan(
        at=at,
        source="lake",
        lake=str(lake),
        rules=rules.describe(),
        holds=len(set(held)),
        outcomes=finish_outcomes(outcomes, rules),
        seconds=time.perf_counter() - started,
    )


def _ts(at: datetime) -> str:
    return DUCKDB.timestamp(at)


def _open(
    connection: duckdb.DuckDBPyConnection, lake: Path, *, held: Sequence[int], deactivated: datetime | None
) -> set[str]:
    """A view per lake folder, the ``held`` accounts and the deactivated accounts past their window
    (``d``, with whether each is held); returns the folders present."""
    from consentry.lake.source import parquet_files

    connection.execute("SET preserve_insertion_order = false")
    present: set[str] = set()
    for folder in FOLDERS:
        files = parquet_files(lake / folder)
        if files:
            listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
            connection.execute(
                f"CREATE VIEW {folder} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)"
            )
            present.add(folder)
    if "accounts" not in present:
        raise InvalidInput(f"{lake} has no accounts/ Parquet files; is it a lake?", field="lake")
    connection.execute("CREATE TEMP TABLE held (account_id BIGINT)")
    if held:
        connection.execute("INSERT INTO held SELECT unnest(?::BIGINT[])", [[int(i) for i in held]])
    past = (
        f"a.status = 'deactivated' AND a.status_changed_at < {_ts(deactivated)}"
        if deactivated is not None
        else "false"
    )
    connection.execute(
        "CREATE TEMP TABLE d AS SELECT account_id, account_id IN (SELECT account_id FROM held) AS held "
        f"FROM accounts a WHERE {past}"
    )
    return present


def _due(deleted: datetime | None, created: datetime | None) -> str:
    parts = []
    if deleted is not None:
        parts.append(f"(deleted_at IS NOT NULL AND deleted_at < {_ts(deleted)})")
    if created is not None:
        parts.append(f"created_at < {_ts(created)}")
    return "(" + " OR ".join(parts) + ")" if parts else "false"


def _records(
    connection: duckdb.DuckDBPyConnection,
    folder: str,
    id_column: str,
    author: str,
    deleted: datetime | None,
    created: datetime | None,
) -> dict[str, Any]:
    """Counts and examples of one folder's records: due by their own window (held or not), and of
    deactivated accounts (purged or held)."""
    row = connection.execute(
        f"""
        WITH r AS (
            SELECT {id_column} AS id, {_due(deleted, created)} AS due,
                   {author} IN (SELECT account_id FROM held) AS held,
                   {author} IN (SELECT account_id FROM d WHERE NOT held) AS purged_account,
                   {author} IN (SELECT account_id FROM d WHERE held) AS held_account
            FROM {folder}
        )
        SELECT count(*) FILTER (WHERE due AND NOT held),
               min(id, {EXAMPLES}) FILTER (WHERE due AND NOT held),
               count(*) FILTER (WHERE due AND held),
               count(*) FILTER (WHERE purged_account AND NOT due),
               min(id, {EXAMPLES}) FILTER (WHERE purged_account AND NOT due),
               count(*) FILTER (WHERE held_account)
        FROM r
        """
    ).fetchone()
    assert row is not None
    return {
        "removed": int(row[0]),
        "examples": [int(i) for i in row[1] or []],
        "held": int(row[2]),
        "account_removed": int(row[3]),
        "account_examples": [int(i) for i in row[4] or []],
        "account_held": int(row[5]),
    }


def _outcomes(connection: duckdb.DuckDBPyConnection, present: set[str], c: Conditions) -> list[RuleOutcome]:
    """Every rule's outcome over the opened lake, in rule order."""
    cut = c.cut
    posts = (
        _records(connection, "posts", "post_id", "author_id", cut.posts_deleted, cut.posts_created)
        if "posts" in present
        else {}
    )
    chats = (
        _records(
            connection,
            "assistant_interactions",
            "interaction_id",
            "account_id",
            cut.interactions_deleted,
            cut.interactions_created,
        )
        if "assistant_interactions" in present
        else {}
    )
    outcomes: list[RuleOutcome] = []
    for rule, found in (("posts", posts), ("assistant_interactions", chats)):
        outcome = outcome_of(rule, c)
        enabled = (
            cut.posts_deleted is not None or cut.posts_created is not None
            if rule == "posts"
            else cut.interactions_deleted is not None or cut.interactions_created is not None
        )
        if found and enabled:
            outcome.removed[rule] = found["removed"]
            outcome.examples[rule] = found["examples"]
            outcome.held[rule] = found["held"]
        if not found:
            outcome.note = f"the lake has no {rule}/ folder"
        outcomes.append(outcome)
    outcomes.append(_deactivated(connection, present, c, posts=posts, chats=chats))
    outcomes.append(
        outcome_of("access_log", c).model_copy(update={"note": "the access log is not in the lake"})
    )
    outcomes.append(
        outcome_of("subject_mappings", c).model_copy(
            update={"note": "subject mappings live in the database, not in the lake"}
        )
    )
    events = outcome_of("consent_events", c)
    if "consent_events" in present:
        value = connection.execute("SELECT count(*) FROM consent_events").fetchone()
        events.kept["consent_events"] = int(value[0]) if value else 0
    outcomes.append(events)
    return outcomes


def _deactivated(
    connection: duckdb.DuckDBPyConnection,
    present: set[str],
    c: Conditions,
    *,
    posts: dict[str, Any],
    chats: dict[str, Any],
) -> RuleOutcome:
    """The ``deactivated_accounts`` rule over the lake: the accounts, their records and relations."""
    outcome = outcome_of("deactivated_accounts", c)
    outcome.note = "likes, reposts, notifications and subject mappings are not in the lake"
    if c.cut.deactivated is None:
        return outcome
    counts = connection.execute(
        "SELECT count(*) FILTER (WHERE NOT held), count(*) FILTER (WHERE held), "
        f"min(account_id, {EXAMPLES}) FILTER (WHERE NOT held) FROM d"
    ).fetchone()
    assert counts is not None
    outcome.changed["accounts"] = int(counts[0])
    outcome.held["accounts"] = int(counts[1])
    outcome.examples["accounts"] = [int(i) for i in counts[2] or []]
    for name, found in (("posts", posts), ("assistant_interactions", chats)):
        if found:
            outcome.removed[name] = found["account_removed"]
            outcome.examples[name] = found["account_examples"]
            outcome.held[name] = found["account_held"]
    purged = "(SELECT account_id FROM d WHERE NOT held)"
    for folder, left, right in (
        ("follows", "follower_id", "followee_id"),
        ("blocks", "blocker_id", "blocked_id"),
    ):
        if folder in present:
            value = connection.execute(
                f"SELECT count(*) FROM {folder} WHERE {left} IN {purged} OR {right} IN {purged}"
            ).fetchone()
            outcome.removed[folder] = int(value[0]) if value else 0
    return outcome
