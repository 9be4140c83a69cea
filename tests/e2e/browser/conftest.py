"""A real browser for the web UI: Debian's Chromium, headless, driven by its ChromeDriver.

``scripts/ensure-services.sh`` (run by ``make test``) installs ``chromium`` and
``chromium-driver``. Without them the browser tests are skipped on a developer's machine
and fail under CI (``CI=true``), like every other missing real peer.

Screenshots are written to ``tests/artefacts/screenshots/`` (kept out of git): one per
step a test names, and one of the page as it was whenever a browser test fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTEFACTS = Path(__file__).resolve().parents[2] / "artefacts" / "screenshots"
_PROFILES: dict[int, str] = {}
"""Each open session's profile directory, removed when it closes."""
PAGE_LOAD_TIMEOUT_S = 20
"""How long a page may take to load before the test fails."""

# The flags this machine needs: its network is closed, so Chromium's background
# connections (updates, sync, field trials) are turned off instead of failing by the dozen.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the tests run as root in a container
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--window-size=1280,900",
)


def _require_browser() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    message = f"{CHROMIUM} and {CHROMEDRIVER} are needed (make services installs them)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def new_browser(*, javascript: bool = True, width: int = 1280, height: int = 900) -> Any:
    """Return a new headless Chromium session with an empty profile of its own; with
    ``javascript`` false, scripts are blocked (what a status-page reader without JS sees)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    _require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    profile = tempfile.mkdtemp(prefix="upkeep-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    # An explicit driver path: Selenium Manager (which would try to download one) never runs.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    _PROFILES[id(driver)] = profile
    return driver


def close_browser(driver: Any) -> None:
    """Quit a session from ``new_browser`` and remove its profile."""
    try:
        driver.quit()
    finally:
        profile = _PROFILES.pop(id(driver), None)
        if profile is not None:
            shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: Any, name: str) -> Path:
    """Save what the browser shows as ``tests/artefacts/screenshots/<name>.png``; return
    the path."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep a screenshot of every open browser of a failed browser test."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    for index, driver in enumerate(getattr(item, "upkeep_browsers", [])):
        try:
            screenshot(driver, f"FAILED-{item.name}-{index}")
        except Exception:  # noqa: BLE001, S112 - a dead browser has nothing to show
            continue


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A headless Chromium with JavaScript on, closed after the test."""
    driver = new_browser()
    request.node.upkeep_browsers = [*getattr(request.node, "upkeep_browsers", []), driver]
    yield driver
    close_browser(driver)


@pytest.fixture
def browser_without_javascript(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A headless Chromium with JavaScript blocked, closed after the test."""
    driver = new_browser(javascript=False)
    request.node.upkeep_browsers = [*getattr(request.node, "upkeep_browsers", []), driver]
    yield driver
    close_browser(driver)


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ``upkeep serve`` of ``tests/e2e/browser/site.py`` shared by the browser tests
    (a ``Site``): started on first use, killed after the last test of this package."""
    from tests.e2e.browser.site import start_site

    _require_browser()  # no daemon for tests that will be skipped
    yield from start_site(tmp_path_factory.mktemp("site"))
