"""An alert of upkeep's own drill check resolves when a configured drill check of its
source takes over: nothing else would ever resolve it, since the drill's own verdict is
no longer recorded once a configured check reports it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import load_text
from upkeep.alerting.manager import AlertManager
from upkeep.core.clock import FakeClock
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.store.store import Store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

BEFORE = """\
channels:
  ops: "json://127.0.0.1:9/ops"
routes:
  - notify: [ops]
backups:
  repository: repo
  sources:
    etc: {paths: [data/etc]}
    db: {paths: [data/db]}
"""
AFTER = (
    BEFORE
    + """\
targets:
  etc-backups: {kind: backup, source: etc}
checks:
  etc-fresh: {target: etc-backups, crit: "age_s > 1d"}
  etc-drill: {target: etc-backups, probe: drill, crit: "not passed"}
"""
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open("sqlite:///upkeep.db", tmp_path)
    yield opened
    opened.close()


def _missed(source: str) -> CheckResult:
    return CheckResult(
        check=f"upkeep:drill:{source}",
        target=source,
        probe="drill",
        status=Status.CRITICAL,
        metrics={"passed": False},
        message=f"drill of {source} failed: RPO 2d exceeds the objective of 1d",
        duration_ms=10.0,
        at=T0,
        severity="P2",
        labels={"backup": source},
    )


def test_a_drill_alert_resolves_when_a_configured_drill_check_takes_over(
    tmp_path: Path, store: Store
) -> None:
    clock = FakeClock(T0)
    before = AlertManager(load_text(tmp_path, BEFORE), store, clock=clock)
    before.process([_missed("etc"), _missed("db")])
    assert {alert.check for alert in store.alerts.list_alerts()} == {
        "upkeep:drill:etc",
        "upkeep:drill:db",
    }

    clock.set(T0 + timedelta(minutes=5))
    after = AlertManager(load_text(tmp_path, AFTER), store, clock=clock)
    report = after.tick()
    assert report.resolved == 1
    alerts = {alert.check: alert for alert in store.alerts.list_alerts(open_only=False)}
    etc, db = alerts["upkeep:drill:etc"], alerts["upkeep:drill:db"]
    assert etc.state == "resolved" and etc.resolved_at == T0 + timedelta(minutes=5)
    assert db.state == "firing"  # no configured drill check of db: its own still counts
    (event,) = [event for event in store.alerts.events(etc.id) if event.kind == "resolved"]
    assert event.detail == "superseded by check etc-drill, which reports this from now on"
    resolved = [row for row in store.outbox.list_rows() if row.kind == "resolved"]
    assert [row.title.split(" after ")[0] for row in resolved] == [
        "[P2] RESOLVED upkeep:drill:etc (etc)"
    ]
    assert "superseded by check etc-drill" in resolved[0].body
    assert "ok again" not in resolved[0].body
    # The drill's own verdict of etc is no longer recorded, so it cannot fire again.
    assert after.process([_missed("etc")]).opened == 0
