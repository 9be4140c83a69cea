"""Heartbeats end to end: a real ``upkeep serve`` and the real ``upkeep ping``.

A job that stops pinging raises an alert once its period and grace have passed, and a
ping resolves it; a failure ping alerts within seconds (the ping runs the check at once,
though the check's own interval is an hour); ``upkeep ping ID -- COMMAND`` sends a start
and the command's exit code with its output and exits with the command's code; and the
id, the credential, is never printed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import Upkeep
from tests.e2e.test_serve_api import (  # noqa: F401 - `start` is a fixture
    Daemon,
    StartServe,
    free_port,
    start,
    wait_for,
)
from upkeep.store.pings import PingKind, heartbeat_digest
from upkeep.store.store import Store

TOKEN = "t0ken-for-the-api-7f3a"
QUICK = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
HOURLY = "hourly-job-heartbeat-id-0123456789"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "heartbeats" / "nightly-backup.yaml"


def write_config(tmp_path: Path) -> Path:
    document: dict[str, Any] = {
        "store": f"sqlite:///{tmp_path / 'store.db'}",
        "engine": {"takeover_interval": "1s", "api_tokens": {"ops": TOKEN}},
        "targets": {
            # Long enough for the first pings (a CLI start each) to come before it is late:
            # late, then down, then up again is one outage, not flapping.
            "quick": {"kind": "heartbeat", "id": QUICK, "period": "6s", "grace": "1s"},
            "hourly": {"kind": "heartbeat", "id": HOURLY, "period": "1h"},
        },
        "checks": {
            "quick": {"target": "quick", "every": "1s"},
            # An hour between runs: only a ping's own run can alert on it within seconds.
            "hourly": {"target": "hourly", "every": "1h"},
        },
    }
    path = tmp_path / "upkeep.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def open_alerts(daemon: Daemon) -> dict[str, dict[str, Any]]:
    status, alerts = daemon.api("GET", "/api/alerts", TOKEN)
    assert status == 200, alerts
    return {alert["check"]: alert for alert in alerts if alert["state"] == "firing"}


def test_a_missed_heartbeat_alerts_and_a_ping_resolves_it(
    upkeep: Upkeep,
    tmp_path: Path,
    start: StartServe,  # noqa: F811 - the fixture imported above
) -> None:
    daemon = start(write_config(tmp_path))
    url = f"http://127.0.0.1:{daemon.port}"
    # The first signal at once (a CLI's start takes a second, more on a busy machine).
    assert daemon.request("POST", f"/ping/{QUICK}/start", body=b"") == (200, "OK")
    log = tmp_path / "job.log"
    log.write_text("x" * 20_000 + "\nall 42 tables dumped\n", encoding="utf-8")
    pinged = upkeep("ping", QUICK, "--url", url, "--data-file", str(log))
    assert (pinged.returncode, pinged.stdout, pinged.stderr) == (0, "", "")
    assert "quick" not in open_alerts(daemon)
    # Late (a warning) for the grace, then down (critical).
    alert = wait_for(
        lambda: (
            (found := open_alerts(daemon).get("quick")) and found["status"] == "critical" and found
        ),
        20,
        "the missed heartbeat's critical alert",
    )
    assert "late (grace 1s)" in alert["message"]
    assert QUICK not in daemon.log()
    again = upkeep("ping", QUICK, "--url", url)
    assert again.returncode == 0, again.stderr
    wait_for(lambda: "quick" not in open_alerts(daemon), 10, "the alert to resolve")
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        pings = store.pings.recent(heartbeat_digest(QUICK))
    finally:
        store.close()
    assert [ping.kind for ping in pings] == [PingKind.SUCCESS, PingKind.SUCCESS, PingKind.START]
    assert pings[1].body.endswith("\nall 42 tables dumped\n") and len(pings[1].body) == 10 * 1024
    # The store keeps the id's digest only: the credential is in no byte of it.
    for part in tmp_path.glob("store.db*"):
        assert QUICK.encode() not in part.read_bytes(), part


def test_a_failure_ping_alerts_at_once_and_the_wrapper_reports_the_command(
    upkeep: Upkeep,
    tmp_path: Path,
    start: StartServe,  # noqa: F811 - the fixture imported above
) -> None:
    config = write_config(tmp_path)
    daemon = start(config)
    url = f"http://127.0.0.1:{daemon.port}"
    ok = upkeep("ping", HOURLY, "--url", url)
    assert ok.returncode == 0, ok.stderr
    failed = upkeep("ping", HOURLY, "--exit-code", "3", "--url", url)
    assert failed.returncode == 0, failed.stderr
    alert = wait_for(lambda: open_alerts(daemon).get("hourly"), 8, "the failure's alert")
    assert "failed with exit code 3" in alert["message"]
    # The wrapper: a start, the command (its output passed through), its exit code with
    # the end of its output; upkeep exits with the command's code. The address comes from
    # the config's engine.listen when --url is not given.
    job = "import sys; print('dumped 42 tables'); print('disk nearly full', file=sys.stderr); sys.exit(4)"
    document = yaml.safe_load(config.read_text())
    document["engine"]["listen"] = f"127.0.0.1:{daemon.port}"
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    wrapped = upkeep("ping", "-c", str(config), HOURLY, "--", sys.executable, "-c", job)
    assert wrapped.returncode == 4, wrapped.stderr
    assert wrapped.stdout == "dumped 42 tables\n" and "disk nearly full" in wrapped.stderr
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        pings = store.pings.recent(heartbeat_digest(HOURLY), limit=2)
    finally:
        store.close()
    assert [(ping.kind, ping.exit_code) for ping in pings] == [
        (PingKind.FAIL, 4),
        (PingKind.START, None),
    ]
    assert pings[0].body == "dumped 42 tables\n\n--- stderr ---\ndisk nearly full\n"
    mended = upkeep("ping", "--url", url, HOURLY, "--", sys.executable, "-c", "print('ok')")
    assert (mended.returncode, mended.stdout) == (0, "ok\n")
    # (Whether the alert resolves now is the flapping rule's call after ok, failed, ok,
    # failed within seconds; resolving is shown in the test above.)


def test_ping_refusals_and_failures_never_print_the_id(upkeep: Upkeep, tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = upkeep("ping", QUICK, "--url", nobody, "--retries", "0")
    assert unreachable.returncode == 1
    assert "/ping/***" in unreachable.stderr and QUICK not in unreachable.stderr
    assert upkeep("ping", "short-id", "--url", nobody).returncode == 2
    nowhere = upkeep("ping", QUICK)  # no --url and no config to find the daemon in
    assert nowhere.returncode == 2 and "--url" in nowhere.stderr
    both = upkeep("ping", QUICK, "--start", "--fail", "--url", nobody)
    assert both.returncode == 2 and "one of" in both.stderr
    code = upkeep("ping", QUICK, "--exit-code", "256", "--url", nobody)
    assert code.returncode == 2
    missing = upkeep("ping", QUICK, "--url", nobody, "--retries", "0", "--", "/nonexistent/job")
    assert missing.returncode == 127 and QUICK not in missing.stderr


def test_an_unknown_id_is_refused_at_once(
    upkeep: Upkeep,
    tmp_path: Path,
    start: StartServe,  # noqa: F811 - the fixture imported above
) -> None:
    daemon = start(write_config(tmp_path))
    stranger = upkeep("ping", "x" * 30, "--url", f"http://127.0.0.1:{daemon.port}")
    assert stranger.returncode == 1 and "HTTP 404" in stranger.stderr


def test_the_example_validates(upkeep: Upkeep) -> None:
    checked = upkeep("validate", "-c", str(EXAMPLE), env={"NIGHTLY_BACKUP_HEARTBEAT": QUICK})
    assert checked.returncode == 0, checked.stdout + checked.stderr
