"""The dashboard's buttons in a real browser against a real ``upkeep serve``: what the
script reads from an API answer is what the API sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.browser.conftest import screenshot
from tests.e2e.test_accounts_serve import PASSWORD, add_user
from tests.e2e.test_serve_api import StartServe, start, write_config

__all__ = ["start"]  # the daemon fixture, shared with the API tests


def test_a_dry_run_button_links_to_the_run_it_started(
    browser: Any, tmp_path: Path, start: StartServe
) -> None:
    config = write_config(tmp_path / "upkeep.yaml")
    document = yaml.safe_load(config.read_text())
    document["runbooks"] = {"tidy": {"steps": [{"manual": "Look at the disk"}]}}
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    add_user(tmp_path, "otto", "operator")
    daemon = start(config)
    base = f"http://127.0.0.1:{daemon.port}"
    browser.get(f"{base}/login?next=/runbooks")
    browser.find_element(By.NAME, "username").send_keys("otto")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    WebDriverWait(browser, 10).until(lambda driver: driver.current_url.endswith("/runbooks"))
    browser.find_element(By.CSS_SELECTOR, "button.act.dry").click()
    link = WebDriverWait(browser, 10).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, ".runbook .result a")
    )[0]
    screenshot(browser, "dashboard-dry-run-started")
    assert link.text.strip().startswith("Open run #")
    assert "/runs/" in (link.get_attribute("href") or "")
    # Run now is offered once the dry run started.
    assert browser.find_element(By.CSS_SELECTOR, "button.act.wet").is_enabled()
