"""A drill that fails or misses an objective alerts through the routes with no check
configured for it, and the alert resolves on the next passing drill (issue #13, defect 9):
from ``upkeep drill`` and from a runbook's ``backup.drill`` step."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Upkeep
from tests.support.receivers import WebhookReceiver, webhook

CONFIG = """\
channels:
  ops: "{hook}"
routes:
  - notify: [ops]
backups:
  repository: repo
  sources:
    etc: {{paths: [data/etc]}}
runbooks:
  dr-drill:
    steps:
      - task: backup.drill
        with: {{source: etc, rto: 5m, rpo: 1ms}}
"""


def _titles(receiver: WebhookReceiver) -> list[str]:
    return [str(delivery.json()["title"]) for delivery in receiver.deliveries]


def test_a_missed_objective_alerts_and_the_next_passing_drill_resolves_it(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    (tmp_path / "data" / "etc").mkdir(parents=True)
    (tmp_path / "data" / "etc" / "app.conf").write_text("port = 80\n")
    with webhook() as receiver:
        (tmp_path / "upkeep.yaml").write_text(CONFIG.format(hook=receiver.url()))
        assert upkeep("backup", "create", "etc").returncode == 0
        missed = upkeep("drill", "etc", "--rpo", "1ms")
        assert missed.returncode == 1, missed.stdout + missed.stderr
        (firing,) = [delivery.json() for delivery in receiver.deliveries]
        assert firing["title"] == "[P2] FIRING upkeep:drill:etc (etc): CRITICAL"
        assert "RPO" in firing["message"] and "exceeds the objective" in firing["message"]
        assert "backup=etc" in firing["message"]

        passed = upkeep("drill", "etc")
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert _titles(receiver)[1].startswith("[P2] RESOLVED upkeep:drill:etc (etc)")

        # From a runbook: the step's drill misses its RPO of 1 ms and alerts the same way.
        run = upkeep("run", "dr-drill", "--yes")
        assert run.returncode == 1, run.stdout + run.stderr
        assert _titles(receiver)[2] == "[P2] FIRING upkeep:drill:etc (etc): CRITICAL"
        alerts = json.loads(upkeep("alerts", "--json").stdout)
        assert [alert["check"] for alert in alerts["alerts"]] == ["upkeep:drill:etc"]


def test_a_drill_alert_resolves_when_a_configured_drill_check_takes_over(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    # Once a drill check was configured, upkeep's own verdict was never recorded again, so
    # its open alert stayed open for ever.
    (tmp_path / "data" / "etc").mkdir(parents=True)
    (tmp_path / "data" / "etc" / "app.conf").write_text("port = 80\n")
    with webhook() as receiver:
        (tmp_path / "upkeep.yaml").write_text(CONFIG.format(hook=receiver.url()))
        assert upkeep("backup", "create", "etc").returncode == 0
        assert upkeep("drill", "etc", "--rpo", "1ms").returncode == 1
        assert _titles(receiver) == ["[P2] FIRING upkeep:drill:etc (etc): CRITICAL"]

        with (tmp_path / "upkeep.yaml").open("a", encoding="utf-8") as config:
            config.write(
                "targets:\n  etc-backups: {kind: backup, source: etc}\n"
                "checks:\n  etc-drill: {target: etc-backups, probe: drill, crit: not passed}\n"
            )
        checked = upkeep("check", "etc-drill")
        assert checked.returncode == 2, checked.stdout + checked.stderr  # the last drill failed
        deliveries = {str(d.json()["title"]): str(d.json()["message"]) for d in receiver.deliveries}
        resolved = [title for title in deliveries if "RESOLVED upkeep:drill:etc (etc)" in title]
        assert len(resolved) == 1, deliveries
        assert "superseded by check etc-drill" in deliveries[resolved[0]]
        assert any(title.startswith("[P3] FIRING etc-drill") for title in deliveries), deliveries
        alerts = json.loads(upkeep("alerts", "--json").stdout)
        assert [alert["check"] for alert in alerts["alerts"]] == ["etc-drill"]
