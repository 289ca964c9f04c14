"""Building releases end to end on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from consentry.consent import ledger
from consentry.consent.service import ConsentContext
from consentry.datasets import lineage, service, writer
from consentry.datasets.eligibility import REASONS, Retention
from consentry.datasets.models import Release
from consentry.db import Database, utcnow
from consentry.errors import Conflict, ConsentryError, InvalidInput, NotFound
from consentry.transparency import service as tlog
from consentry.transparency.cite import LocalLog
from tests.datasets.conftest import CATEGORIES, build, load, released, staging_folders
from tests.datasets.reference import expected
from tests.datasets.scenario import (
    AS_OF,
    EXPECTED_CHATS,
    EXPECTED_LINKS,
    EXPECTED_POSTS,
    THIRD_PARTY_POSTS,
)


def by_id(table: pa.Table, column: str) -> dict[int, object]:
    return dict(zip(table["id"].to_pylist(), table[column].to_pylist(), strict=True))


def links_of(table: pa.Table) -> dict[int, tuple[object, object]]:
    replies, quotes = by_id(table, "reply_to"), by_id(table, "quote_of")
    return {i: (replies[i], quotes[i]) for i in replies}


def reasons_of(manifest: dict[str, object], category: str) -> dict[str, int]:
    excluded = manifest["excluded"]
    assert isinstance(excluded, dict)
    counts: dict[str, int] = excluded[category]
    return counts


def counts(expectation: dict[int, str | None]) -> dict[str, int]:
    return {reason: sum(1 for r in expectation.values() if r == reason) for reason in REASONS}


def test_every_exclusion_reason_against_hand_expectations_and_an_independent_query(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    out = tmp_path / "release"
    release = build(scenario, ctx, scenario_lake, out, categories=CATEGORIES)
    posts, chats = released(out, "posts"), released(out, "assistant_interactions")
    manifest = json.loads((out / "manifest.json").read_text())

    for category, table, mine, setting in (
        ("posts", posts, EXPECTED_POSTS, "assistant_training_posts"),
        ("assistant_interactions", chats, EXPECTED_CHATS, "assistant_training_interactions"),
    ):
        reference, _ = expected(scenario_lake, category=category, settings=[setting], as_of=AS_OF)
        assert reference == mine  # the hand-written scenario and the independent query agree
        ids = set(table["id"].to_pylist())
        assert ids == {i for i, reason in mine.items() if reason is None}
        assert not ids & {i for i, reason in mine.items() if reason is not None}
        assert reasons_of(manifest, category) == counts(mine)
        assert manifest["rows"][category] == len(ids)
    assert 105 not in EXPECTED_POSTS and 105 not in set(posts["id"].to_pylist())  # written after as_of
    links = links_of(posts)
    assert {i: links[i] for i in EXPECTED_LINKS} == EXPECTED_LINKS
    assert release.rows == len(posts) + len(chats)
    assert release.excluded == sum(1 for r in [*EXPECTED_POSTS.values(), *EXPECTED_CHATS.values()] if r)
    assert "alice.smith42@example.com" in str(
        by_id(posts, "text")[101]
    )  # first party: texts kept as written by default
    assert not staging_folders(tmp_path)


def test_a_generated_lake_matches_the_independent_query(
    database: Database, ctx: ConsentContext, generated_lake: Path, tmp_path: Path
) -> None:
    load(database, ctx, generated_lake)
    as_of = datetime(2026, 10, 1, tzinfo=UTC)
    out = tmp_path / "release"
    build(database, ctx, generated_lake, out, recipient="partner", categories=CATEGORIES, as_of=as_of)
    manifest = json.loads((out / "manifest.json").read_text())
    for category in CATEGORIES:
        reference, links = expected(
            generated_lake, category=category, settings=["third_party_sharing"], as_of=as_of
        )
        table = released(out, category)
        assert set(table["id"].to_pylist()) == {i for i, r in reference.items() if r is None}
        assert reasons_of(manifest, category) == counts(reference)
        assert all(reasons_of(manifest, category)[r] for r in REASONS[:5] if category == "posts")
        if category == "posts":
            assert links_of(table) == links


def test_third_party_consent_and_pii_scrubbing(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    out = tmp_path / "partner"
    build(scenario, ctx, scenario_lake, out, recipient="partner", categories=CATEGORIES)
    posts = released(out, "posts")
    assert set(posts["id"].to_pylist()) == {i for i, r in THIRD_PARTY_POSTS.items() if r is None}
    texts = dict(zip(posts["id"].to_pylist(), posts["text"].to_pylist(), strict=True))
    assert texts[101] == "hello world, mail me at [email]"
    assert texts[106] == "an old post, call [phone]"
    assert texts[801] == "EEA explicit allow, phone [phone]"
    prompts = released(out, "assistant_interactions")["prompt"].to_pylist()
    assert prompts and all(p.endswith("reach me on [email]") for p in prompts)
    assert json.loads((out / "manifest.json").read_text())["transforms"]["pii_scrubbing"] is True

    raw = tmp_path / "partner-raw"
    build(scenario, ctx, scenario_lake, raw, recipient="partner", scrub_pii=False)
    assert "alice.smith42@example.com" in str(by_id(released(raw, "posts"), "text")[101])


def test_pseudonyms_are_stable_per_recipient_and_differ_across_recipients(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    def authors(out: Path) -> dict[int, str]:
        table = released(out, "posts")
        return dict(zip(table["id"].to_pylist(), table["author"].to_pylist(), strict=True))

    for name, recipient in (("a1", "partner"), ("a2", "partner"), ("b", "other-partner")):
        build(scenario, ctx, scenario_lake, tmp_path / name, recipient=recipient)
    one, two, other = authors(tmp_path / "a1"), authors(tmp_path / "a2"), authors(tmp_path / "b")
    assert one == two
    assert one[101] == one[104]  # same author, same pseudonym
    assert one[101] != one[601]
    assert not set(one.values()) & set(other.values())


def test_retention_and_window(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    out = tmp_path / "kept"
    build(scenario, ctx, scenario_lake, out, retention=Retention({"posts": 365}))
    reference, _ = expected(
        scenario_lake,
        category="posts",
        settings=["assistant_training_posts"],
        as_of=AS_OF,
        retention_days=365,
    )
    assert reference[106] == "outside_retention"
    posts = released(out, "posts")
    assert set(posts["id"].to_pylist()) == {i for i, r in reference.items() if r is None}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["excluded"]["posts"]["outside_retention"] == 1
    assert manifest["retention_days"]["posts"] == 365
    assert by_id(posts, "quote_of")[112] is None  # 106 is no longer eligible

    window = tmp_path / "window"
    build(scenario, ctx, scenario_lake, window, since=datetime(2026, 1, 1, tzinfo=UTC))
    posts = released(window, "posts")
    assert 106 not in posts["id"].to_pylist()
    assert by_id(posts, "quote_of")[112] == 106  # eligible, outside the window


def test_lineage_bitmaps_hold_exactly_the_released_records_and_authors(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    out = tmp_path / "release"
    release = build(scenario, ctx, scenario_lake, out, categories=CATEGORIES)
    for category, authors in (("posts", {1, 8, 10, 11, 13}), ("assistant_interactions", {1, 6, 8})):
        records = lineage.read_bitmap(lineage.records_path(out, category))
        assert set(records) == set(released(out, category)["id"].to_pylist())
        assert set(lineage.read_bitmap(lineage.authors_path(out, category))) == authors
    with scenario.read() as session:
        assert [r.id for r in service.find_releases(session, category="posts", record_id=101)] == [release.id]
        assert service.find_releases(session, category="posts", record_id=601) == []


def test_dataset_card_manifest_and_verify(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    out = tmp_path / "release"
    release = build(scenario, ctx, scenario_lake, out, categories=CATEGORIES, license="cc-by-4.0")
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["license"] == "cc-by-4.0"
    assert header["size_categories"] == ["n<1K"]
    assert [(c["config_name"], c["data_files"][0]["path"]) for c in header["configs"]] == [
        ("posts", "data/posts/train-*"),
        ("assistant_interactions", "data/assistant_interactions/train-*"),
    ]
    assert "## Exclusions" in card and "| opted_out |" in card
    manifest = json.loads((out / "manifest.json").read_text())
    with scenario.read() as session:
        head = session.execute(sa.text("SELECT seq, hash FROM ledger_head")).one()
    assert manifest["consent"]["ledger_head"] == {"seq": head[0], "hash": head[1]}
    assert manifest["consent"]["settings"] == {
        "posts": ["assistant_training_posts"],
        "assistant_interactions": ["assistant_training_interactions"],
    }
    assert [p["version"] for p in manifest["consent"]["policies"]] == [1]
    assert {f["path"] for f in manifest["files"]} >= {
        "README.md",
        "data/posts/train-00000-of-00001.parquet",
        "lineage/records-posts.roaring",
    }
    shard = next(f for f in manifest["files"] if f["path"].startswith("data/posts/"))
    assert shard["rows"] == manifest["rows"]["posts"]
    assert pq.ParquetFile(out / shard["path"]).metadata.row_group(0).column(0).compression == "ZSTD"
    with scenario.read() as session:
        assert service.verify_release(session, release_id=release.id).ok
    (out / "data/posts/train-00000-of-00001.parquet").write_bytes(b"broken")
    (out / "extra.txt").write_text("?")
    with scenario.read() as session:
        report = service.verify_release(session, release_id=release.id)
    assert not report.ok
    assert any("SHA-256" in p for p in report.problems)
    assert any("extra.txt" in p for p in report.problems)


def test_a_release_cites_a_checkpoint_and_verify_proves_it_against_the_log(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    out = tmp_path / "release"
    release = build(scenario, ctx, scenario_lake, out, categories=CATEGORIES)
    manifest = json.loads((out / "manifest.json").read_text())
    cited = manifest["consent"]["checkpoint"]
    assert ctx.log is not None
    with scenario.read() as session:
        head = session.execute(sa.text("SELECT seq, hash FROM ledger_head")).one()
        row = session.execute(sa.text("SELECT size, root, note FROM tlog_checkpoints")).one()
    # the build signed a checkpoint of the ledger it read, and the manifest cites exactly that one
    assert (cited["size"], cited["root"], cited["checkpoint"]) == tuple(row) and row[0] == head[0]
    assert cited["origin"] == ctx.log.origin and cited["log_key"] == ctx.log.signer.vkey
    assert manifest["consent"]["ledger_head"] == {"seq": head[0], "hash": head[1]}
    assert f"checkpoint `{ctx.log.origin}` of size {head[0]}" in (out / "README.md").read_text()
    with scenario.read() as session:
        report = service.verify_release(session, release_id=release.id)
    assert report.ok and report.history is not None
    assert f"size {head[0]} is consistent with the log's current checkpoint size {head[0]}" in report.history

    # the log grows (a checkpoint of the larger tree): still consistent
    with scenario.write() as session:
        ledger.append(
            session, [ledger.NewEvent("s-new", "third_party_sharing", "deny", "user", 1, utcnow(), "web")]
        )
        tlog.make_checkpoint(session, log=ctx.log, force=True)
    with scenario.read() as session:
        report = service.verify_release(session, release_id=release.id)
    assert report.ok and f"current checkpoint size {head[0] + 1}" in str(report.history)

    # a manifest from before checkpoints (a bare head) still verifies its files, and says what it lacks
    old = {**manifest, "consent": {k: v for k, v in manifest["consent"].items() if k != "checkpoint"}}
    (out / "manifest.json").write_text(json.dumps(old))
    with scenario.write() as session:
        session.execute(
            sa.text("UPDATE releases SET manifest_sha256 = :h WHERE id = :i"),
            {"h": writer.sha256_file(out / "manifest.json"), "i": release.id},
        )
    with scenario.read() as session:
        report = service.verify_release(session, release_id=release.id)
    assert report.ok and "the manifest predates checkpoints" in str(report.history)

    # a cited checkpoint not signed by the log's key fails
    forged = {**cited, "checkpoint": cited["checkpoint"].replace(cited["origin"], "evil.example/log", 1)}
    with scenario.read() as session:
        problem = service.verify_history(
            {"consent": {"checkpoint": forged}}, log=LocalLog(session), trust=None
        )
    assert problem[0] is None and "the cited checkpoint does not verify" in str(problem[1])


def test_incremental_release_holds_new_records_and_lists_removals(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    first = build(scenario, ctx, scenario_lake, tmp_path / "r1", categories=CATEGORIES)
    # by `later`, mia's deny (1301) has taken effect, judy (1001) is deactivated, post 104 is deleted
    # and post 105 is written: the increment holds 105 and removes the other three
    later = datetime(2026, 10, 1, tzinfo=UTC)
    second = build(
        scenario,
        ctx,
        scenario_lake,
        tmp_path / "r2",
        categories=CATEGORIES,
        as_of=later,
        since_release=first.id,
    )
    removals = pq.read_table(tmp_path / "r2" / "removals.parquet").to_pylist()
    got = {(r["category"], r["id"], r["reason"], r["release"]) for r in removals}
    assert got == {
        ("posts", 1301, "opted_out", first.id),
        ("posts", 1001, "inactive_account", first.id),
        ("posts", 104, "deleted", first.id),
    }
    new_posts = released(tmp_path / "r2", "posts")["id"].to_pylist()
    assert new_posts == [105]  # written after the first release's as_of
    manifest = json.loads((tmp_path / "r2" / "manifest.json").read_text())
    assert manifest["incremental"]["since_release"] == first.id
    assert manifest["incremental"]["removals"] == {"posts": 3, "assistant_interactions": 0}
    assert set(lineage.read_bitmap(lineage.removed_path(tmp_path / "r2", "posts"))) == {104, 1001, 1301}
    assert second.removals == 3

    third = build(
        scenario,
        ctx,
        scenario_lake,
        tmp_path / "r3",
        categories=CATEGORIES,
        as_of=later,
        since_release=second.id,
    )
    assert released(tmp_path / "r3", "posts").num_rows == 0  # nothing new, and nothing removed twice
    assert pq.read_table(tmp_path / "r3" / "removals.parquet").num_rows == 0
    assert third.rows == 0


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"recipient": "nobody"}, NotFound, "recipient"),
        ({"purpose": "mining"}, InvalidInput, "purpose"),
        ({"purpose": "ai-input", "recipient": "partner"}, InvalidInput, "purpose"),
        (
            {"categories": ["assistant_interactions"], "recipient": "other-partner"},
            InvalidInput,
            "categories",
        ),
        ({"categories": ["profile"]}, InvalidInput, "categories"),
        (
            {"since": datetime(2026, 5, 1, tzinfo=UTC), "until": datetime(2026, 4, 1, tzinfo=UTC)},
            InvalidInput,
            "since",
        ),
        ({"as_of": datetime(2999, 1, 1, tzinfo=UTC)}, InvalidInput, "as_of"),
        ({"engine": "pandas"}, InvalidInput, "engine"),
        ({"since_release": "rel-missing"}, NotFound, "release_id"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_published(
    scenario: Database,
    ctx: ConsentContext,
    scenario_lake: Path,
    tmp_path: Path,
    changes: dict[str, object],
    error: type[ConsentryError],
    field: str,
) -> None:
    out = tmp_path / "release"
    with pytest.raises(error) as raised:
        build(scenario, ctx, scenario_lake, out, **changes)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert not out.exists() and not staging_folders(tmp_path)
    with scenario.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Release)) == 0


def test_a_lake_failing_the_contract_and_an_occupied_folder_are_refused(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    (broken / "posts").mkdir(parents=True)
    for folder in ("accounts", "assistant_interactions", "blocks", "follows", "consent_events"):
        (broken / folder).symlink_to(scenario_lake / folder)
    table = pq.read_table(scenario_lake / "posts")
    pq.write_table(table.drop_columns(["visibility"]), broken / "posts" / "p.parquet")
    with pytest.raises(InvalidInput, match="data-contract check") as raised:
        build(scenario, ctx, broken, tmp_path / "out")
    assert raised.value.field == "lake"
    assert not (tmp_path / "out").exists() and not staging_folders(tmp_path)

    first = build(scenario, ctx, scenario_lake, tmp_path / "taken")
    with pytest.raises(Conflict, match="already holds a release"):
        build(scenario, ctx, scenario_lake, tmp_path / "taken")
    with scenario.read() as session:
        assert [r.id for r in service.list_releases(session)] == [first.id]


def test_a_failing_build_publishes_nothing(
    scenario: Database, ctx: ConsentContext, scenario_lake: Path, tmp_path: Path
) -> None:
    stages: list[str] = []

    def progress(stage: str, done: int, total: int) -> None:
        stages.append(stage)
        if stage == "posts: write":
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        build(scenario, ctx, scenario_lake, tmp_path / "out", progress=progress)
    assert stages[-1] == "posts: write"
    assert not (tmp_path / "out").exists() and not staging_folders(tmp_path)
    with scenario.read() as session:
        assert service.list_releases(session) == []

    seen: list[tuple[str, int, int]] = []
    build(scenario, ctx, scenario_lake, tmp_path / "out", progress=lambda s, d, t: seen.append((s, d, t)))
    assert seen[0] == ("check lake", 0, 8) and seen[-1] == ("published", 8, 8)


def test_recipients(database: Database) -> None:
    with database.write() as session:
        one = service.add_recipient(
            session, name="lab", kind="third_party", purposes=["ai-input", "train-ai"], categories=["posts"]
        )
        assert one.purposes == ["train-ai", "ai-input"] and len(one.secret) == 64
        with pytest.raises(Conflict):
            service.add_recipient(
                session, name="lab", kind="third_party", purposes=["train-ai"], categories=["posts"]
            )
    for bad, field in (
        ({"name": "has space"}, "name"),
        ({"kind": "friend"}, "kind"),
        ({"purposes": []}, "purposes"),
        ({"categories": ["profile"]}, "categories"),
    ):
        arguments = {"name": "x", "kind": "first_party", "purposes": ["train-ai"], "categories": ["posts"]}
        arguments.update(bad)
        with database.write() as session, pytest.raises(InvalidInput) as raised:
            service.add_recipient(session, **arguments)  # type: ignore[arg-type]
        assert raised.value.field == field
    with database.read() as session:
        assert [r.name for r in service.list_recipients(session)] == ["lab"]
        with pytest.raises(NotFound):
            service.get_recipient(session, "nobody")
