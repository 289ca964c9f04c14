"""Each retention rule removes exactly what it should, legal holds stop it, plans equal runs."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.retention.conftest import AT, POSTS, seed

from consentry.auth.models import ApiToken
from consentry.config import Settings
from consentry.consent import ledger
from consentry.consent.models import ConsentEvent, Notification, Subject
from consentry.db import Database, utcnow
from consentry.errors import InvalidInput, NotFound
from consentry.metering.models import AccessRecord
from consentry.retention import purge, service
from consentry.retention.models import RetentionRun
from consentry.retention.rules import DEFAULT_RULES, Rules
from consentry.retention.schemas import RetentionPlan, RetentionReport
from consentry.social.models import Account, AssistantInteraction, Block, Follow, Like, Post, Repost


def snapshot(database: Database) -> dict[str, Any]:
    """Every row the rules may touch, as comparable sets."""
    with database.read() as session:
        return {
            "posts": set(session.scalars(select(Post.id))),
            "links": {(p.id, p.reply_to, p.quote_of) for p in session.scalars(select(Post))},
            "interactions": set(session.scalars(select(AssistantInteraction.id))),
            "likes": {tuple(r) for r in session.execute(select(Like.account_id, Like.post_id))},
            "reposts": {tuple(r) for r in session.execute(select(Repost.account_id, Repost.post_id))},
            "follows": {tuple(r) for r in session.execute(select(Follow.follower_id, Follow.followee_id))},
            "blocks": {tuple(r) for r in session.execute(select(Block.blocker_id, Block.blocked_id))},
            "access_log": set(session.scalars(select(AccessRecord.id))),
            "subjects": set(session.scalars(select(Subject.account_id))),
            "notifications": set(session.scalars(select(Notification.account_id))),
            "accounts": {(a.id, a.handle, a.status, a.birth_year) for a in session.scalars(select(Account))},
            "live_tokens": set(
                session.scalars(select(ApiToken.account_id).where(ApiToken.revoked_at.is_(None)))
            ),
            "events": session.scalar(select(func.count()).select_from(ConsentEvent)),
        }


def hold(database: Database, *accounts: int) -> None:
    with database.write() as session:
        for account in accounts:
            service.add_hold(session, account_id=account, reason="litigation 2026-17", by="test")


def make_plan(database: Database, rules: Rules = DEFAULT_RULES) -> RetentionPlan:
    with database.read() as session:
        return service.plan(session, rules=rules, at=AT)


def run(database: Database, rules: Rules = DEFAULT_RULES, **options: Any) -> RetentionReport:
    return service.apply(database, rules=rules, at=AT, **options)


def assert_plan_equals_run(plan: RetentionPlan, report: RetentionReport) -> None:
    for planned, done in zip(plan.outcomes, report.outcomes, strict=True):
        assert planned.rule == done.rule
        assert planned.removed == done.removed, planned.rule
        assert planned.examples == done.examples, planned.rule
        assert planned.held == done.held, planned.rule
        assert planned.kept == done.kept, planned.rule
        changed = {k: v for k, v in done.changed.items() if k != "links_cleared"}
        assert planned.changed == changed, planned.rule
    assert plan.total == report.rows_removed


def test_each_rule_removes_exactly_what_it_should(platform: Database) -> None:
    before = snapshot(platform)
    plan = make_plan(platform)
    assert snapshot(platform) == before  # a plan changes nothing
    report = run(platform)
    after = snapshot(platform)
    assert_plan_equals_run(plan, report)

    posts = report.outcome("posts")
    assert posts.removed == {"posts": 5, "likes": 3, "reposts": 1}
    assert posts.examples == {"posts": [11, 16, 21, 41, 60]}
    assert posts.changed == {"links_cleared": 3}
    assert report.outcome("assistant_interactions").removed == {"assistant_interactions": 3}
    deactivated = report.outcome("deactivated_accounts")
    assert deactivated.removed == {
        "posts": 3,
        "assistant_interactions": 2,
        "likes": 3,
        "reposts": 1,
        "follows": 3,
        "blocks": 1,
        "notifications": 1,
        "subject_mappings": 2,
    }
    assert deactivated.changed == {"accounts": 2, "tokens": 1}
    assert deactivated.examples["accounts"] == [3, 5]
    assert report.outcome("access_log").removed == {"access_log": 2}
    assert report.outcome("subject_mappings").removed == {"subject_mappings": 2}
    assert report.outcome("consent_events").kept == {"consent_events": 3, "anonymous": 2}
    assert report.rows_removed == 5 + 3 + 1 + 3 + 16 + 2 + 2
    assert report.status == "finished" and report.revocations == 0

    assert after["posts"] == {10, 12, 13, 14, 15, 30, 70}
    assert {(i, r, q) for i, r, q in after["links"] if r or q} == set()  # 14 and 15 lost their links
    assert after["interactions"] == {100, 102}
    assert after["likes"] == {(1, 10)}
    assert after["reposts"] == {(1, 30)}
    assert after["follows"] == {(1, 2), (4, 1)}
    assert after["blocks"] == {(2, 4)}
    assert after["access_log"] == {2, 3}
    assert after["subjects"] == {1}
    assert after["notifications"] == {1}
    assert after["live_tokens"] == {1}
    assert after["events"] == before["events"] == 3  # consent events are never removed
    accounts = {a[0]: a for a in after["accounts"]}
    assert accounts[3] == (3, "purged-3", "deleted", None)
    assert accounts[5] == (5, "purged-5", "deleted", None)
    assert accounts[4] == (4, "dan", "deactivated", 1990)  # exactly at the edge: kept
    with platform.read() as session:
        assert ledger.verify(session).ok  # the events are anonymous, the chain still verifies


def test_a_second_run_removes_nothing(platform: Database) -> None:
    run(platform)
    again = run(platform)
    assert again.rows_removed == 0
    assert make_plan(platform).total == 0


def test_legal_holds_stop_every_rule_and_the_plan_reports_what_they_kept(platform: Database) -> None:
    hold(platform, 2, 5, 7)
    plan = make_plan(platform)
    report = run(platform)
    assert_plan_equals_run(plan, report)
    after = snapshot(platform)

    posts = report.outcome("posts")
    assert posts.removed == {"posts": 3, "likes": 2, "reposts": 1}
    assert posts.held == {"posts": 2}  # 16 (bob) and 41 (eve)
    assert report.outcome("assistant_interactions").held == {"assistant_interactions": 1}
    deactivated = report.outcome("deactivated_accounts")
    assert deactivated.held == {"accounts": 1, "posts": 2, "assistant_interactions": 1}
    assert deactivated.changed == {"accounts": 1, "tokens": 1}
    assert report.outcome("subject_mappings").held == {"subject_mappings": 1}
    assert report.holds == 3

    assert {16, 40, 41, 70} <= after["posts"]
    assert 105 in after["interactions"] and 106 in after["interactions"]
    assert {(2, 16), (4, 40)} <= after["likes"]
    assert (5, 1) in after["follows"]
    assert after["subjects"] == {1, 5, 7}
    assert (5, "eve", "deactivated", 1990) in after["accounts"]

    # released, the next run purges what the holds kept
    with platform.write() as session:
        for account in (2, 5, 7):
            service.release_hold(session, account_id=account, by="test")
    later = run(platform)
    assert later.outcome("posts").removed["posts"] == 2
    assert later.outcome("deactivated_accounts").changed["accounts"] == 1
    assert snapshot(platform)["subjects"] == {1}


def test_bad_rules_or_times_are_refused_before_anything_changes(platform: Database, tmp_path: Path) -> None:
    before = snapshot(platform)
    bad = tmp_path / "retention.json"
    for text, field in (
        ('{"posts": {"after_deletion": "-P30D"}}', "retention.posts.after_deletion"),
        ('{"access_log": {"max_age": "eighteen months"}}', "retention.access_log.max_age"),
        ('{"deactivated_accounts": {"after_deactivation": -1}}', "retention.deactivated_accounts."),
        ('{"consent_events": {"max_age": "P1Y"}}', "retention.consent_events"),
        ("{not json", "retention_file"),
    ):
        bad.write_text(text)
        settings = Settings(home=tmp_path, database_url=platform.url, retention_file=bad)
        with pytest.raises(InvalidInput) as error:
            service.run_scheduled(platform, settings)
        assert error.value.field is not None and error.value.field.startswith(field), error.value.field
    missing = Settings(home=tmp_path, database_url=platform.url, retention_file=tmp_path / "nope.json")
    with pytest.raises(InvalidInput):
        service.run_scheduled(platform, missing)
    with pytest.raises(InvalidInput) as future:
        service.apply(platform, rules=DEFAULT_RULES, at=utcnow() + timedelta(days=1))
    assert future.value.field == "at"
    with pytest.raises(InvalidInput):
        service.apply(platform, rules=DEFAULT_RULES, at=AT, batch=0)
    assert snapshot(platform) == before
    with platform.read() as session:
        assert session.scalar(select(func.count()).select_from(RetentionRun)) == 0


def test_configured_rules_change_what_is_removed(platform: Database, tmp_path: Path) -> None:
    rules = Rules.from_mapping(
        {
            "posts": {"after_deletion": None, "max_age": "P850D"},
            "assistant_interactions": {"after_deletion": 0},
            "deactivated_accounts": {"after_deactivation": None},
            "access_log": {"max_age": None},
        }
    )
    plan = make_plan(platform, rules)
    report = run(platform, rules)
    assert_plan_equals_run(plan, report)
    cutoff = AT - timedelta(days=850)
    old = {i for i, *_ in POSTS if seed_created(i) < cutoff}
    assert len(old) == 11 and report.outcome("posts").removed["posts"] == len(old)
    assert report.outcome("assistant_interactions").removed == {"assistant_interactions": 4}
    assert report.outcome("deactivated_accounts").removed == {}
    assert report.outcome("access_log").removed == {}
    assert snapshot(platform)["access_log"] == {1, 2, 3, 4}


def seed_created(post_id: int) -> Any:
    from tests.retention.conftest import CREATED

    return CREATED + timedelta(days=post_id)


def test_small_batches_remove_the_same_rows(platform: Database) -> None:
    plan = make_plan(platform)
    seen: list[tuple[str, int]] = []
    report = run(platform, batch=1, progress=lambda rule, removed: seen.append((rule, removed)))
    assert_plan_equals_run(plan, report)
    assert ("posts", 9) in seen  # progress after each batch: counts only grow
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(seen) if a[0] == b[0])


def test_runs_are_recorded_with_their_report(platform: Database) -> None:
    report = run(platform, trigger="schedule")
    with platform.read() as session:
        [stored] = service.list_runs(session)
        assert stored.id == report.run_id
        assert (stored.status, stored.trigger, stored.rows_removed) == ("finished", "schedule", 32)
        assert stored.finished_at is not None and stored.rules == DEFAULT_RULES.describe()
        again = RetentionReport.model_validate(stored.report)
        assert again.outcome("access_log").removed == {"access_log": 2}
        json.dumps(stored.report)
        with pytest.raises(NotFound):
            service.get_run(session, 999)


def test_a_failing_run_is_recorded_as_failed(platform: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(purge, "_run_access_log", broken)
    with pytest.raises(RuntimeError):
        run(platform)
    with platform.read() as session:
        [stored] = service.list_runs(session)
        assert stored.status == "failed" and stored.error == "RuntimeError: disk full"
        assert stored.rows_removed == 9 + 3 + 16  # the rules before it had finished
    monkeypatch.undo()  # restartable: the next run carries on
    assert run(platform).outcome("access_log").removed == {"access_log": 2}


def test_scheduled_runs_use_the_configured_rules(database: Database, tmp_path: Path) -> None:
    seed(database)
    rules = tmp_path / "retention.json"
    rules.write_text(json.dumps({"access_log": {"max_age": "P1M"}}))
    settings = Settings(home=tmp_path, database_url=database.url, retention_file=rules)
    with database.read() as session:
        due = service.next_due(session, settings)
    assert due <= utcnow()
    report = service.run_scheduled(database, settings)
    assert report.trigger == "schedule"
    assert report.outcome("access_log").removed == {"access_log": 4}  # all older than a month now
    with database.read() as session:
        assert service.next_due(session, settings) > utcnow() + timedelta(hours=23)
