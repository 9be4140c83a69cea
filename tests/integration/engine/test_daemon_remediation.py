"""``upkeep serve`` starts the runbook an alert asks for (``on_alert:``): the one daemon
test of remediation (the guard rails, the loop guard and exactly-once are tested in
process in ``test_remediation.py``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.integration.engine.test_daemon import (  # noqa: F401 - serve and sqlite_url are fixtures
    ServeFactory,
    free_port,
    open_store,
    runs_of,
    serve,
    sqlite_url,
    wait_for,
    write_config,
)
from upkeep.store.alerts import AlertState
from upkeep.store.runs import RunStatus


def test_the_leader_starts_the_runbook_a_firing_asks_for_once(
    tmp_path: Path,
    serve: ServeFactory,  # noqa: F811 - the fixture imported above
    sqlite_url: str,  # noqa: F811 - the fixture imported above
) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    config = write_config(
        tmp_path / "upkeep.yaml",
        store=sqlite_url,
        listen=free_port(),
        targets={
            "flag": {
                "kind": "command",
                "command": ["sh", "-c", 'test ! -e "$0" || exit 2', str(flag)],
            }
        },
        checks={"flagged": {"target": "flag", "every": "1s", "severity": "P2"}},
        runbooks={
            "mend": {
                "on_alert": {"match": {"checks": ["flagged"]}},
                "steps": [
                    {
                        "command": [
                            sys.executable,
                            "-c",
                            "import os, sys; os.remove(sys.argv[1])",
                            str(flag),
                        ]
                    },
                    {"checks": {"names": ["flagged"]}},
                ],
            }
        },
    )
    daemon = serve(config)
    daemon.wait_role("leader")
    store = open_store(sqlite_url)
    try:
        runs = wait_for(
            lambda: [run for run in runs_of(store, "mend") if run.finished_at is not None],
            20.0,
            "the run the alert starts",
        )
        [run] = runs
        assert run.status == RunStatus.SUCCEEDED, run.message
        assert run.trigger == "alert"
        assert run.alert_id is not None
        assert run.triggered_by == f"alert:{run.alert_id} flagged"
        assert not flag.exists()
        alert = store.alerts.get(run.alert_id)
        assert alert is not None and alert.state == AlertState.RESOLVED
        timeline = wait_for(
            lambda: [
                event.detail
                for event in store.alerts.events(run.alert_id)
                if event.kind == "remediation"
            ][1:],
            10.0,
            "the run's outcome on the timeline",
        )
        assert timeline == [f"run {run.id} of runbook mend succeeded: 2 step(s) done"]
        time.sleep(2)  # the check keeps running, ok: nothing starts again
        assert len(runs_of(store, "mend")) == 1
        assert (
            f"runbook mend started by alert {run.alert_id} (flagged): run {run.id}" in daemon.log()
        )
    finally:
        store.close()
