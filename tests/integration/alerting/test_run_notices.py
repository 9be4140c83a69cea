"""Run notices and window announcements against a real store, delivered to a real webhook
receiver on 127.0.0.1: each notice goes out once, however often it is queued or delivered,
and by however many processes."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.helpers import load_text
from tests.support.receivers import WebhookReceiver
from upkeep.alerting.delivery import deliver_now
from upkeep.alerting.notices import announce_windows
from upkeep.config.models import StoreConfig
from upkeep.core.clock import FakeClock
from upkeep.engine.pipeline import Pipeline
from upkeep.engine.runbooks import RunbookExecutor
from upkeep.engine.runner import CheckRunner
from upkeep.io.http import HttpClient
from upkeep.notify.message import Notification
from upkeep.store.outbox import add_notifications
from upkeep.store.runs import (
    ApprovalDecision,
    RunChange,
    RunStatus,
    StepStatus,
    new_instance_id,
)
from upkeep.store.schema import outbox
from upkeep.store.store import Store

FAIL = f'["{sys.executable}", "-c", "import sys; sys.exit(3)"]'


def _config(receiver: WebhookReceiver) -> str:
    return f"""
timezone: Europe/Berlin
channels:
  ops: "{receiver.url(path="/ops")}"
  pager: "{receiver.url(path="/pager")}"
  alerts: "{receiver.url(path="/alerts")}"
alerting:
  public_url: https://upkeep.example.org/
  delivery: {{timeout: 5s, backoff: 100ms}}
routes:
  - notify: [alerts]
  - match: {{runs: {{runbooks: [deploy, gated], labels: {{team: web}}}}}}
    notify: [ops]
    group_by: [runbook, event]
    escalate: {{after: 30m, notify: [pager]}}
runbooks:
  deploy:
    labels: {{team: web}}
    steps:
      - command: {FAIL}
  gated:
    labels: {{team: web}}
    steps:
      - name: go-ahead
        approval: Restart the primary database?
      - command: {FAIL}
"""


def _rows(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        return [
            dict(row._mapping) for row in connection.execute(select(outbox).order_by(outbox.c.id))
        ]


def _paths(receiver: WebhookReceiver) -> Counter[str]:
    return Counter(delivery.path for delivery in receiver.deliveries)


def test_run_notices_go_out_once_each(tmp_path: Path, store_config: StoreConfig) -> None:
    with WebhookReceiver() as receiver:
        loaded = load_text(tmp_path, _config(receiver))
        store = store_config.open(tmp_path)
        clock = FakeClock(datetime.now(UTC))
        pipeline = Pipeline(loaded, store, clock=clock)
        try:
            # A failed run, through the real executor: its notice is queued as it ends.
            http = HttpClient()

            async def failed_run() -> int:
                try:
                    executor = RunbookExecutor(
                        loaded,
                        store,
                        http=http,
                        checks=CheckRunner(redactor=loaded.redactor, http=http),
                        owner=new_instance_id(),
                    )
                    record = await executor.execute("deploy", trigger="cli")
                finally:
                    await http.close()
                assert record is not None and record.status == RunStatus.FAILED
                return record.id

            failed = asyncio.run(failed_run())

            # An approval waiting, as the executor records it; then a run whose owner died,
            # and a firing nobody ran.
            owner = new_instance_id()
            gated = store.runs.start_run(
                runbook="gated",
                trigger="schedule",
                owner=owner,
                steps=[("go-ahead", "approval"), ("command", "command")],
                now=clock.now(),
            )
            assert gated is not None
            store.runs.update_step(
                gated, 0, status=StepStatus.WAITING, started_at=clock.now(), attempts=1
            )
            store.runs.set_run_status(gated, RunStatus.WAITING)
            orphan = store.runs.start_run(
                runbook="deploy", trigger="api", owner="gone", steps=[("command", "command")]
            )
            assert orphan is not None
            assert store.runs.interrupt_orphans(lambda who: who == "gone") == [orphan]
            missed = store.runs.record_missed(
                "deploy", clock.now() - timedelta(hours=1), owner, "the previous run still ran"
            )
            assert missed is not None
            store.runs.finish_run(failed, RunStatus.SUCCEEDED)  # finished already: no notice

            keys = [row["key"] for row in _rows(store)]
            assert len(keys) == 4
            assert [key.split("-")[0:2] for key in keys] == [
                [f"run{failed}", "failed"],
                [f"run{gated}", "s1"],
                [f"run{orphan}", "interrupted"],
                [f"run{missed}", "missed"],
            ]

            # Another process told of the same changes queues nothing new.
            second = store_config.open(tmp_path)
            try:
                other = Pipeline(loaded, second, clock=clock)
                with second.alerts.transaction() as connection:
                    other._observe_runs(
                        connection,
                        [
                            RunChange(failed, RunStatus.FAILED, clock.now()),
                            RunChange(gated, RunStatus.WAITING, clock.now()),
                        ],
                    )
                other.close()
            finally:
                second.close()
            assert len(_rows(store)) == 4

            deliver_now(loaded, store, clock=clock)
            deliver_now(loaded, store, clock=clock)  # a second round (a restart) sends nothing
            assert _paths(receiver) == {"/ops": 4}
            assert all(count == 1 for count in receiver.keys().values())
            messages = {delivery.key: delivery.json() for delivery in receiver.deliveries}
            waiting = next(m for key, m in messages.items() if key and f"run{gated}-s1" in key)
            assert f"upkeep approve {gated} --step 1" in waiting["message"]
            assert f"https://upkeep.example.org/runs/{gated}" in waiting["message"]
            assert "Restart the primary database?" in waiting["message"]

            # Still undecided after 30 minutes: the escalation step, once however often the
            # clock ticks; after the decision, nothing more.
            clock.set(clock.now() + timedelta(minutes=31))
            pipeline.notice_tick()
            pipeline.notice_tick()
            deliver_now(loaded, store, clock=clock)
            assert _paths(receiver) == {"/ops": 4, "/pager": 1}
            store.runs.decide(gated, ApprovalDecision.APPROVED, "alice")
            clock.set(clock.now() + timedelta(hours=2))
            pipeline.notice_tick()
            assert len(_rows(store)) == 5
            assert all(row["status"] == "sent" for row in _rows(store))
        finally:
            pipeline.close()
            store.close()


def test_a_window_announces_each_opening_once(tmp_path: Path, store_config: StoreConfig) -> None:
    with WebhookReceiver() as receiver:
        loaded = load_text(
            tmp_path,
            f"""
timezone: UTC
channels:
  status: "{receiver.url(path="/status")}"
windows:
  nightly:
    schedule: "0 3 * * *"
    timezone: Europe/Berlin
    duration: 1h
    description: Database upgrades; the shop may be slow.
    mute: {{labels: {{env: prod}}}}
    announce: {{notify: [status], before: 1h}}
""",
        )
        store = store_config.open(tmp_path)
        # 03:00 in Berlin on 24 November is 02:00 UTC.
        moments = [
            datetime(2026, 11, 24, 1, 10, tzinfo=UTC),  # 50 minutes ahead: "before"
            datetime(2026, 11, 24, 1, 30, tzinfo=UTC),  # again: nothing new
            datetime(2026, 11, 24, 2, 5, tzinfo=UTC),  # open
            datetime(2026, 11, 24, 2, 50, tzinfo=UTC),  # still open: nothing new
            datetime(2026, 11, 24, 3, 20, tzinfo=UTC),  # closed 20 minutes ago
        ]
        clock = FakeClock(moments[0])
        # The daemon's and a one-shot command's way: the pipeline's tick, then delivery.
        pipeline = Pipeline(loaded, store, clock=clock)
        try:
            for moment in moments:
                clock.set(moment)
                assert pipeline.tick_and_deliver() == []
            # A restarted process at the same moment queues nothing again.
            again = store_config.open(tmp_path)
            try:
                assert announce_windows(loaded, again, moments[-1]) == []
            finally:
                again.close()
            deliver_now(loaded, store, clock=clock)
        finally:
            pipeline.close()
            store.close()
    titles = [delivery.json()["title"] for delivery in receiver.deliveries]
    assert titles == [
        "MAINTENANCE in 1h: nightly (2026-11-24 03:00 CET to 2026-11-24 04:00 CET)",
        "MAINTENANCE STARTED: nightly until 2026-11-24 04:00 CET",
        "MAINTENANCE ENDED: nightly",
    ]
    assert all(count == 1 for count in receiver.keys().values())
    body = receiver.deliveries[0].json()["message"]
    assert "Database upgrades; the shop may be slow." in body
    assert "mutes alerts of labels env=prod" in body


def test_an_observer_that_fails_costs_the_run_nothing(tmp_path: Path) -> None:
    store = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    told: list[RunStatus] = []

    def broken(connection: Any, changes: Any) -> None:
        told.extend(change.status for change in changes)
        note = Notification(
            key="half-written", channel="ops", kind="run", group_key="g", title="t", body="b"
        )
        assert add_notifications(connection, [note], datetime.now(UTC))  # undone with it
        raise RuntimeError("a bug in the notifier")

    try:
        store.runs.observe(broken)
        run_id = store.runs.start_run(
            runbook="deploy", trigger="cli", owner="me", steps=[("go", "manual")]
        )
        assert run_id is not None
        store.runs.finish_run(run_id, RunStatus.FAILED, "step 1 failed")
        record = store.runs.get_run(run_id)
        assert record is not None and record.status == RunStatus.FAILED
        assert told == [RunStatus.FAILED] and _rows(store) == []
        store.runs.forget(lambda connection, changes: None)  # not the one told: stays
        store.runs.set_run_status(run_id, RunStatus.WAITING)  # finished: no change, untold
        assert told == [RunStatus.FAILED]
    finally:
        store.close()
