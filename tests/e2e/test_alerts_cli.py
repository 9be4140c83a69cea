"""Alerts from the CLI as an operator drives them: check, alerts, ack, silence."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.e2e.conftest import Upkeep


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(port: int) -> str:
    return f"""\
timezone: Europe/Berlin
targets:
  api: {{kind: tcp, host: 127.0.0.1, port: {port}, labels: {{env: prod}}}}
checks:
  api-up: {{target: api, severity: P2, timeout: 2s}}
"""


def test_a_failing_check_opens_an_alert_that_can_be_acknowledged_and_silenced(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    (tmp_path / "upkeep.yaml").write_text(_config(_closed_port()))
    checked = upkeep("check")
    assert checked.returncode == 2, checked.stderr

    listed = upkeep("alerts", "--json")
    assert listed.returncode == 0, listed.stderr
    alerts = json.loads(listed.stdout)["alerts"]
    assert [(a["check"], a["state"], a["severity"], a["status"]) for a in alerts] == [
        ("api-up", "firing", "P2", "critical")
    ]
    alert_id = alerts[0]["id"]
    table = upkeep("alerts")
    assert "api-up" in table.stdout and "due in" in table.stdout  # P2: 1h response target

    acked = upkeep("ack", str(alert_id), "--for", "2h", "--comment", "on it", "--author", "alice")
    assert acked.returncode == 0, acked.stderr
    assert f"alert #{alert_id} (api-up) acknowledged by alice until" in acked.stdout
    again = json.loads(upkeep("alerts", "--json").stdout)["alerts"][0]
    assert again["acked_by"] == "alice" and again["ack_comment"] == "on it"
    assert upkeep("ack", "999").returncode == 2
    zero = upkeep("ack", str(alert_id), "--for", "0s")
    assert zero.returncode == 2 and "longer than 0s" in zero.stderr

    added = upkeep("silence", "add", "--match", "env=prod", "--for", "2h", "--comment", "deploy")
    assert added.returncode == 0, added.stderr
    assert "silence 1 (env=prod)" in added.stdout
    silences = json.loads(upkeep("silence", "list", "--json").stdout)["silences"]
    assert [(s["id"], s["matchers"], s["active"]) for s in silences] == [(1, {"env": "prod"}, True)]
    assert upkeep("silence", "add", "--match", "oops", "--for", "1h").returncode == 2
    assert upkeep("silence", "remove", "1").returncode == 0
    assert upkeep("silence", "remove", "1").returncode == 2
    assert json.loads(upkeep("silence", "list", "--json").stdout)["silences"] == []

    # The incident shows its timeline: opened, firing, acknowledged.
    shown = upkeep("incidents", "show", str(alert_id), "--json")
    assert shown.returncode == 0, shown.stderr
    kinds = [event["kind"] for event in json.loads(shown.stdout)["timeline"]]
    assert kinds[:3] == ["opened", "firing", "acknowledged"]
