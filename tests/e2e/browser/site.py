"""One real ``upkeep serve`` for the browser tests, and what they do in it.

The site is a config with a few checks (two of them ``command`` checks that go critical
while a flag file exists), a runbook that waits on an approval, a public status page, two
users made with ``upkeep user add`` (``ann``, admin; ``vera``, viewer) and a config token
for the API calls a test makes to arrange or verify what the browser did. The daemon runs
with a real SQLite store on a free loopback port, one per test module (starting it and
Chromium is most of a browser test's time).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_serve_api import (
    SERVE,
    START_TIMEOUT_S,
    Daemon,
    environment,
    free_port,
    wait_for,
)

TOKEN = "browser-tests-config-token-5d1c"
PASSWORD = "a long enough password"
WAIT_S = 15.0
"""How long a test waits for something the daemon does on its own (a result, an alert)."""


def _flag_command(flag: Path, name: str) -> list[str]:
    """A Nagios-style plugin: critical while ``flag`` exists, ok otherwise."""
    script = (
        'if [ -e "$1" ]; then echo "CRITICAL - $2 is down (flag present)"; exit 2; fi; '
        'echo "OK - $2 answers"'
    )
    return ["sh", "-c", script, "plugin", str(flag), name]


def site_config(directory: Path) -> dict[str, Any]:
    """Return the config document of the test site, its files under ``directory``."""
    return {
        "store": f"sqlite:///{directory / 'store.db'}",
        "engine": {"takeover_interval": "1s", "api_tokens": {"ops": TOKEN}},
        "targets": {
            "server": {"kind": "host", "labels": {"service": "host"}},
            "shop": {
                "kind": "command",
                "command": _flag_command(directory / "shop.flag", "shop"),
                "labels": {"service": "web"},
            },
            "payments": {
                "kind": "command",
                "command": _flag_command(directory / "payments.flag", "payments"),
                "labels": {"service": "payments"},
            },
            "home": {
                "kind": "command",
                "command": ["sh", "-c", "echo 'OK - 200 in 12 ms'"],
                "labels": {"service": "web"},
            },
        },
        "checks": {
            "shop-up": {"target": "shop", "every": "1s", "severity": "P1"},
            "payments-up": {"target": "payments", "every": "1s", "severity": "P2"},
            "home-page": {"target": "home", "every": "2s"},
            "server-uptime": {"target": "server", "probe": "uptime", "every": "10s"},
        },
        "runbooks": {
            "deploy": {
                "description": "Roll out the shop after a person approves",
                "steps": [
                    {"approval": "Deploy the shop now?"},
                    {"name": "roll out", "command": ["sh", "-c", "echo rolled out"]},
                ],
            }
        },
        "status_page": {
            "enabled": True,
            "title": "Example Shop status",
            "description": "What our customers see",
            "components": [
                {"name": "Website", "description": "the home page", "checks": ["home-page"]},
                {"name": "Payments", "checks": ["payments-up"]},
                {"name": "Servers", "labels": {"service": "host"}},
            ],
        },
    }


@dataclass
class Site:
    """The running daemon and the files that steer its checks."""

    daemon: Daemon
    directory: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.daemon.port}"

    def flag(self, target: str) -> Path:
        """The file whose presence makes ``target``'s check critical."""
        return self.directory / f"{target}.flag"

    def api(self, method: str, path: str, document: Any = None) -> Any:
        """Call the API with the config token; return the answer, failing on an error."""
        status, answer = self.daemon.api(method, path, TOKEN, document)
        assert 200 <= status < 300, (method, path, status, answer)
        return answer

    def history(self, check: str) -> list[dict[str, Any]]:
        """The check's stored results, oldest first."""
        found = self.api("GET", f"/api/checks/{check}/history?since=1h")["results"]
        return sorted(found, key=lambda result: datetime.fromisoformat(result["at"]))

    def firing_alert(self, check: str) -> dict[str, Any]:
        """Wait for the firing alert of ``check``; return it."""

        def firing() -> dict[str, Any] | None:
            for alert in self.api("GET", "/api/alerts"):
                if alert["check"] == check and alert["state"] == "firing":
                    return dict(alert)
            return None

        return dict(wait_for(firing, WAIT_S, f"a firing alert of {check}"))


def add_user(directory: Path, name: str, role: str) -> None:
    """Make a user with the real CLI, as an operator would."""
    added = subprocess.run(
        [*SERVE[:-1], "user", "add", name, "--role", role, "--password-stdin"],
        cwd=directory, env=environment(), input=PASSWORD + "\n", capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


def start_site(directory: Path) -> Iterator[Site]:
    """Write the config, add the users, start ``upkeep serve``; yield the site; kill it."""
    config = directory / "upkeep.yaml"
    config.write_text(yaml.safe_dump(site_config(directory)), encoding="utf-8")
    # Payments are down from the start: its alert fires before a test looks for it.
    (directory / "payments.flag").touch()
    add_user(directory, "ann", "admin")
    add_user(directory, "vera", "viewer")
    port = free_port()
    log_path = directory / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*SERVE, "-c", str(config), "--listen", f"127.0.0.1:{port}"],
            cwd=directory, env=environment(), stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        daemon = Daemon(process, port, log_path, log_file)
        try:

            def up() -> bool:
                if process.poll() is not None:
                    pytest.fail(f"upkeep serve exited {process.returncode}:\n{daemon.log()}")
                return daemon.healthy()

            wait_for(up, START_TIMEOUT_S, "/healthz")
            yield Site(daemon, directory)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def sign_in(driver: Any, site: Site, name: str, *, path: str = "/") -> None:
    """Open ``path`` signed out (the site sends the browser to /login), sign in as
    ``name`` with the form, and wait until the browser is back on ``path``."""
    from selenium.webdriver.common.by import By

    driver.get(site.base + path)
    assert "/login" in driver.current_url, driver.current_url
    driver.find_element(By.ID, "username").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    wait_until(driver, lambda: "/login" not in driver.current_url, "leaving /login")


def wait_until(driver: Any, condition: Any, what: str, timeout: float = WAIT_S) -> Any:
    """Poll ``condition`` every 50 ms until it is true; return its value, or fail (naming
    the page the browser ``driver`` shows, if one is given).

    An element that goes away while the condition reads it (the page reloads after a
    change, or the live poll replaces it) only means "not yet": the condition runs again.
    """
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    last_error: WebDriverException | None = None
    while True:
        try:
            value = condition()
        except WebDriverException as error:
            value, last_error = None, error
        if value:
            return value
        if time.monotonic() > deadline:
            where = f" on {driver.current_url}" if driver is not None else ""
            also = f" (last: {last_error.msg})" if last_error is not None else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{where}{also}")
        time.sleep(0.05)
