"""The settings page and the dashboard in real Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from consentry.consent.receipts import verify_receipt
from consentry.db import utcnow
from consentry.transparency.checkpoint import parse_checkpoint
from consentry.transparency.note import parse_vkey
from consentry.transparency.verify import Trust, verify_receipt_with_proof
from tests.web.conftest import Live, screenshot

TRAINING = "assistant_training_posts"
TRAINING_LABEL = "Allow your public posts to be used to train and fine-tune our AI assistant"
REALTIME_LABEL = "Allow the assistant to use your public posts when it answers others (real-time)"
PHONE = {"width": 390, "height": 844}


def expect(locator: Any) -> Any:
    """Playwright's retrying assertions (imported here: without Playwright the fixtures skip or fail)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context
    finally:
        context.close()


def sign_in(page: Any, live: Live, token: str, *, start: str = "/settings") -> None:
    page.goto(live.base + start)
    assert "/signin" in page.url
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("load")


def api_settings(live: Live, token: str) -> dict[str, dict[str, Any]]:
    response = httpx.get(f"{live.base}/v1/me/settings", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    return {s["key"]: s for s in response.json()["settings"]}


def test_account_holder_switches_off_training_on_a_phone(browser: Any, live: Live, tmp_path: Path) -> None:
    _, token = live.people["ada"]
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    try:
        sign_in(page, live, token)
        assert page.url == live.base + "/settings"
        switch = page.get_by_role("switch", name=TRAINING_LABEL)
        assert switch.get_attribute("aria-checked") == "true"
        assert "Default for your region" in page.locator(f"#basis-{TRAINING}").inner_text()
        # no horizontal scrolling on a phone
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        switch.tap()
        expect(switch).to_have_attribute("aria-checked", "false", timeout=20_000)
        receipt = page.locator("#receipt")
        receipt.get_by_text("Saved — here is your receipt").wait_for(timeout=20_000)
        assert "is now Off" in receipt.inner_text()
        assert "Your choice" in page.locator(f"#basis-{TRAINING}").inner_text()
        assert "Turned off" in page.locator("#history-list").inner_text()
        with page.expect_download() as download_info:
            page.locator("#receipt-download").click()
        saved = tmp_path / "receipt.json"
        download_info.value.save_as(saved)
        signed = json.loads(saved.read_text())
        key = httpx.get(f"{live.base}/.well-known/consentry/receipt-key").json()["keys"][0]
        verified = verify_receipt(signed, key)
        assert verified["service"]["setting"] == TRAINING
        assert verified["event"]["value"] == "deny"
        # beside the receipt, the proof that its event is in the public log (once a checkpoint covers it)
        seq = verified["chain"]["seq"]
        deadline = time.monotonic() + 60
        while parse_checkpoint(httpx.get(f"{live.base}/.well-known/consentry/checkpoint").text)[0].size < seq:
            assert time.monotonic() < deadline, "no checkpoint covers the receipt"
            time.sleep(0.2)
        proof_link = page.locator("#proof-download")
        expect(proof_link).to_be_visible()
        with page.expect_download() as proof_info:
            proof_link.click()
        proof_file = tmp_path / "receipt.tlog-proof"
        proof_info.value.save_as(proof_file)
        log_key = httpx.get(f"{live.base}/.well-known/consentry/checkpoint-key").text.strip()
        proven = verify_receipt_with_proof(signed, key, proof_file.read_text(), Trust(parse_vkey(log_key)))
        assert proven.checkpoint.checkpoint.size >= seq
        page.locator("#receipt").scroll_into_view_if_needed()
        screenshot(page, "settings-phone.png")

        page.reload()
        switch = page.get_by_role("switch", name=TRAINING_LABEL)
        assert switch.get_attribute("aria-checked") == "false"
        assert "Your choice" in page.locator(f"#basis-{TRAINING}").inner_text()
    finally:
        context.close()
    state = api_settings(live, token)[TRAINING]
    assert state["value"] == "deny"
    assert state["explicit"] is True
    third_party = [url for url in requests if not url.startswith(live.base) and not url.startswith("data:")]
    assert third_party == []


def test_keyboard_alone_operates_a_toggle(context: Any, live: Live) -> None:
    _, token = live.people["bruno"]
    page = context.new_page()
    page.goto(live.base + "/settings")
    # the sign-in form by keyboard: the token field has focus, Enter submits
    expect(page.get_by_label("Access token")).to_be_focused()
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    page.wait_for_url(live.base + "/settings")
    target = "assistant_realtime"
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.setting || ''") == target:
            break
    else:
        pytest.fail("Tab never reached the assistant_realtime toggle")
    focused = page.evaluate(
        "(() => { const e = document.activeElement; const s = getComputedStyle(e);"
        " return {visible: e.matches(':focus-visible'), style: s.outlineStyle,"
        " width: parseFloat(s.outlineWidth), role: e.getAttribute('role')}; })()"
    )
    assert focused["role"] == "switch"
    assert focused["visible"] is True
    assert focused["style"] != "none" and focused["width"] >= 2
    switch = page.get_by_role("switch", name=REALTIME_LABEL)
    assert switch.get_attribute("aria-checked") == "true"
    page.keyboard.press("Space")
    expect(switch).to_have_attribute("aria-checked", "false", timeout=20_000)
    assert page.evaluate("document.activeElement.dataset.setting") == target  # focus stays on the toggle
    assert "is now Off" in page.locator("#receipt").inner_text()
    assert api_settings(live, token)[target]["value"] == "deny"


def test_a_failed_save_shows_an_error_and_the_real_state(
    context: Any, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = live.people["chloe"]
    page = context.new_page()
    sign_in(page, live, token)
    switch = page.get_by_role("switch", name=TRAINING_LABEL)
    assert switch.get_attribute("aria-checked") == "true"

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database is unavailable")

    monkeypatch.setattr(live.app.state.consent_writer, "change", broken)
    switch.click()
    alert = page.get_by_role("alert")
    alert.wait_for(timeout=20_000)
    assert "not saved" in alert.inner_text()
    assert switch.get_attribute("aria-checked") == "true"
    assert "Saved" not in page.locator("#status").inner_text()

    # the connection dropping is reported the same way, and shows nothing that was not recorded
    monkeypatch.undo()
    page.route(
        "**/settings", lambda route: route.abort() if route.request.method == "POST" else route.continue_()
    )
    switch.click()
    expect(page.locator("#error")).to_contain_text("connection failed", timeout=20_000)
    assert switch.get_attribute("aria-checked") == "true"
    page.unroute("**/settings")
    page.reload()
    assert page.get_by_role("switch", name=TRAINING_LABEL).get_attribute("aria-checked") == "true"
    assert api_settings(live, token)[TRAINING]["explicit"] is False


def test_a_wrong_or_expired_token_goes_to_sign_in(context: Any, live: Live) -> None:
    context.add_cookies([{"name": "consentry_token", "value": "cst_not-a-token", "url": live.base}])
    page = context.new_page()
    page.goto(live.base + "/settings")
    assert page.url.startswith(live.base + "/signin")
    assert "Sign in again" in page.locator("main").inner_text()
    page.get_by_label("Access token").fill("cst_still-wrong")
    page.get_by_role("button", name="Sign in").click()
    assert "not valid" in page.get_by_role("alert").inner_text()


def test_operator_sees_the_change_in_the_dashboard(context: Any, live: Live) -> None:
    _, dario = live.people["dario"]
    page = context.new_page()
    sign_in(page, live, live.admin, start="/dashboard")
    assert page.url == live.base + "/dashboard"

    def opted_out() -> int:
        cell = page.locator(
            f'#optouts tr[data-setting="{"assistant_training_posts"}"] td[data-col="explicit"]'
        )
        return int(cell.inner_text().replace(",", ""))

    before = opted_out()
    response = httpx.put(
        f"{live.base}/v1/me/settings",
        json={"settings": {TRAINING: "deny"}},
        headers={"Authorization": f"Bearer {dario}"},
    )
    assert response.status_code == 200
    page.reload()
    assert opted_out() == before + 1
    text = page.locator("main").inner_text()
    for heading in ("Consent over time", "Opt-outs now", "Policy versions", "Partners and revocations"):
        assert heading in text
    assert "Recent releases" in text and "Scraping leaderboard" in text
    assert page.locator("svg.chart").count() == 4
    assert "Example AI Labs" in text and "USD" in text
    overdue = page.locator("#partners-title + .table-scroll .pill-overdue")
    assert overdue.count() >= 1
    screenshot(page, "dashboard.png")


WIDER_THAN_THE_PAGE = """() => {
  const width = document.documentElement.clientWidth;
  return [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > width + 0.5 && !e.closest('.table-scroll'))
    .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
              + (typeof e.className === 'string' && e.className ? '.' + e.className : ''))
    .slice(0, 10);
}"""


def test_every_page_fits_a_phone_without_horizontal_scrolling(browser: Any, live: Live) -> None:
    """Issue 19 item 11: at 390 px wide the dashboard, the policy page and the settings page scroll only
    vertically; wide tables scroll inside their own box, and nothing touches the header's line."""
    _, token = live.people["emi"]
    pages = (
        (live.admin, "/dashboard", "dashboard-phone.png"),
        (token, "/settings", None),
        (None, "/policies/1", None),  # public
    )
    for who, path, shot in pages:
        context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
        page = context.new_page()
        try:
            if who is None:
                page.goto(live.base + path)
            else:
                sign_in(page, live, who, start=path)
            assert page.url == live.base + path
            wider = page.evaluate(WIDER_THAN_THE_PAGE)
            assert wider == [], f"{path}: {wider}"
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
            header = page.locator("header.topbar").bounding_box()
            first = page.locator("main > *:first-child").bounding_box()
            assert header is not None and first is not None
            assert first["y"] >= header["y"] + header["height"] + 8, path  # clear of the header's line
            if shot:
                screenshot(page, shot)
        finally:
            context.close()


def test_linked_accounts_and_one_choice_for_all_of_them_on_a_phone(browser: Any, live: Live) -> None:
    """Link two accounts from the page (asked from one, confirmed from the other), see a third's request,
    then switch a setting off for every linked account at once; a minor's account stays off."""
    from consentry.auth.service import create_token
    from consentry.links.service import import_links
    from consentry.social.service import create_account

    with live.database.write() as session:
        accounts = {
            handle: create_account(session, handle=handle, country=country, birth_year=year).id
            for handle, country, year in (
                ("gwen", "US", 1988),
                ("gwen_shop", "DE", 1988),
                ("gwen_teen", "US", utcnow().year - 15),
                ("gwen_old", "US", 1988),
            )
        }
        tokens = {
            handle: create_token(session, kind="account", account_id=account_id, client="web")
            for handle, account_id in accounts.items()
        }
        import_links(session, [(accounts["gwen"], accounts["gwen_teen"])])
    old = httpx.post(
        f"{live.base}/v1/me/links",
        headers={"Authorization": f"Bearer {tokens['gwen_old']}"},
        json={"account_id": accounts["gwen"]},
    )
    assert old.status_code == 201

    def phone() -> Any:
        return browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)

    first = phone()
    try:
        page = first.new_page()
        sign_in(page, live, tokens["gwen"])
        links = page.locator("#links")
        expect(links.locator(f"#link-{accounts['gwen_teen']}")).to_contain_text("Linked")
        expect(links.locator(f"#link-{accounts['gwen_old']}")).to_contain_text("Asks to link with you")
        # bad input: oneself, nobody; the page says why and nothing is stored
        page.get_by_label("Link another account you hold").fill("gwen")
        page.get_by_role("button", name="Ask to link").tap()
        expect(page.locator("#link-error")).to_contain_text("cannot be linked with itself")
        page.get_by_label("Link another account you hold").fill("nobody_at_all")
        page.get_by_role("button", name="Ask to link").tap()
        expect(page.locator("#link-error")).to_contain_text("no account @nobody_at_all")
        page.get_by_label("Link another account you hold").fill("@gwen_shop")
        page.get_by_role("button", name="Ask to link").tap()
        page.wait_for_url(live.base + "/settings#links")
        expect(page.locator(f"#link-{accounts['gwen_shop']}")).to_contain_text(
            "Waiting for @gwen_shop to confirm"
        )
        # the old account's request is declined
        page.get_by_role("button", name="Decline @gwen_old").tap()
        page.wait_for_url(live.base + "/settings#links")
        expect(page.locator(f"#link-{accounts['gwen_old']}")).to_have_count(0)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        first.close()

    second = phone()
    try:
        page = second.new_page()
        sign_in(page, live, tokens["gwen_shop"])
        page.get_by_role("button", name="Confirm the link with @gwen").tap()
        page.wait_for_url(live.base + "/settings#links")
        expect(page.locator(f"#link-{accounts['gwen']}")).to_contain_text("Linked")
    finally:
        second.close()

    third = phone()
    try:
        page = third.new_page()
        sign_in(page, live, tokens["gwen"])
        scope = page.locator("#scope")
        expect(scope).to_contain_text("@gwen_shop")
        expect(scope).to_contain_text("@gwen_teen")
        assert page.get_by_label("This account only").is_checked()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert page.evaluate(WIDER_THAN_THE_PAGE) == []
        page.get_by_label("This account and my 2 linked accounts").check()
        switch = page.get_by_role("switch", name=REALTIME_LABEL)
        assert switch.get_attribute("aria-checked") == "true"
        switch.tap()
        expect(switch).to_have_attribute("aria-checked", "false", timeout=20_000)
        expect(page.locator("#status")).to_contain_text("Recorded for 3 accounts", timeout=20_000)
        page.locator("#scope").scroll_into_view_if_needed()
        screenshot(page, "settings-linked-phone.png")
    finally:
        third.close()

    assert api_settings(live, tokens["gwen"])["assistant_realtime"]["value"] == "deny"
    shop = api_settings(live, tokens["gwen_shop"])
    assert (shop["assistant_realtime"]["value"], shop["assistant_realtime"]["basis"]) == ("deny", "explicit")
    assert shop["assistant_training_posts"]["value"] == "deny"  # EEA default, untouched
    teen = api_settings(live, tokens["gwen_teen"])
    assert teen["assistant_realtime"]["basis"] == "minor"
    assert api_settings(live, tokens["gwen_old"])["assistant_realtime"]["value"] == "allow"  # never linked
    history = httpx.get(
        f"{live.base}/v1/me/consent-history", headers={"Authorization": f"Bearer {tokens['gwen_shop']}"}
    ).json()["events"]
    assert len(history) == 1 and history[0]["chosen_by"]

    # the linked account's page says where the choice came from
    fourth = phone()
    try:
        page = fourth.new_page()
        sign_in(page, live, tokens["gwen_shop"])
        expect(page.locator("#history-list")).to_contain_text("From your linked account @gwen")
    finally:
        fourth.close()
