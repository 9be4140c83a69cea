"""The public status page in headless Chromium with JavaScript blocked (issue #14): a
reader without a session and without script sees each component, its state in words and
its daily uptime bars."""

from __future__ import annotations

from typing import Any

from tests.e2e.browser.conftest import screenshot
from tests.e2e.browser.site import Site, wait_until


def test_the_status_page_reads_without_javascript(
    browser_without_javascript: Any, site: Site
) -> None:
    from selenium.webdriver.common.by import By

    browser = browser_without_javascript
    site.firing_alert("payments-up")  # the payments component is down

    def component_states() -> dict[str, str] | None:
        browser.get(site.base + "/status")
        states = {
            element.get_attribute("id"): element.find_element(By.CSS_SELECTOR, "h3 .st").text
            for element in browser.find_elements(By.CSS_SELECTOR, "div.c[id^='component-']")
        }
        # Right after the daemon starts a component may have no result yet.
        return states if "Unknown" not in states.values() else None

    states = wait_until(browser, component_states, "every component to have a state")
    assert states == {
        "component-Website": "Operational",
        "component-Payments": "Outage",
        "component-Servers": "Operational",
    }
    assert browser.find_element(By.TAG_NAME, "h1").text == "Example Shop status"
    assert browser.find_element(By.CSS_SELECTOR, ".banner").text == "Some systems are down"
    for component in ("Website", "Payments", "Servers"):
        bars = browser.find_element(By.CSS_SELECTOR, f"#component-{component} .bars")
        assert bars.get_attribute("role") == "img"
        assert bars.get_attribute("aria-label").startswith(f"{component}: ")
        days = bars.find_elements(By.TAG_NAME, "i")
        assert days and all(day.size["height"] > 0 for day in days)
    today = browser.find_elements(By.CSS_SELECTOR, "#component-Payments .bars i")[-1]
    assert "major" in today.get_attribute("class").split()
    # Nothing on the page needs script: no script element and no inline handler.
    assert browser.find_elements(By.TAG_NAME, "script") == []
    handlers = browser.find_elements(
        By.XPATH, "//*[@*[starts-with(name(), 'on')]] | //a[starts-with(@href, 'javascript:')]"
    )
    assert handlers == []
    screenshot(browser, "status-page")
