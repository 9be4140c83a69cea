"""The whole API against a real ``upkeep serve`` over a real socket: checks run now are
recorded and alerted on by the daemon's pipeline, a runbook started through the API runs
in the leading daemon as the caller, and Swagger UI and the schema answer anyone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from tests.e2e import test_serve_api as serve_api

start = serve_api.start
TOKEN = "an-api-token-for-the-e2e-test-0123"


def _config(tmp_path: Path, marker: Path, closed_port: int) -> Path:
    config = serve_api.write_config(tmp_path / "upkeep.yaml", api_tokens={"ops": TOKEN})
    document = yaml.safe_load(config.read_text())
    document["targets"]["closed"] = {"kind": "tcp", "host": "127.0.0.1", "port": closed_port}
    document["checks"]["closed-up"] = {"target": "closed", "every": "1h", "timeout": "1s"}
    document["runbooks"] = {
        "touch": {
            "steps": [
                {"command": [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]}
            ]
        }
    }
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    return config


def test_checks_and_runbooks_run_through_the_api_of_a_real_daemon(
    tmp_path: Path, start: serve_api.StartServe
) -> None:
    marker = tmp_path / "ran"
    daemon = start(_config(tmp_path, marker, serve_api.free_port()))

    def leading() -> bool:
        _, health = daemon.request("GET", "/healthz")
        return isinstance(health, dict) and health.get("role") == "leader"

    serve_api.wait_for(leading, 20, "the daemon to lead")
    status, answer = daemon.api("POST", "/api/checks/closed-up/run", TOKEN)
    assert status == 200, answer
    assert answer["results"][0]["status"] == "critical" and answer["problems"] == []
    status, history = daemon.api("GET", "/api/checks/closed-up/history?since=1h", TOKEN)
    assert status == 200 and history["results"][0]["status"] == "critical"

    def alert_for_closed() -> Any:
        _, alerts = daemon.api("GET", "/api/alerts", TOKEN)
        return [alert for alert in alerts if alert["check"] == "closed-up"]

    serve_api.wait_for(alert_for_closed, 20, "the alert of the check run through the API")

    status, started = daemon.api("POST", "/api/runbooks/touch/run", TOKEN, {})
    assert status == 202, started

    def finished() -> Any:
        _, run = daemon.api("GET", f"/api/runs/{started['run_id']}", TOKEN)
        return run if run["status"] not in ("running", "waiting") else None

    run = serve_api.wait_for(finished, 30, "the run started through the API")
    assert run["status"] == "succeeded" and run["trigger"] == "api"
    assert run["triggered_by"] == "api:ops" and marker.read_text() == "ran"

    status, page = daemon.request("GET", "/api/docs")
    assert status == 200 and "swagger-ui-bundle.js" in page
    status, schema = daemon.request("GET", "/api/openapi.json")
    assert status == 200 and "/api/checks/run" in schema["paths"]
