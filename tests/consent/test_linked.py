"""A choice made once for every linked account: one event and one receipt per account, each naming
the account that chose; per-account rules still win; all or nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentry.consent import changes, ledger, service
from consentry.consent.receipts import verify_receipt
from consentry.consent.service import ChangeRequest, ConsentContext
from consentry.consent.writer import ConsentWriter
from consentry.db import Database, utcnow
from consentry.links.service import import_links, request_link
from consentry.social.service import create_account, deactivate_account
from tests.conftest import make_account, reset

SETTINGS = (
    "assistant_training_posts",
    "assistant_training_interactions",
    "assistant_realtime",
    "third_party_sharing",
)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def link(database: Database, *pairs: tuple[int, int]) -> None:
    with database.write() as session:
        import_links(session, list(pairs))


def subject_of(database: Database, account_id: int) -> str | None:
    with database.read() as session:
        return ledger.subject_key_for(session, account_id, create=False)


def counts(database: Database) -> tuple[int, int, int, int]:
    """Events, subject mappings, revocations and the head's seq: what a change would move."""
    with database.read() as session:

        def one(sql: str) -> int:
            return int(session.execute(sa.text(sql)).scalar_one())

        return (
            one("SELECT count(*) FROM consent_events"),
            one("SELECT count(*) FROM consent_subjects"),
            one("SELECT count(*) FROM revocations"),
            one("SELECT sum(seq) FROM ledger_head"),
        )


def values(client: TestClient, token: str) -> dict[str, tuple[str, str]]:
    body = client.get("/v1/me/settings", headers=auth(token)).json()
    return {s["key"]: (s["value"], s["basis"]) for s in body["settings"]}


def test_a_linked_change_covers_every_confirmed_account_and_names_the_chooser(
    client: TestClient, database: Database
) -> None:
    kid_year = utcnow().year - 14
    main, main_token = make_account(database, handle="main", country="US")
    brand, brand_token = make_account(database, handle="brand", country="DE")
    kid, kid_token = make_account(database, handle="kid", country="US", birth_year=kid_year)
    off, _ = make_account(database, handle="off", country="US")
    asked, asked_token = make_account(database, handle="asked", country="US")
    link(database, (main, brand), (kid, main), (main, off))
    with database.write() as session:
        deactivate_account(session, account_id=off)
        request_link(session, account_id=main, other_id=asked)  # never confirmed: not covered
    before_asked = values(client, asked_token)

    response = client.put(
        "/v1/me/settings",
        headers=auth(main_token) | {"X-Consentry-Client": "android"},
        json={
            "settings": {"assistant_training_posts": "allow", "third_party_sharing": "deny"},
            "scope": "linked",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "linked"
    chooser = subject_of(database, main)
    subjects = {subject_of(database, a): a for a in (main, brand, kid)}
    receipts = body["receipts"]
    assert len(receipts) == 6  # one per account and setting
    jwk = client.get("/.well-known/consentry/receipt-key").json()["keys"][0]
    owners = []
    for signed in receipts:
        receipt = verify_receipt(signed, jwk)
        assert receipt["event"]["chosen_by"] == chooser
        assert receipt["event"]["client"] == "android"
        owners.append(subjects[receipt["subject"]])
    assert owners == [main, main, brand, brand, kid, kid]  # the chooser first, then by id
    jurisdictions = {subjects[r["receipt"]["subject"]]: r["receipt"]["jurisdiction"] for r in receipts}
    assert jurisdictions == {main: "default", brand: "EEA", kid: "default"}
    covered = {a["account_id"]: a for a in body["accounts"]}
    assert [a["account_id"] for a in body["accounts"]] == [main, brand, kid, off]
    assert covered[off]["changed"] is False and covered[off]["receipt_seqs"] == []
    assert len(covered[brand]["receipt_seqs"]) == 2

    # per-account rules still win: the minor stays denied, each jurisdiction keeps its own defaults
    assert values(client, kid_token)["assistant_training_posts"] == ("deny", "minor")
    brand_now = values(client, brand_token)
    assert brand_now["assistant_training_posts"] == ("allow", "explicit")
    assert brand_now["assistant_realtime"] == ("deny", "default")  # EEA: opt-in
    assert values(client, main_token)["assistant_realtime"] == ("allow", "default")
    assert values(client, asked_token) == before_asked

    # each account sees the event in its own history and can fetch its receipt, naming the chooser
    history = client.get("/v1/me/consent-history", headers=auth(brand_token)).json()["events"]
    assert {e["chosen_by"] for e in history} == {chooser}
    again = client.get(f"/v1/me/receipts/{history[0]['seq']}", headers=auth(brand_token)).json()
    assert again["receipt"]["event"]["chosen_by"] == chooser

    # unlinking keeps every recorded choice
    assert client.delete(f"/v1/me/links/{main}", headers=auth(brand_token)).status_code == 204
    assert values(client, brand_token) == brand_now
    assert len(client.get("/v1/me/consent-history", headers=auth(brand_token)).json()["events"]) == 2
    with database.read() as session:
        assert ledger.verify(session).ok


def test_an_account_scope_change_and_an_unlinked_account_keep_the_old_event_form(
    client: TestClient, database: Database
) -> None:
    """Without links, scope linked changes the caller alone, and a plain change carries no chosen_by."""
    _, token = make_account(database, handle="solo")
    alone = client.put(
        "/v1/me/settings",
        headers=auth(token),
        json={"settings": {"assistant_realtime": "deny"}, "scope": "linked"},
    ).json()
    assert [a["account_id"] for a in alone["accounts"]] == [alone["accounts"][0]["account_id"]]
    assert "chosen_by" in alone["receipts"][0]["receipt"]["event"]
    plain = client.put(
        "/v1/me/settings", headers=auth(token), json={"settings": {"assistant_realtime": "allow"}}
    )
    event = plain.json()["receipts"][0]["receipt"]["event"]
    assert "chosen_by" not in event
    assert sorted(event) == [
        "client",
        "policy_version",
        "recorded_at",
        "seq",
        "setting",
        "source",
        "subject",
        "value",
    ]
    bad = client.put(
        "/v1/me/settings",
        headers=auth(token),
        json={"settings": {"assistant_realtime": "deny"}, "scope": "all"},
    )
    assert bad.status_code == 422 and bad.json()["field"] == "scope"


def test_a_linked_event_keeps_canonical_json_and_its_leaf(database: Database, ctx: ConsentContext) -> None:
    """The hashed form with chosen_by is still RFC 8785, so the chain, receipts and log verify."""
    a, _ = make_account(database, handle="a")
    b, _ = make_account(database, handle="b")
    link(database, (a, b))
    with database.write() as session:
        receipts = service.change_settings(
            session,
            account_id=a,
            changes={"assistant_realtime": "deny"},
            client="web",
            ctx=ctx,
        )
        assert len(receipts) == 1  # scope account: only a's own event, in the old form
        assert "chosen_by" not in receipts[0]["receipt"]["event"]
    with database.write() as session:
        [result] = service.change_settings_many(
            session, [ChangeRequest(a, {"assistant_realtime": "allow"}, "web", scope="linked")], ctx=ctx
        )
    assert not isinstance(result, Exception)
    assert len(result) == 2
    for signed in result:
        event = signed["receipt"]["event"]
        assert ledger.canonical_json(event) == rfc8785.dumps(event)
        assert (
            ledger.chain_hash(signed["receipt"]["chain"]["prev_hash"], event)
            == signed["receipt"]["chain"]["hash"]
        )
    with database.read() as session:
        assert ledger.verify(session).ok


@contextmanager
def failing_insert(database: Database, subject: str) -> Iterator[None]:
    """A trigger that makes the database refuse any event of ``subject``: a failure mid-way through
    a change that covers several accounts."""
    with database.write() as session:
        if database.url.startswith("sqlite"):
            session.execute(
                sa.text(
                    "CREATE TRIGGER refuse_subject BEFORE INSERT ON consent_events "
                    f"WHEN NEW.subject_key = '{subject}' BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
                )
            )
        else:
            session.execute(
                sa.text(
                    "CREATE FUNCTION refuse_subject() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.subject_key = '{subject}' THEN RAISE EXCEPTION 'forced failure'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            session.execute(
                sa.text(
                    "CREATE TRIGGER refuse_subject BEFORE INSERT ON consent_events "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_subject()"
                )
            )
    try:
        yield
    finally:
        with database.write() as session:
            session.execute(
                sa.text(
                    "DROP TRIGGER refuse_subject"
                    + ("" if database.url.startswith("sqlite") else " ON consent_events")
                )
            )
            if not database.url.startswith("sqlite"):
                session.execute(sa.text("DROP FUNCTION refuse_subject()"))


@pytest.mark.parametrize("partitions", [1, 4])
def test_a_failure_on_one_linked_account_changes_none(
    database: Database, ctx: ConsentContext, partitions: int
) -> None:
    """Also when the accounts' events fall in different ledger partitions (several heads, one transaction)."""
    with database.write() as session:
        ledger.set_partitions(session, partitions)
    first, _ = make_account(database, handle="first")
    middle, _ = make_account(database, handle="middle")
    last, _ = make_account(database, handle="last")
    link(database, (first, middle), (first, last))
    with database.write() as session:  # the middle account already has a subject key to refuse
        ledger.subject_key_for(session, middle)
    before = counts(database)
    writer = ConsentWriter(database, ctx)
    request = ChangeRequest(
        first, {"third_party_sharing": "deny", "assistant_realtime": "deny"}, "web", scope="linked"
    )
    try:
        with (
            failing_insert(database, str(subject_of(database, middle))),
            pytest.raises(Exception, match="forced failure"),
        ):
            writer.change(request)
        assert counts(database) == before  # no event, no subject key, no revocation for anybody
        assert subject_of(database, first) is None and subject_of(database, last) is None
        receipts = writer.change(request)  # the same change goes through once the failure is gone
    finally:
        writer.close()
    assert len(receipts) == 6
    with database.read() as session:
        assert ledger.verify(session).ok


def test_a_failure_after_the_events_are_written_keeps_none(
    database: Database, ctx: ConsentContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signing the third receipt fails: the events already appended for the first accounts go too."""
    ids = [make_account(database, handle=f"u{i}")[0] for i in range(3)]
    link(database, (ids[0], ids[1]), (ids[0], ids[2]))
    before = counts(database)
    real = changes.sign_event
    calls = 0

    def sign(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("signing failed mid-way")
        return real(*args, **kwargs)

    monkeypatch.setattr(changes, "sign_event", sign)
    writer = ConsentWriter(database, ctx)
    try:
        with pytest.raises(RuntimeError, match="mid-way"):
            writer.change(ChangeRequest(ids[0], {"assistant_realtime": "deny"}, "web", scope="linked"))
    finally:
        writer.close()
    assert calls == 3
    assert counts(database) == before


# --- the rule: a linked change is the same change made on each account, one by one -------------------

people = st.tuples(
    st.sampled_from(["US", "DE", "GB", "CH", "BR", None]),
    st.sampled_from([1960, 1995, "minor", None]),
    st.sampled_from(["active", "active", "deactivated"]),
    st.dictionaries(st.sampled_from(SETTINGS), st.sampled_from(["allow", "deny"]), max_size=2),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    accounts=st.lists(people, min_size=1, max_size=4),
    change=st.dictionaries(st.sampled_from(SETTINGS), st.sampled_from(["allow", "deny"]), min_size=1),
    created=st.sampled_from([datetime(2020, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)]),
)
def test_a_linked_change_equals_the_change_made_per_account(
    database: Database,
    ctx: ConsentContext,
    accounts: list[tuple[str | None, int | str | None, str, dict[str, str]]],
    change: dict[str, str],
    created: datetime,
) -> None:
    """Two copies of the same accounts: in one, the first changes every linked account at once; in the
    other, each active account makes the change itself. Effective consent agrees everywhere."""
    reset(database)
    at = datetime(2026, 6, 1, tzinfo=UTC)
    earlier = at - timedelta(days=30)
    with database.write() as session:
        ids: dict[str, list[int]] = {"linked": [], "each": []}
        for world in ids:
            for index, (country, year, _, history) in enumerate(accounts):
                birth = at.year - 10 if year == "minor" else year
                account = create_account(
                    session,
                    handle=f"{world}{index}",
                    country=country,
                    birth_year=birth if isinstance(birth, int) else None,
                    created_at=created,
                )
                ids[world].append(account.id)
                if history:
                    service.change_settings(
                        session, account_id=account.id, changes=history, client="web", ctx=ctx, at=earlier
                    )
        if len(accounts) > 1:
            import_links(session, [(ids["linked"][0], other) for other in ids["linked"][1:]])
        for world in ids:
            for index, (_, _, status, _) in enumerate(accounts):
                if status != "active" and index > 0:
                    deactivate_account(session, account_id=ids[world][index], at=earlier)
    with database.write() as session:
        [linked] = service.change_settings_many(
            session, [ChangeRequest(ids["linked"][0], change, "web", scope="linked")], ctx=ctx, at=at
        )
        each = service.change_settings_many(
            session,
            [
                ChangeRequest(account_id, change, "web")
                for index, account_id in enumerate(ids["each"])
                if index == 0 or accounts[index][2] == "active"
            ],
            ctx=ctx,
            at=at,
        )
    assert not isinstance(linked, Exception)
    assert len(linked) == sum(len(r) for r in each if not isinstance(r, Exception))
    later = at + timedelta(seconds=1)
    with database.read() as session:
        for one, other in zip(ids["linked"], ids["each"], strict=True):
            mine = service.settings_view(session, account_id=one, ctx=ctx, at=later)
            theirs = service.settings_view(session, account_id=other, ctx=ctx, at=later)
            assert [(s.key, s.value, s.basis, s.policy_version) for s in mine] == [
                (s.key, s.value, s.basis, s.policy_version) for s in theirs
            ]
        assert ledger.verify(session).ok
