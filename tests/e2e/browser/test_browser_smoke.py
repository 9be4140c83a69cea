"""The browser harness itself: Chromium starts, loads a page upkeep serves, and obeys
the JavaScript switch (the status page's no-JS test relies on it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.browser.conftest import screenshot
from tests.e2e.test_serve_api import StartServe, start, write_config

__all__ = ["start"]  # the daemon fixture, shared with the API tests


def test_chromium_reads_what_upkeep_serve_answers(
    browser: Any, tmp_path: Path, start: StartServe
) -> None:
    daemon = start(write_config(tmp_path / "upkeep.yaml"))
    browser.get(f"http://127.0.0.1:{daemon.port}/healthz")
    assert '"status":"ok"' in browser.page_source.replace(" ", "")
    assert browser.execute_script("return 6 * 7") == 42
    assert screenshot(browser, "smoke-healthz").stat().st_size > 0
