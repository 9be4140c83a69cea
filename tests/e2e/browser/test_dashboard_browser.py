"""The dashboard in headless Chromium against a real ``upkeep serve`` (issue #14).

A user made with ``upkeep user add`` signs in with the form; a check that turns critical
shows red on the open overview within 2 s of its stored result, without a reload; an
alert is acknowledged and a waiting run approved from their pages, recorded as done by
the signed-in user, while a viewer's attempt changes nothing; the overview works from the
keyboard and at a phone's width. Each step leaves a screenshot in
``tests/artefacts/screenshots/``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from tests.e2e.browser.conftest import screenshot
from tests.e2e.browser.site import PASSWORD, Site, sign_in, wait_until

logger = logging.getLogger(__name__)
LIVE_BUDGET_MS = 2000
"""The issue's promise: red on an open page within 2 s of the critical result."""


def by(kind: str) -> Any:
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


def row_of(driver: Any, check: str) -> Any:
    """The overview's table row of ``check``."""
    return driver.find_element(by("XPATH"), f"//table[@class='checks']//tr[th/a[.='{check}']]")


def header_text(driver: Any) -> str:
    return str(driver.find_element(by("CSS_SELECTOR"), "header .account").text)


# --- signing in ------------------------------------------------------------------------------


def test_signing_in_lands_on_the_overview_and_a_wrong_password_opens_no_session(
    browser: Any, site: Site
) -> None:
    browser.get(site.base + "/")
    assert "/login?next=%2F" in browser.current_url
    browser.find_element(by("ID"), "username").send_keys("ann")
    browser.find_element(by("ID"), "password").send_keys("not the password")
    browser.find_element(by("CSS_SELECTOR"), "form[action='/login'] button").click()
    error = wait_until(
        browser, lambda: browser.find_elements(by("ID"), "login-error"), "the sign-in error"
    )[0]
    assert error.get_attribute("role") == "alert" and error.text
    assert "upkeep_session" not in {cookie["name"] for cookie in browser.get_cookies()}
    # The name stays filled in, the password does not.
    assert browser.find_element(by("ID"), "username").get_attribute("value") == "ann"
    assert browser.find_element(by("ID"), "password").get_attribute("value") == ""
    screenshot(browser, "login-wrong-password")

    browser.find_element(by("ID"), "password").send_keys(PASSWORD)
    browser.find_element(by("CSS_SELECTOR"), "form[action='/login'] button").click()
    wait_until(browser, lambda: browser.current_url == site.base + "/", "the overview")
    assert browser.find_element(by("TAG_NAME"), "h1").text == "Overview"
    assert "ann (admin)" in header_text(browser)
    assert "upkeep_session" in {cookie["name"] for cookie in browser.get_cookies()}
    for check in ("shop-up", "payments-up", "home-page", "server-uptime"):
        assert row_of(browser, check).is_displayed()
    wait_until(
        browser,
        lambda: row_of(browser, "home-page").get_attribute("class").startswith("r-ok"),
        "home-page to show ok",
    )
    screenshot(browser, "overview")


# --- a check turns red live ------------------------------------------------------------------

WATCH_ROW = """
const row = arguments[0];
window.upkeepMarker = "still the same page";
window.upkeepRedAt = null;
const observer = new MutationObserver(() => {
  if (window.upkeepRedAt === null && row.className.split(" ")[0] === "r-critical") {
    window.upkeepRedAt = Date.now();
    observer.disconnect();
  }
});
observer.observe(row, {attributes: true, childList: true, subtree: true, characterData: true});
"""


def test_a_check_turning_critical_shows_red_on_the_open_page_within_2_s(
    browser: Any, site: Site
) -> None:
    flag = site.flag("shop")
    flag.unlink(missing_ok=True)
    sign_in(browser, site, "ann")

    def shows_ok() -> bool:
        # Before its first result the row says "none"; a reload (before the watch starts)
        # shows the newest state.
        if row_of(browser, "shop-up").get_attribute("class").startswith("r-ok"):
            return True
        browser.refresh()
        return False

    wait_until(browser, shows_ok, "shop-up to show ok")
    row = row_of(browser, "shop-up")
    browser.execute_script(WATCH_ROW, row)
    flag.touch()

    red_at_ms = wait_until(
        browser, lambda: browser.execute_script("return window.upkeepRedAt"), "the row to turn red"
    )
    assert browser.execute_script("return window.upkeepMarker") == "still the same page"
    cells = row.find_elements(by("TAG_NAME"), "td")
    # "changed" (the flash) is there until the next poll: only the status class is sure.
    assert row.get_attribute("class").split()[0] == "r-critical"
    assert cells[0].text.strip() == "critical"  # the word, not only a colour
    icon = browser.execute_script(
        "return getComputedStyle(arguments[0], '::before').content", cells[0]
    )
    assert "\u2716" in icon  # the heavy multiplication x of the critical status
    assert "flag present" in cells[2].text
    # The group's health and counts, and the page's summary, follow the row.
    web = browser.find_element(by("XPATH"), "//section[h2[starts-with(., 'service: web')]]")
    assert web.find_element(by("CLASS_NAME"), "health").text == "health 50.000%"
    assert web.find_element(by("CLASS_NAME"), "counts").text == "1 ok 1 critical"
    summary = browser.find_element(by("CSS_SELECTOR"), "p.summary").text
    assert "critical 2" in summary, summary  # payments-up and shop-up

    history = site.history("shop-up")
    last_ok = max(i for i, result in enumerate(history) if result["status"] == "ok")
    first_critical = history[last_ok + 1]
    assert first_critical["status"] == "critical"
    stored_ms = datetime.fromisoformat(first_critical["at"]).timestamp() * 1000
    # Both times are this machine's clock: the daemon stamps results with it, and so does
    # Chromium's Date.now().
    delay_ms = red_at_ms - stored_ms
    logger.info("shop-up: red on the page %.0f ms after its critical result", delay_ms)
    assert 0 <= delay_ms <= LIVE_BUDGET_MS, delay_ms
    # The row flashes for 2 s when it changes; the screenshot shows it after the flash.
    browser.execute_script("document.getAnimations().forEach((a) => a.finish())")
    screenshot(browser, "check-turned-red")


# --- acknowledging an alert ------------------------------------------------------------------


def test_an_alert_acknowledged_from_its_page_is_recorded_as_the_user(
    browser: Any, site: Site
) -> None:
    alert = site.firing_alert("payments-up")
    assert alert["acked_by"] is None
    sign_in(browser, site, "ann", path="/alerts")
    row = browser.find_element(by("XPATH"), f"//a[@href='/alerts/{alert['id']}']")
    row.click()
    wait_until(browser, lambda: browser.current_url.endswith(f"/alerts/{alert['id']}"), "alert")
    form = browser.find_element(by("CSS_SELECTOR"), "form[data-url$='/ack']")
    form.find_element(by("NAME"), "for").send_keys("2h")
    form.find_element(by("NAME"), "comment").send_keys("looking at the card processor")
    before = time.time()
    form.find_element(by("CSS_SELECTOR"), "button[type=submit]").click()

    def acknowledged_row() -> Any:
        # The page reloads after the change; the facts table then names who acknowledged.
        for cell in browser.find_elements(by("XPATH"), "//tr[th='Acknowledged']/td"):
            if "user:ann" in cell.text:
                return cell
        return None

    cell = wait_until(browser, acknowledged_row, "the page to show the acknowledgement")
    assert "looking at the card processor" in cell.text and "until" in cell.text
    stored = site.api("GET", f"/api/alerts/{alert['id']}")
    assert stored["acked_by"] == "user:ann"
    assert stored["ack_comment"] == "looking at the card processor"
    expires = datetime.fromisoformat(stored["ack_expires_at"]).timestamp()
    assert abs(expires - (before + 7200)) < 60
    timeline = browser.find_element(by("CSS_SELECTOR"), "ol.timeline").text
    assert "by user:ann" in timeline
    screenshot(browser, "alert-acknowledged")


# --- approving a waiting run -----------------------------------------------------------------


def started_run(site: Site) -> int:
    """Start the ``deploy`` runbook with the config token; return its id once it waits."""
    run_id = int(site.api("POST", "/api/runbooks/deploy/run", {})["run_id"])

    def waiting() -> bool:
        return bool(site.api("GET", f"/api/runs/{run_id}")["status"] == "waiting")

    wait_until(None, waiting, f"run #{run_id} to wait for approval")
    return run_id


def test_a_waiting_run_approved_in_the_browser_runs_on_as_approved_by_the_user(
    browser: Any, site: Site
) -> None:
    run_id = started_run(site)
    sign_in(browser, site, "ann", path=f"/runs/{run_id}")
    assert "waiting" in browser.find_element(by("CSS_SELECTOR"), ".run-status").text
    screenshot(browser, "run-waiting")
    browser.find_element(
        by("XPATH"), "//form[contains(@class,'decide')]//button[.='Approve']"
    ).click()

    def finished() -> dict[str, Any] | None:
        run = site.api("GET", f"/api/runs/{run_id}")
        return dict(run) if run["finished_at"] else None

    run = wait_until(browser, finished, f"run #{run_id} to finish")
    assert run["status"] == "succeeded", run
    approval, roll_out = run["steps"]
    assert (approval["decision"], approval["decided_by"]) == ("approved", "user:ann")
    assert roll_out["status"] == "ok" and "rolled out" in roll_out["output"]
    wait_until(
        browser,
        lambda: "succeeded" in browser.find_element(by("CSS_SELECTOR"), ".run-status").text,
        "the page to show the run succeeded",
    )
    assert "approved by user:ann" in browser.find_element(by("ID"), "step-1").text
    screenshot(browser, "run-approved")


APPROVE_AS_THE_PAGE = """
const done = arguments[arguments.length - 1];
fetch("/api/runs/" + arguments[0] + "/approve", {
  method: "POST",
  credentials: "same-origin",
  headers: {
    "Content-Type": "application/json",
    "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content,
  },
  body: "{}",
}).then((response) => response.json().then((body) => done([response.status, body.detail])));
"""


def test_a_viewer_is_offered_no_approval_nor_acknowledgement_and_the_api_refuses_one(
    browser: Any, site: Site
) -> None:
    run_id = started_run(site)
    sign_in(browser, site, "vera", path=f"/runs/{run_id}")
    assert "vera (viewer)" in header_text(browser)
    assert browser.find_elements(by("XPATH"), "//button[.='Approve' or .='Reject']") == []
    note = browser.find_element(by("CSS_SELECTOR"), "p.decide").text
    assert "needs the approve scope" in note and "viewer" in note
    screenshot(browser, "run-viewer")
    # What the button would have sent, from the viewer's page with their session.
    status, detail = browser.execute_async_script(APPROVE_AS_THE_PAGE, run_id)
    assert status == 403 and "'approve' scope" in detail
    time.sleep(1)  # long enough for a wrongly accepted approval to have run the step
    run = site.api("GET", f"/api/runs/{run_id}")
    assert run["status"] == "waiting" and run["steps"][0]["decided_by"] is None
    site.api("POST", f"/api/runs/{run_id}/reject", {"comment": "cleaning up after the test"})

    # Nor acknowledging: the alerts page offers a viewer the list, not the form.
    alert = site.firing_alert("payments-up")
    browser.get(f"{site.base}/alerts/{alert['id']}")
    assert browser.find_elements(by("XPATH"), "//button[.='Acknowledge']") == []
    assert "needs the ack scope" in browser.find_element(by("TAG_NAME"), "main").text


# --- keyboard and phone ----------------------------------------------------------------------


def test_the_overview_works_from_the_keyboard_and_at_a_phone_width(
    browser: Any, site: Site
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    sign_in(browser, site, "ann")
    active = "return document.activeElement"
    ActionChains(browser).send_keys(Keys.TAB).perform()
    skip = browser.execute_script(active)
    assert skip.text == "Skip to content" and skip.get_attribute("href").endswith("#main")
    assert skip.is_displayed()  # shown once focused
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    ActionChains(browser).send_keys(Keys.TAB).perform()
    first = browser.execute_script(active)
    # After the skip link, the next stop is the page's first control, inside <main>.
    assert browser.execute_script("return arguments[0].closest('main') !== null", first)
    assert first.tag_name in {"a", "button", "input", "select", "textarea"}

    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 375, "height": 812, "deviceScaleFactor": 1, "mobile": True},
    )
    browser.refresh()
    wait_until(browser, lambda: browser.find_elements(by("ID"), "checks"), "the overview")
    width = browser.execute_script("return window.innerWidth")
    assert width == 375
    scroll_width = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll_width <= width, scroll_width
    assert row_of(browser, "shop-up").is_displayed()
    screenshot(browser, "overview-phone")
