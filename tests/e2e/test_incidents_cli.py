"""Incidents and reliability figures from the CLI, over a store filled by direct inserts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import Upkeep
from tests.integration.alerting.test_stats_store import add_alert, add_check
from upkeep.store.store import Store

CONFIG = """\
timezone: Europe/Berlin
targets:
  box: {kind: host}
checks:
  uptime: {target: box, probe: uptime, crit: seconds < 0}
alerting:
  response_targets: {P1: 15m}
"""


@pytest.fixture
def incidents(tmp_path: Path) -> dict[str, int]:
    """Write a config and a store with two incidents on target box: web's resolved (P1,
    acked by alice after 5 minutes, 2 hours long, 5 days ago) and api's ongoing (P3, for an
    hour); return their ids."""
    (tmp_path / "upkeep.yaml").write_text(CONFIG)
    now = datetime.now(UTC)
    store = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    try:
        add_check(store, "web", "box", now - timedelta(days=20), {"env": "prod"})
        add_check(store, "api", "box", now - timedelta(days=20), {"env": "staging"})
        opened = now - timedelta(days=5)
        web = add_alert(
            store,
            "web",
            opened,
            fired=opened,
            resolved=opened + timedelta(hours=2),
            acked=opened + timedelta(minutes=5),
            severity="P1",
        )
        api = add_alert(
            store,
            "api",
            now - timedelta(hours=1),
            fired=now - timedelta(hours=1),
            severity="P3",
            labels={"env": "staging"},
        )
        add_alert(store, "web", now - timedelta(hours=3), fired=None)  # pending: no incident
    finally:
        store.close()
    return {"web": web, "api": api}


def test_incidents_lists_fired_alerts(upkeep: Upkeep, incidents: dict[str, int]) -> None:
    result = upkeep("incidents")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    web = next(line for line in lines if line.startswith(f"{incidents['web']} "))
    api = next(line for line in lines if line.startswith(f"{incidents['api']} "))
    assert "web" in web and "P1" in web and "2h" in web and "alice" in web and "resolved" in web
    assert "api" in api and "ongoing" in api and "firing" in api
    # Newest first; the pending alert is not an incident.
    assert lines.index(api) < lines.index(web)
    assert "2 incident(s) since" in result.stdout

    documents = json.loads(upkeep("incidents", "--json").stdout)
    assert [document["check"] for document in documents] == ["api", "web"]
    web_doc = documents[1]
    assert web_doc["duration_s"] == 7200.0 and web_doc["ongoing"] is False
    assert web_doc["acked_by"] == "alice" and web_doc["severity"] == "P1"
    assert documents[0]["ongoing"] is True and documents[0]["resolved_at"] is None

    only_open = json.loads(upkeep("incidents", "--open", "--json").stdout)
    assert [document["id"] for document in only_open] == [incidents["api"]]
    staging = json.loads(upkeep("incidents", "--label", "env=staging", "--json").stdout)
    assert [document["id"] for document in staging] == [incidents["api"]]
    recent = json.loads(upkeep("incidents", "--since", "1d", "--json").stdout)
    assert [document["id"] for document in recent] == [incidents["api"]]

    assert upkeep("incidents", "--since", "soon").returncode == 2
    assert upkeep("incidents", "--label", "novalue").returncode == 2


def test_show_and_note(upkeep: Upkeep, incidents: dict[str, int]) -> None:
    web = str(incidents["web"])
    shown = upkeep("incidents", "show", web)
    assert shown.returncode == 0, shown.stderr
    assert f"incident {web}: web on box (P1) resolved" in shown.stdout
    assert "after 2h" in shown.stdout
    for kind in ("opened", "firing", "acknowledged"):
        assert kind in shown.stdout

    noted = upkeep("incidents", "note", web, "restarted [nginx]", "--author", "bob")
    assert noted.returncode == 0, noted.stderr
    assert f"note added to incident {web} by bob" in noted.stdout
    by_default = upkeep("incidents", "note", web, "looked again")
    assert by_default.returncode == 0, by_default.stderr

    document = json.loads(upkeep("incidents", "show", web, "--json").stdout)
    notes = [event for event in document["timeline"] if event["kind"] == "note"]
    assert [(note["author"], note["detail"]) for note in notes[:1]] == [
        ("bob", "restarted [nginx]")
    ]
    assert len(notes) == 2 and notes[1]["author"]
    assert [event["kind"] for event in document["timeline"][:3]] == [
        "opened",
        "firing",
        "acknowledged",
    ]
    # A note is text, not markup: the brackets survive.
    assert "bob: restarted [nginx]" in upkeep("incidents", "show", web).stdout

    missing = upkeep("incidents", "note", "999", "nothing")
    assert missing.returncode == 2 and "no incident 999" in missing.stderr
    assert upkeep("incidents", "show", "999").returncode == 2
    assert upkeep("incidents", "note", web, "  ").returncode == 2


def test_stats(upkeep: Upkeep, incidents: dict[str, int]) -> None:
    result = upkeep("stats", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    checks = {figure["name"]: figure for figure in document["checks"]}
    targets = {figure["name"]: figure for figure in document["targets"]}
    assert set(checks) == {"web", "api"} and set(targets) == {"box"}

    web = checks["web"]
    # Observed since its first result 20 days ago, not the 30 days asked for.
    assert web["observed_s"] == pytest.approx(20 * 86400, abs=60)
    assert web["downtime_s"] == 7200.0
    assert web["uptime_percent"] == pytest.approx(100 * (1 - 7200 / (20 * 86400)), abs=1e-3)
    assert (web["incidents"], web["mttr_s"], web["mtta_s"]) == (1, 7200.0, 300.0)
    assert web["mtbf_s"] == pytest.approx(20 * 86400 - 7200, abs=60)
    assert web["response_target_met_percent"] == 100.0

    api = checks["api"]
    assert api["open_incidents"] == 1 and api["mttr_s"] is None
    assert api["downtime_s"] == pytest.approx(3600, abs=60)
    # P3's default target (4h) has not passed yet: neither met nor missed.
    assert api["response_target_met_percent"] is None
    box = targets["box"]
    assert box["incidents"] == 2 and box["outages"] == 2
    assert box["downtime_s"] == pytest.approx(7200 + 3600, abs=60)

    staging = json.loads(upkeep("stats", "--label", "env=staging", "--json").stdout)
    assert [figure["name"] for figure in staging["checks"]] == ["api"]
    assert staging["checks"][0]["observed_s"] == pytest.approx(20 * 86400, abs=60)

    table = upkeep("stats")
    assert table.returncode == 0, table.stderr
    for expected in ("check", "target", "uptime", "MTTR", "MTBF", "MTTA", "web", "box", "2h"):
        assert expected in table.stdout
    assert "5m" in table.stdout  # web's time to acknowledge
    assert upkeep("stats", "--since", "soon").returncode == 2
