"""The plan over a lake agrees with an independent pandas count, and with the plan over the same data
seeded into the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from consentry.consent.service import ConsentContext
from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.lake.generate import generate_lake
from consentry.retention import service
from consentry.retention.rules import DEFAULT_RULES, Duration, Rules
from consentry.social.seed import seed_from_lake

AT = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("retention") / "lake"
    generate_lake(path, accounts=1500, posts=15000, seed=11)
    return path


def frames(lake: Path) -> dict[str, pd.DataFrame]:
    return {
        name: pd.read_parquet(lake / name)
        for name in ("accounts", "posts", "assistant_interactions", "follows", "blocks", "consent_events")
    }


def expected(data: dict[str, pd.DataFrame], rules: Rules, held: set[int]) -> dict[str, dict[str, int]]:
    """The rules applied with pandas, written from docs/retention.md."""
    cut = rules.cutoffs(AT)
    accounts, posts, chats = data["accounts"], data["posts"], data["assistant_interactions"]

    def due(frame: pd.DataFrame, deleted: datetime | None, created: datetime | None) -> pd.Series:
        result = pd.Series(False, index=frame.index)
        if deleted is not None:
            result |= frame["deleted_at"].notna() & (frame["deleted_at"] < pd.Timestamp(deleted))
        if created is not None:
            result |= frame["created_at"] < pd.Timestamp(created)
        return result

    past = (accounts["status"] == "deactivated") & (
        accounts["status_changed_at"] < pd.Timestamp(cut.deactivated)
    )
    gone = set(accounts.loc[past, "account_id"]) - held
    kept = set(accounts.loc[past, "account_id"]) & held
    post_due = due(posts, cut.posts_deleted, cut.posts_created)
    chat_due = due(chats, cut.interactions_deleted, cut.interactions_created)
    post_held, chat_held = posts["author_id"].isin(held), chats["account_id"].isin(held)
    follows, blocks = data["follows"], data["blocks"]
    return {
        "posts": {"posts": int((post_due & ~post_held).sum()), "held": int((post_due & post_held).sum())},
        "assistant_interactions": {
            "assistant_interactions": int((chat_due & ~chat_held).sum()),
            "held": int((chat_due & chat_held).sum()),
        },
        "deactivated_accounts": {
            "accounts": len(gone),
            "held_accounts": len(kept),
            "posts": int((posts["author_id"].isin(gone) & ~post_due).sum()),
            "assistant_interactions": int((chats["account_id"].isin(gone) & ~chat_due).sum()),
            "held_posts": int(posts["author_id"].isin(kept).sum()),
            "follows": int((follows["follower_id"].isin(gone) | follows["followee_id"].isin(gone)).sum()),
            "blocks": int((blocks["blocker_id"].isin(gone) | blocks["blocked_id"].isin(gone)).sum()),
        },
        "consent_events": {"consent_events": len(data["consent_events"])},
    }


@pytest.mark.parametrize(
    "rules",
    [DEFAULT_RULES, Rules(posts_max_age=Duration(years=3), interactions_after_deletion=None)],
    ids=["defaults", "max-age"],
)
def test_the_lake_plan_agrees_with_pandas(lake: Path, rules: Rules) -> None:
    data = frames(lake)
    deactivated = data["accounts"].query("status == 'deactivated'")["account_id"].tolist()
    deleters = data["posts"].dropna(subset=["deleted_at"])["author_id"].tolist()
    held = {int(deactivated[0]), int(deactivated[1]), int(deleters[0]), int(deleters[-1])}
    want = expected(data, rules, held)
    plan = service.plan_lake(lake, rules=rules, at=AT, held=sorted(held))
    assert plan.source == "lake" and plan.holds == len(held)

    posts = plan.outcome("posts")
    assert posts.removed == {"posts": want["posts"]["posts"]}
    assert posts.held == {"posts": want["posts"]["held"]}
    assert want["posts"]["posts"] > 0 and want["posts"]["held"] > 0
    examples = posts.examples["posts"]
    assert examples == sorted(examples) and len(examples) == 5
    chats = plan.outcome("assistant_interactions")
    if rules.interactions_after_deletion is None:
        assert chats.removed == {}
    else:
        assert chats.removed == {
            "assistant_interactions": want["assistant_interactions"]["assistant_interactions"]
        }
        assert chats.held == {"assistant_interactions": want["assistant_interactions"]["held"]}
    deactivated_plan = plan.outcome("deactivated_accounts")
    d = want["deactivated_accounts"]
    assert deactivated_plan.changed == {"accounts": d["accounts"]}
    assert deactivated_plan.removed == {
        "posts": d["posts"],
        "assistant_interactions": d["assistant_interactions"],
        "follows": d["follows"],
        "blocks": d["blocks"],
    }
    assert deactivated_plan.held["accounts"] == d["held_accounts"] == 2
    assert deactivated_plan.held["posts"] == d["held_posts"]
    assert d["accounts"] > 0 and d["follows"] > 0
    assert d["posts"] > 0 or rules is not DEFAULT_RULES
    assert plan.outcome("consent_events").kept == want["consent_events"]
    assert plan.outcome("access_log").removed == {}


def test_the_lake_plan_equals_the_database_plan_of_the_same_data(
    lake: Path, database: Database, ctx: ConsentContext
) -> None:
    seed_from_lake(database, lake, ctx=ctx)
    from_lake = service.plan_lake(lake, rules=DEFAULT_RULES, at=AT)
    with database.read() as session:
        from_database = service.plan(session, rules=DEFAULT_RULES, at=AT)
    for rule in ("posts", "assistant_interactions", "deactivated_accounts"):
        lake_outcome, db_outcome = from_lake.outcome(rule), from_database.outcome(rule)
        for table, count in lake_outcome.removed.items():
            assert db_outcome.removed[table] == count, (rule, table)
        for table, ids in lake_outcome.examples.items():
            assert db_outcome.examples[table] == ids, (rule, table)
    assert (
        from_lake.outcome("deactivated_accounts").changed["accounts"]
        == (from_database.outcome("deactivated_accounts").changed["accounts"])
    )


def test_a_folder_that_is_not_a_lake_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as missing:
        service.plan_lake(tmp_path / "nope", rules=DEFAULT_RULES)
    assert missing.value.field == "lake"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput):
        service.plan_lake(tmp_path / "empty", rules=DEFAULT_RULES)


def test_a_plan_may_look_ahead(lake: Path) -> None:
    later = service.plan_lake(lake, rules=DEFAULT_RULES, at=AT + timedelta(days=60))
    now = service.plan_lake(lake, rules=DEFAULT_RULES, at=AT)
    assert later.outcome("posts").removed["posts"] > now.outcome("posts").removed["posts"]
