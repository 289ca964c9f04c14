"""The generator writes a valid, deterministic lake of the documented shape, atomically."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from consentry.cli import app
from consentry.errors import Conflict, InvalidInput
from consentry.lake.check import check_lake
from consentry.lake.generate import (
    MAX_ACCOUNTS,
    MAX_POSTS,
    OTHER_COUNTRIES,
    REGULATED_COUNTRIES,
    SHAPE,
    GenerateStats,
    generate_lake,
)
from consentry.lake.schema import FOLDERS

ACCOUNTS, POSTS = 4000, 24000
START, END = "TIMESTAMPTZ '2019-01-01 00:00:00+00'", "TIMESTAMPTZ '2026-11-01 00:00:00+00'"
EEA_UK_CH = set(REGULATED_COUNTRIES)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> GenerateStats:
    return generate_lake(tmp_path_factory.mktemp("gen") / "lake", accounts=ACCOUNTS, posts=POSTS, seed=5)


@pytest.fixture(scope="module")
def db(generated: GenerateStats) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    for folder in FOLDERS:
        connection.execute(
            f"CREATE VIEW {folder.name} AS SELECT * FROM '{generated.path / folder.name}/*.parquet'"
        )
    return connection


def one(db: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = db.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_generated_lake_satisfies_the_contract(generated: GenerateStats) -> None:
    report = check_lake(generated.path)
    assert report.ok, report.violations
    assert generated.rows["accounts"] == ACCOUNTS
    assert generated.rows["posts"] == POSTS
    assert report.rows == generated.rows
    assert generated.files == sum(report.files.values())
    assert generated.bytes > 0


def test_same_seed_same_bytes_and_other_seed_other_data(tmp_path: Path) -> None:
    first = generate_lake(tmp_path / "a", accounts=500, posts=3000, seed=42)
    second = generate_lake(tmp_path / "b", accounts=500, posts=3000, seed=42)
    other = generate_lake(tmp_path / "c", accounts=500, posts=3000, seed=43)

    def contents(path: Path) -> dict[str, bytes]:
        return {str(file.relative_to(path)): file.read_bytes() for file in sorted(path.rglob("*.parquet"))}

    assert contents(first.path) == contents(second.path)
    assert first.rows == second.rows
    different = contents(other.path)
    assert different.keys() == contents(first.path).keys()
    for folder in ("accounts/part-00000.parquet", "posts/part-00000.parquet", "follows/part-00000.parquet"):
        assert different[folder] != contents(first.path)[folder]


def test_accounts_shape(db: duckdb.DuckDBPyConnection) -> None:
    countries = dict(db.execute("SELECT country, count(*) FROM accounts GROUP BY ALL").fetchall())
    assert set(countries) <= EEA_UK_CH | set(OTHER_COUNTRIES)
    regulated = sum(count for country, count in countries.items() if country in EEA_UK_CH) / ACCOUNTS
    assert regulated == pytest.approx(SHAPE.regulated_share, abs=0.03)
    assert {"DE", "FR", "GB", "CH", "US", "BR", "IN", "JP"} <= set(countries)

    assert one(db, "SELECT avg(protected::INT) FROM accounts") == pytest.approx(
        SHAPE.protected_share, abs=0.015
    )
    minors = one(db, "SELECT avg((2026 - birth_year <= 18)::INT) FROM accounts WHERE birth_year IS NOT NULL")
    assert 0.02 <= minors <= 0.06
    assert 0.003 <= one(db, "SELECT avg((birth_year IS NULL)::INT) FROM accounts") <= 0.02
    # nobody signed up younger than 13
    assert one(db, "SELECT count(*) FROM accounts WHERE year(created_at) - birth_year < 13") == 0
    inactive = one(db, "SELECT avg((status <> 'active')::INT) FROM accounts")
    assert 0.004 <= inactive <= 0.02
    assert one(db, "SELECT count(DISTINCT status) FROM accounts") == 3
    # status_changed_at is set exactly for inactive accounts, after creation
    assert (
        one(db, "SELECT count(*) FROM accounts WHERE (status <> 'active') <> (status_changed_at IS NOT NULL)")
        == 0
    )
    assert one(db, "SELECT count(*) FROM accounts WHERE status_changed_at <= created_at") == 0
    # ids follow sign-up order
    assert (
        one(
            db,
            """SELECT count(*) FROM (
                 SELECT created_at < lag(created_at) OVER (ORDER BY account_id) AS back FROM accounts
               ) WHERE back""",
        )
        == 0
    )


def test_regulated_countries_are_the_consent_core_groups() -> None:
    """The generator's EEA/UK/CH countries are those the shipped jurisdiction map defaults to deny."""
    groups = json.loads((resources.files("consentry.consent") / "jurisdictions.json").read_text())["groups"]
    deny_by_default = {country for group in ("EEA", "UK", "CH") for country in groups[group]}
    assert set(REGULATED_COUNTRIES) <= deny_by_default
    assert deny_by_default - set(REGULATED_COUNTRIES) <= {"GG", "JE", "IM"}  # Crown Dependencies: tiny
    assert not set(OTHER_COUNTRIES) & deny_by_default


def test_posting_is_heavy_tailed(db: duckdb.DuckDBPyConnection) -> None:
    top_decile = one(
        db,
        f"""SELECT sum(n) / {POSTS} FROM (
                SELECT coalesce(p.n, 0) AS n FROM accounts a
                LEFT JOIN (SELECT author_id, count(*) AS n FROM posts GROUP BY ALL) p
                  ON p.author_id = a.account_id
                ORDER BY n DESC LIMIT {ACCOUNTS // 10})""",
    )
    assert top_decile > 0.5
    never_posted = one(
        db, "SELECT count(*) FROM accounts WHERE account_id NOT IN (SELECT author_id FROM posts)"
    )
    assert never_posted / ACCOUNTS >= SHAPE.lurker_share * 0.8


def test_posts_shape(db: duckdb.DuckDBPyConnection) -> None:
    deleted = one(db, "SELECT avg((deleted_at IS NOT NULL)::INT) FROM posts")
    assert 0.02 <= deleted <= 0.06
    assert one(db, "SELECT avg((visibility = 'followers')::INT) FROM posts") == pytest.approx(0.06, abs=0.015)
    media = dict(
        db.execute("SELECT media, count(*) / sum(count(*)) OVER () FROM posts GROUP BY ALL").fetchall()
    )
    assert media["none"] > 0.6
    assert media["image"] == pytest.approx(SHAPE.image_share, abs=0.03)
    assert media["video"] == pytest.approx(SHAPE.video_share, abs=0.02)
    assert one(db, "SELECT avg((reply_to IS NOT NULL)::INT) FROM posts") == pytest.approx(0.25, abs=0.03)
    assert one(db, "SELECT avg((quote_of IS NOT NULL)::INT) FROM posts") == pytest.approx(0.04, abs=0.015)
    # every post of a deleted account is deleted, at the latest when the account was
    assert (
        one(
            db,
            """SELECT count(*) FROM posts p JOIN accounts a ON a.account_id = p.author_id
               WHERE a.status = 'deleted' AND (p.deleted_at IS NULL OR p.deleted_at > a.status_changed_at)""",
        )
        == 0
    )


def test_replies_and_quotes_point_at_earlier_existing_posts(db: duckdb.DuckDBPyConnection) -> None:
    for column in ("reply_to", "quote_of"):
        bad = one(
            db,
            f"""SELECT count(*) FROM posts c LEFT JOIN posts p ON p.post_id = c.{column}
                WHERE c.{column} IS NOT NULL AND (p.post_id IS NULL OR p.post_id >= c.post_id
                      OR p.created_at >= c.created_at OR p.deleted_at < c.created_at)""",
        )
        assert bad == 0, column
    # chains: some replies answer replies
    deep = one(
        db,
        "SELECT count(*) FROM posts c JOIN posts p ON p.post_id = c.reply_to WHERE p.reply_to IS NOT NULL",
    )
    assert deep > 0
    # a reply starts by naming the author it answers
    wrong_mention = one(
        db,
        """SELECT count(*) FROM posts c JOIN posts p ON p.post_id = c.reply_to
           JOIN accounts a ON a.account_id = p.author_id
           WHERE NOT starts_with(c.text, '@' || a.handle || ' ')""",
    )
    assert wrong_mention == 0


def test_timestamps_are_in_range_and_in_order(db: duckdb.DuckDBPyConnection) -> None:
    columns = {
        "accounts": ("created_at", "status_changed_at"),
        "posts": ("created_at", "deleted_at"),
        "assistant_interactions": ("created_at", "deleted_at"),
        "blocks": ("created_at",),
        "follows": ("created_at",),
        "consent_events": ("recorded_at",),
    }
    for folder, names in columns.items():
        for name in names:
            outside = one(db, f"SELECT count(*) FROM {folder} WHERE {name} < {START} OR {name} >= {END}")
            assert outside == 0, (folder, name)
    checks = {
        "posts after their author's sign-up, while active": """
            SELECT count(*) FROM posts p JOIN accounts a ON a.account_id = p.author_id
            WHERE p.created_at <= a.created_at OR p.created_at >= coalesce(a.status_changed_at, {end})""",
        "deleted after created": """
            SELECT count(*) FROM posts WHERE deleted_at <= created_at""",
        "chats after sign-up": """
            SELECT count(*) FROM assistant_interactions i JOIN accounts a USING (account_id)
            WHERE i.created_at <= a.created_at OR i.deleted_at <= i.created_at""",
        "consent events after sign-up, while active": """
            SELECT count(*) FROM consent_events e JOIN accounts a USING (account_id)
            WHERE e.recorded_at <= a.created_at OR e.recorded_at >= coalesce(a.status_changed_at, {end})""",
        "follows while both accounts exist": """
            SELECT count(*) FROM follows f JOIN accounts a ON a.account_id = f.follower_id
            JOIN accounts b ON b.account_id = f.followee_id
            WHERE f.created_at <= greatest(a.created_at, b.created_at)""",
    }
    for label, sql in checks.items():
        assert one(db, sql.format(end=END)) == 0, label


def test_texts_read_as_sentences_and_some_carry_personal_data(db: duckdb.DuckDBPyConnection) -> None:
    texts = [row[0] for row in db.execute("SELECT text FROM posts").fetchall()]
    assert all(len(text.split()) >= 2 and text[0] in "@ABCDEFGHIJKLMNOPQRSTUVWXYZ" for text in texts)
    assert all(text.isprintable() for text in texts)
    assert len(set(texts)) > 0.8 * len(texts)
    email = re.compile(r"\b[a-z]+[._]?[a-z]+\d*@[a-z]+(\.[a-z]+)+\b")
    phone = re.compile(r"(\+\d{1,2} [\d ()-]{6,}\d|\(\d{3}\) \d{3}-\d{4})")
    with_email = sum(bool(email.search(text)) for text in texts) / len(texts)
    with_phone = sum(bool(phone.search(text)) for text in texts) / len(texts)
    assert with_email == pytest.approx(SHAPE.email_share, abs=0.006)
    assert with_phone == pytest.approx(SHAPE.phone_share, abs=0.005)
    prompts = [row[0] for row in db.execute("SELECT prompt FROM assistant_interactions").fetchall()]
    assert any(email.search(prompt) for prompt in prompts)
    assert all(prompt.endswith((".", "?")) for prompt in prompts)


def test_assistant_chats_for_a_fifth_of_accounts(db: duckdb.DuckDBPyConnection) -> None:
    chatters = one(db, "SELECT count(DISTINCT account_id) FROM assistant_interactions")
    assert chatters / ACCOUNTS == pytest.approx(SHAPE.chatter_share, abs=0.01)
    assert one(db, "SELECT year(min(created_at)) FROM assistant_interactions") >= 2023
    assert 0.01 < one(db, "SELECT avg((deleted_at IS NOT NULL)::INT) FROM assistant_interactions") < 0.1


def test_follows_and_blocks(db: duckdb.DuckDBPyConnection) -> None:
    assert one(db, "SELECT count(*) FROM follows") > 2 * ACCOUNTS
    assert one(db, "SELECT count(*) FROM blocks") > 0.01 * ACCOUNTS
    assert one(db, "SELECT count(*) FROM follows WHERE follower_id = followee_id") == 0
    assert one(db, "SELECT count(*) FROM blocks WHERE blocker_id = blocked_id") == 0
    # nobody follows across a block, in either direction
    crossing = one(
        db,
        """SELECT count(*) FROM follows f JOIN blocks b
           ON (b.blocker_id = f.follower_id AND b.blocked_id = f.followee_id)
           OR (b.blocker_id = f.followee_id AND b.blocked_id = f.follower_id)""",
    )
    assert crossing == 0
    # relations of deleted accounts are gone
    gone = "(SELECT account_id FROM accounts WHERE status = 'deleted')"
    assert one(db, f"SELECT count(*) FROM follows WHERE follower_id IN {gone} OR followee_id IN {gone}") == 0
    assert one(db, f"SELECT count(*) FROM blocks WHERE blocker_id IN {gone} OR blocked_id IN {gone}") == 0
    # followers concentrate on a few accounts
    top = one(
        db,
        f"""SELECT sum(n) / (SELECT count(*) FROM follows) FROM (
              SELECT count(*) AS n FROM follows GROUP BY followee_id
              ORDER BY n DESC LIMIT {ACCOUNTS // 10})""",
    )
    assert top > 0.3


def test_consent_histories(db: duckdb.DuckDBPyConnection) -> None:
    regulated = ", ".join(f"'{country}'" for country in EEA_UK_CH)
    deny_rates = dict(
        db.execute(
            f"""SELECT country IN ({regulated}),
                       count(*) FILTER (WHERE value = 'deny') / count(DISTINCT a.account_id)
                FROM accounts a LEFT JOIN consent_events e USING (account_id) GROUP BY ALL"""
        ).fetchall()
    )
    assert deny_rates[True] > deny_rates[False]
    allows = dict(
        db.execute(
            f"""SELECT country IN ({regulated}),
                       count(*) FILTER (WHERE value = 'allow') / count(DISTINCT a.account_id)
                FROM accounts a LEFT JOIN consent_events e USING (account_id) GROUP BY ALL"""
        ).fetchall()
    )
    assert allows[True] > allows[False]  # where the default is deny, explicit allows matter
    assert one(db, "SELECT count(DISTINCT setting) FROM consent_events") == 4
    assert set(dict(db.execute("SELECT source, 1 FROM consent_events GROUP BY ALL").fetchall())) == {
        "web",
        "ios",
        "android",
        "api",
        "gpc",
        "admin",
    }
    togglers = one(
        db,
        "SELECT count(*) FROM (SELECT account_id, setting FROM consent_events"
        " GROUP BY ALL HAVING count(*) > 2)",
    )
    assert togglers > 0
    assert one(db, "SELECT year(min(recorded_at)) FROM consent_events") >= 2023


def test_gpc_events_follow_the_gpc_rule(db: duckdb.DuckDBPyConnection) -> None:
    """A GPC event is a deny of third_party_sharing recorded while the setting was effectively allow."""
    regulated = ", ".join(f"'{country}'" for country in EEA_UK_CH)
    rows = db.execute(
        f"""SELECT e.setting, e.value, year(e.recorded_at), a.birth_year,
                   lag(e.value) OVER (PARTITION BY e.account_id, e.setting ORDER BY e.recorded_at) AS before,
                   a.country IN ({regulated}) AS regulated
            FROM consent_events e JOIN accounts a USING (account_id)
            QUALIFY e.source = 'gpc'"""
    ).fetchall()
    assert rows
    for setting, value, year, birth_year, before, regulated_country in rows:
        assert (setting, value) == ("third_party_sharing", "deny")
        assert before == "allow" or (before is None and not regulated_country)
        assert birth_year is not None and year - birth_year > 18
    # once GPC has spoken, a later explicit choice stands: no second GPC event in a history
    repeated = one(
        db,
        """SELECT count(*) FROM (SELECT account_id FROM consent_events WHERE source = 'gpc'
           GROUP BY account_id, setting HAVING count(*) > 1)""",
    )
    assert repeated == 0
    toggled_after_gpc = one(
        db,
        """SELECT count(*) FROM consent_events e JOIN (
             SELECT account_id, min(recorded_at) AS at FROM consent_events WHERE source = 'gpc' GROUP BY ALL
           ) g USING (account_id)
           WHERE e.setting = 'third_party_sharing' AND e.recorded_at > g.at""",
    )
    assert toggled_after_gpc > 0  # histories do go on after a GPC event


def test_histories_alternate(db: duckdb.DuckDBPyConnection) -> None:
    repeats = one(
        db,
        """SELECT count(*) FROM (
             SELECT value = lag(value) OVER (PARTITION BY account_id, setting ORDER BY recorded_at) AS same
             FROM consent_events) WHERE same""",
    )
    assert repeats == 0


def test_stats_report_the_shape(generated: GenerateStats) -> None:
    assert generated.shape["regulated"] == pytest.approx(0.30, abs=0.03)
    assert generated.shape["top_decile_posts"] > 0.5
    assert generated.seconds > 0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    accounts=st.integers(min_value=10, max_value=400),
    posts=st.integers(min_value=0, max_value=3000),
    seed=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_any_small_lake_is_valid(
    tmp_path_factory: pytest.TempPathFactory, accounts: int, posts: int, seed: int
) -> None:
    stats = generate_lake(tmp_path_factory.mktemp("tiny") / "lake", accounts=accounts, posts=posts, seed=seed)
    report = check_lake(stats.path)
    assert report.ok, report.violations
    assert report.rows["posts"] == posts
    bad = (
        duckdb.connect()
        .execute(
            f"""SELECT count(*) FROM '{stats.path}/posts/*.parquet' c JOIN '{stats.path}/posts/*.parquet' p
            ON p.post_id = c.reply_to WHERE p.created_at >= c.created_at"""
        )
        .fetchone()
    )
    assert bad == (0,)


# --- atomic output and bad input --------------------------------------------------------------------


def test_nothing_is_left_behind_when_generation_fails(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []

    def fail_during_posts(folder: str, done: int, total: int) -> None:
        calls.append((folder, done, total))
        if folder == "posts" and done > 0:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        generate_lake(tmp_path / "lake", accounts=500, posts=2000, seed=1, progress=fail_during_posts)
    assert not (tmp_path / "lake").exists()
    assert list(tmp_path.iterdir()) == []
    assert ("accounts", 500, 500) in calls


def test_progress_reports_every_folder_to_completion(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    stats = generate_lake(
        tmp_path / "lake", accounts=300, posts=1000, progress=lambda *call: calls.append(call)
    )
    finals = {folder: (done, total) for folder, done, total in calls}
    assert list(finals) == [folder.name for folder in FOLDERS]
    assert all(done == total == stats.rows[folder] for folder, (done, total) in finals.items())


def test_existing_non_empty_folder_is_refused_and_untouched(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "keep.txt").write_text("mine")
    with pytest.raises(Conflict) as caught:
        generate_lake(tmp_path / "lake", accounts=100, posts=100)
    assert caught.value.field == "out"
    assert [p.name for p in (tmp_path / "lake").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]


def test_existing_empty_folder_and_missing_parents_are_fine(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert generate_lake(tmp_path / "empty", accounts=100, posts=100).rows["accounts"] == 100
    assert generate_lake(tmp_path / "a" / "b" / "lake", accounts=100, posts=0).rows["posts"] == 0


def test_a_file_in_the_way_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "lake").write_text("")
    with pytest.raises(InvalidInput) as caught:
        generate_lake(tmp_path / "lake", accounts=100, posts=100)
    assert caught.value.field == "out"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"accounts": 0, "posts": 10}, "accounts"),
        ({"accounts": -5, "posts": 10}, "accounts"),
        ({"accounts": 9, "posts": 10}, "accounts"),
        ({"accounts": MAX_ACCOUNTS + 1, "posts": 10}, "accounts"),
        ({"accounts": "100", "posts": 10}, "accounts"),
        ({"accounts": True, "posts": 10}, "accounts"),
        ({"accounts": 100, "posts": -1}, "posts"),
        ({"accounts": 100, "posts": MAX_POSTS + 1}, "posts"),
        ({"accounts": 100, "posts": 2.5}, "posts"),
        ({"accounts": 100, "posts": 10, "seed": -1}, "seed"),
        ({"accounts": 100, "posts": 10, "seed": 2**63}, "seed"),
    ],
)
def test_arguments_out_of_range_name_the_field(tmp_path: Path, arguments: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        generate_lake(tmp_path / "lake", **arguments)
    assert caught.value.field == field
    assert field in caught.value.detail
    assert list(tmp_path.iterdir()) == []


# --- CLI ----------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_generate_writes_a_lake_and_summarises(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["demo", "generate", str(tmp_path / "lake"), "--accounts", "300", "--posts", "2000", "--seed", "3"],
    )
    assert result.exit_code == 0, result.output
    assert "posts/" in result.output
    assert "2,000" in result.output
    assert check_lake(tmp_path / "lake").ok


def test_cli_generate_refuses_bad_arguments(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["demo", "generate", str(tmp_path / "lake"), "--accounts", "0", "--posts", "10"]
    )
    assert result.exit_code == 2
    assert "accounts must be between" in result.output
    assert not (tmp_path / "lake").exists()


def test_cli_generate_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("")
    result = runner.invoke(app, ["demo", "generate", str(tmp_path), "--accounts", "100", "--posts", "10"])
    assert result.exit_code == 2
    assert "not empty" in result.output
