"""The alert manager against a real store: alerts, timelines and the outbox it fills."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.helpers import load_text
from upkeep.alerting.manager import AlertManager
from upkeep.config.loader import LoadedConfig
from upkeep.config.models import StoreConfig
from upkeep.core.clock import FakeClock
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.store.schema import outbox
from upkeep.store.store import Store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

CONFIG = """
targets:
  web: {kind: tcp, host: 127.0.0.1, port: 1, labels: {env: prod}}
  db: {kind: tcp, host: 127.0.0.1, port: 2, labels: {env: prod}}
  staging: {kind: tcp, host: 127.0.0.1, port: 3, labels: {env: staging}}
checks:
  db-up: {target: db, severity: P1}
  web-up: {target: web, severity: P2, depends_on: [db-up]}
  web-slow: {target: web, severity: P2, after: 3, for: 2m, clear_after: 2}
  staging-up: {target: staging, severity: P3}
channels:
  ops: "json://127.0.0.1:9/ops"
  pager: "json://127.0.0.1:9/pager"
  mail: "json://127.0.0.1:9/mail"
routes:
  - match: {severity: [P1, P2]}
    notify: [ops]
    repeat: 1h
    escalate:
      - {after: 30m, notify: [pager]}
      - {after: 1h, notify: [mail]}
    continue: true
  - match: {labels: {env: staging}}
    notify: [mail]
  - notify: [ops]
windows:
  nightly:
    schedule: "0 3 * * *"
    duration: 1h
    mute: {labels: {env: prod}}
"""


Setup = tuple[LoadedConfig, Store, AlertManager, FakeClock]


@pytest.fixture
def setup(tmp_path: Path, store_config: StoreConfig) -> Iterator[Setup]:
    loaded = load_text(tmp_path, CONFIG)
    store = store_config.open(tmp_path)
    clock = FakeClock(T0)
    yield loaded, store, AlertManager(loaded, store, clock=clock), clock
    store.close()


def result(check: str, status: Status, at: datetime, message: str = "") -> CheckResult:
    target = {"db-up": "db", "web-up": "web", "web-slow": "web", "staging-up": "staging"}[check]
    labels = {"env": "staging" if target == "staging" else "prod"}
    return CheckResult(
        check, target, "tcp.connect", status, {}, message or status.label, 1.0, at, labels=labels
    )


def queued(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        rows = connection.execute(select(outbox).order_by(outbox.c.id))
        return [dict(row._mapping) for row in rows]


def test_a_critical_result_fires_and_queues_one_notice_per_channel_of_each_route(
    setup: Setup,
) -> None:
    _loaded, store, manager, _clock = setup
    report = manager.process([result("web-up", Status.CRITICAL, T0, "connection refused")])
    assert (report.opened, report.fired) == (1, 1)
    rows = queued(store)
    # Route 0 (P2, continue) and then route 2 (catch-all) both take it.
    assert [(row["channel"], row["kind"], row["status"]) for row in rows] == [
        ("ops", "firing", "pending"),
        ("ops", "firing", "pending"),
    ]
    assert len({row["key"] for row in rows}) == 2
    body = rows[0]["body"]
    assert "CRITICAL web-up on web" in body and "connection refused" in body
    assert "env=prod" in body and "since 2026-11-23 12:00:00 UTC" in body
    assert rows[0]["title"].startswith("[P2] FIRING web-up (web)")
    assert rows[0]["level"] == "failure"
    alert = store.alerts.list_alerts()[0]
    assert alert.state == "firing" and alert.fired_at == T0
    kinds = [event.kind for event in store.alerts.events(alert.id)]
    assert kinds == ["opened", "firing", "notified"]


def test_soft_states_do_not_notify_until_hard_and_recovery_notices_the_outage(setup: Setup) -> None:
    _, store, manager, clock = setup
    for index in range(4):
        clock.set(T0 + timedelta(seconds=30 * index))
        manager.process([result("web-slow", Status.WARNING, clock.now())])
        assert queued(store) == []
    # after: 3 holds since the third result, but for: 2m has not passed (90 s).
    assert store.alerts.list_alerts()[0].state == "pending"
    clock.set(T0 + timedelta(seconds=120))
    manager.process([result("web-slow", Status.WARNING, clock.now())])
    alert = store.alerts.list_alerts()[0]
    assert alert.state == "firing" and alert.severity == "P4"  # warn_severity default
    # P4 is not for the P1/P2 route: only the catch-all takes it.
    assert [row["key"] for row in queued(store)] == [f"a{alert.id}-r2-n1-ops"]
    for index, minute in enumerate([3, 4]):
        clock.set(T0 + timedelta(minutes=minute))
        manager.process([result("web-slow", Status.OK, clock.now())])
        assert (store.alerts.list_alerts() == []) is (index == 1)
    resolved = [row for row in queued(store) if row["kind"] == "resolved"]
    assert len(resolved) == 1
    assert "after 4m" in resolved[0]["title"]


def test_a_child_of_a_critical_parent_is_suppressed_and_released_when_the_parent_recovers(
    setup: Setup,
) -> None:
    _, store, manager, clock = setup
    manager.process([result("db-up", Status.CRITICAL, T0), result("web-up", Status.CRITICAL, T0)])
    alerts = {alert.check: alert for alert in store.alerts.list_alerts()}
    assert alerts["web-up"].suppressed_by == "db-up" and alerts["web-up"].held == "dependency"
    assert {row["alert_id"] for row in queued(store)} == {alerts["db-up"].id}
    clock.set(T0 + timedelta(minutes=1))
    manager.process([result("db-up", Status.OK, clock.now())])
    manager.tick()
    web = store.alerts.get(alerts["web-up"].id)
    assert web is not None and web.held is None and web.suppressed_by is None
    web_rows = [row for row in queued(store) if row["alert_id"] == web.id]
    assert [row["kind"] for row in web_rows] == ["firing", "firing"]
    assert "db-up recovered" in web_rows[0]["body"]


def test_escalation_steps_fire_when_unacknowledged_and_an_ack_stops_them(setup: Setup) -> None:
    _, store, manager, _clock = setup

    def route0(store: Store) -> list[dict[str, Any]]:
        return [row for row in queued(store) if "-r0-" in row["key"]]

    manager.process([result("db-up", Status.CRITICAL, T0)])
    alert_id = store.alerts.list_alerts()[0].id
    manager.tick(T0 + timedelta(minutes=29))
    assert [row["channel"] for row in route0(store) if row["kind"] == "escalation"] == []
    manager.tick(T0 + timedelta(minutes=31))
    assert [row["channel"] for row in route0(store) if row["kind"] == "escalation"] == ["pager"]
    manager.tick(T0 + timedelta(minutes=32))  # no repeat of a step already taken
    assert len([row for row in route0(store) if row["kind"] == "escalation"]) == 1
    manager.acknowledge(
        alert_id, author="alice", duration=timedelta(hours=2), now=T0 + timedelta(minutes=40)
    )
    manager.tick(T0 + timedelta(minutes=61))
    assert len([row for row in route0(store) if row["kind"] == "escalation"]) == 1
    # The ack lapses at 2h40: re-escalation at once, then the steps again from there.
    manager.tick(T0 + timedelta(hours=2, minutes=41))
    escalations = [row for row in route0(store) if row["kind"] == "escalation"]
    assert [row["channel"] for row in escalations] == ["pager", "ops"]
    assert "the acknowledgement by alice lapsed" in escalations[-1]["body"]
    manager.tick(T0 + timedelta(hours=3, minutes=12))
    escalations = [row for row in route0(store) if row["kind"] == "escalation"]
    assert [row["channel"] for row in escalations] == ["pager", "ops", "pager"]
    kinds = [event.kind for event in store.alerts.events(alert_id)]
    assert kinds.count("escalated") == 2 and "unacknowledged" in kinds and "acknowledged" in kinds


def test_repeat_while_firing_until_acknowledged(setup: Setup) -> None:
    _, store, manager, _ = setup
    manager.process([result("staging-up", Status.CRITICAL, T0)])
    manager.tick(T0 + timedelta(hours=2))  # the staging route has no repeat
    assert [row["kind"] for row in queued(store)] == ["firing"]
    manager.process([result("db-up", Status.CRITICAL, T0)])
    db_id = next(a.id for a in store.alerts.list_alerts() if a.check == "db-up")
    manager.tick(T0 + timedelta(minutes=59))
    assert [row for row in queued(store) if row["kind"] == "repeat"] == []
    with store.engine.begin() as connection:  # delivered: a reminder is due after 1h
        connection.execute(outbox.update().values(status="sent"))
    manager.tick(T0 + timedelta(minutes=61))
    manager.tick(T0 + timedelta(minutes=62))
    repeats = [row for row in queued(store) if row["kind"] == "repeat"]
    assert [(row["channel"], row["alert_id"]) for row in repeats] == [("ops", db_id)]
    assert "STILL FIRING" in repeats[0]["title"]
    manager.acknowledge(db_id, author="carol", now=T0 + timedelta(minutes=70))
    manager.tick(T0 + timedelta(hours=3))
    assert len([row for row in queued(store) if row["kind"] == "repeat"]) == 1


def test_a_window_mute_records_the_notice_and_notifies_when_the_window_ends(setup: Setup) -> None:
    _, store, manager, clock = setup
    clock.set(datetime(2026, 11, 24, 3, 10, tzinfo=UTC))
    manager.process([result("web-up", Status.CRITICAL, clock.now())])
    rows = queued(store)
    assert {row["status"] for row in rows} == {"muted"}
    assert {row["muted_by"] for row in rows} == {"window nightly"}
    # A staging alert in the same window is not muted (the mute matches env=prod only).
    manager.process([result("staging-up", Status.CRITICAL, clock.now())])
    assert [row["status"] for row in queued(store) if row["channel"] == "mail"] == ["pending"]
    clock.set(datetime(2026, 11, 24, 3, 59, tzinfo=UTC))
    manager.tick()
    assert not [row for row in queued(store) if row["kind"] == "unmuted"]
    clock.set(datetime(2026, 11, 24, 4, 0, 1, tzinfo=UTC))
    manager.tick()
    unmuted = [row for row in queued(store) if row["kind"] == "unmuted"]
    assert [row["status"] for row in unmuted] == ["pending", "pending"]
    assert "the mute ended" in unmuted[0]["body"]


def test_a_silence_mutes_matching_alerts_only_while_it_lasts(setup: Setup) -> None:
    _, store, manager, clock = setup
    store.alerts.add_silence(
        {"check": "db-*"},
        starts_at=T0,
        ends_at=T0 + timedelta(hours=1),
        author="bob",
        comment="upgrade",
    )
    manager.process(
        [result("db-up", Status.CRITICAL, T0), result("staging-up", Status.CRITICAL, T0)]
    )
    by_check = {a.check: a for a in store.alerts.list_alerts()}
    muted = [row for row in queued(store) if row["alert_id"] == by_check["db-up"].id]
    assert {(row["status"], row["muted_by"]) for row in muted} == {("muted", "silence #1")}
    assert by_check["db-up"].held == "muted"
    clock.set(T0 + timedelta(hours=1, seconds=1))
    manager.tick()
    released = store.alerts.get(by_check["db-up"].id)
    assert released is not None and released.held is None


def test_flapping_sends_one_notice_instead_of_one_per_flip(setup: Setup) -> None:
    _, store, manager, clock = setup
    for index in range(20):
        clock.set(T0 + timedelta(seconds=30 * index))
        status = Status.CRITICAL if index % 2 == 0 else Status.OK
        manager.process([result("staging-up", status, clock.now())])
    kinds = [row["kind"] for row in queued(store)]
    assert kinds.count("flapping") == 1
    # Before detection every flip was news (firing/resolved pairs); after it, nothing more.
    first_flap = kinds.index("flapping")
    assert kinds[first_flap + 1 :] == []
    alert = store.alerts.list_alerts()[0]
    assert alert.flapping and alert.state == "firing"


def test_processing_the_same_transition_twice_from_two_managers_queues_it_once(
    setup: Setup, tmp_path: Path, store_config: StoreConfig
) -> None:
    loaded, store, manager, _ = setup
    other = AlertManager(loaded, store_config.open(tmp_path))
    manager.process([result("db-up", Status.CRITICAL, T0)])
    manager.tick(T0 + timedelta(minutes=31))
    other.tick(T0 + timedelta(minutes=31))
    assert [row["channel"] for row in queued(store) if row["kind"] == "escalation"] == [
        "pager",
        "ops",
    ]
    other.store.close()


def test_response_target_missed_is_recorded_once(setup: Setup) -> None:
    _, store, manager, _ = setup
    manager.process([result("staging-up", Status.CRITICAL, T0)])  # P3: 4h target
    manager.tick(T0 + timedelta(hours=3))
    manager.tick(T0 + timedelta(hours=4, minutes=1))
    manager.tick(T0 + timedelta(hours=5))
    alert = store.alerts.list_alerts()[0]
    assert alert.response_missed
    assert [e.kind for e in store.alerts.events(alert.id)].count("response_missed") == 1
    # The staging route has no escalation, so the miss itself is notified there.
    assert [row["kind"] for row in queued(store)] == ["firing", "escalation"]


GROUPED = """
targets:
  a: {kind: tcp, host: 127.0.0.1, port: 1, labels: {env: prod}}
  b: {kind: tcp, host: 127.0.0.1, port: 2, labels: {env: prod}}
checks:
  a-up: {target: a}
  b-up: {target: b}
channels:
  hook: "HOOK_URL"
routes:
  - {notify: [hook], group_by: [env], group_wait: 30s}
alerting:
  public_url: https://upkeep.example.org
"""


def test_alerts_of_one_group_within_group_wait_arrive_as_one_message(tmp_path: Path) -> None:
    import asyncio

    from tests.support.receivers import WebhookReceiver
    from upkeep.alerting.delivery import Dispatcher

    with WebhookReceiver() as receiver:
        loaded = load_text(tmp_path, GROUPED.replace("HOOK_URL", receiver.url()))
        store = Store.open("sqlite:///grouped.db", tmp_path)
        clock = FakeClock(T0)
        manager = AlertManager(loaded, store, clock=clock)
        try:
            labels = {"env": "prod"}
            manager.process(
                [
                    CheckResult(
                        "a-up",
                        "a",
                        "tcp.connect",
                        Status.CRITICAL,
                        {},
                        "refused",
                        1.0,
                        T0,
                        labels=labels,
                    )
                ]
            )
            clock.set(T0 + timedelta(seconds=10))
            manager.process(
                [
                    CheckResult(
                        "b-up",
                        "b",
                        "tcp.connect",
                        Status.CRITICAL,
                        {},
                        "refused",
                        1.0,
                        clock.now(),
                        labels=labels,
                    )
                ],
                run_id=42,
            )
            dispatcher = Dispatcher(
                store.outbox,
                loaded.config.channels,
                loaded.config.alerting.delivery,
                loaded.redactor,
                "test",
                clock=clock,
            )
            # Nothing is due before the group's wait is over.
            clock.set(T0 + timedelta(seconds=29))
            assert asyncio.run(dispatcher.deliver_due()) == []
            # The group is due 30 s after its first alert, the later one included.
            clock.set(T0 + timedelta(seconds=31))
            reports = asyncio.run(dispatcher.deliver_due())
            assert [(report.status, report.notifications) for report in reports] == [("sent", 2)]
            assert len(receiver.deliveries) == 1
            message = receiver.deliveries[0].json()
            assert "a-up" in message["message"] and "b-up" in message["message"]
            assert "https://upkeep.example.org/alerts/" in message["message"]
            assert "run #42 · https://upkeep.example.org/runs/42" in message["message"]
        finally:
            store.close()


def test_retention_deletes_old_resolved_alerts_and_finished_notices_only(setup: Setup) -> None:
    _, store, manager, clock = setup
    manager.process(
        [result("db-up", Status.CRITICAL, T0), result("staging-up", Status.CRITICAL, T0)]
    )
    clock.set(T0 + timedelta(minutes=5))
    manager.process([result("db-up", Status.OK, clock.now())])
    with store.engine.begin() as connection:
        connection.execute(outbox.update().where(outbox.c.channel == "ops").values(status="sent"))
    later = T0 + timedelta(days=400)
    alerts_deleted, notices_deleted = store.alerts.prune(
        keep_alerts=timedelta(days=365), keep_notifications=timedelta(days=90), now=later
    )
    # db-up's resolved alert goes, and its notices with it; staging-up's is still open and
    # its notice to mail, still pending, stays.
    assert (alerts_deleted, notices_deleted) == (1, 0)
    assert [alert.check for alert in store.alerts.list_alerts()] == ["staging-up"]
    assert [(row["channel"], row["status"]) for row in queued(store)] == [("mail", "pending")]
    # Once sent, an old notice goes after retention.notifications even if its alert is open.
    with store.engine.begin() as connection:
        connection.execute(outbox.update().values(status="sent"))
    assert store.alerts.prune(
        keep_alerts=timedelta(days=365), keep_notifications=timedelta(days=90), now=later
    ) == (0, 1)
    assert queued(store) == []


def test_a_child_that_fired_before_its_parent_failed_is_held_once_the_parent_is_critical(
    setup: Setup,
) -> None:
    _, store, manager, clock = setup
    manager.process([result("web-up", Status.CRITICAL, T0)])
    web = store.alerts.list_alerts()[0]
    # The child's notice waits for the parent's probe (its timeout, 10 s by default).
    assert [row["next_attempt_at"] for row in queued(store)] == [T0 + timedelta(seconds=10)] * 2
    clock.set(T0 + timedelta(seconds=5))
    manager.process([result("db-up", Status.CRITICAL, clock.now())])
    manager.tick()
    held = store.alerts.get(web.id)
    assert held is not None and (held.held, held.suppressed_by) == ("dependency", "db-up")
    web_rows = [row for row in queued(store) if row["alert_id"] == web.id]
    assert {(row["status"], row["muted_by"]) for row in web_rows} == {("muted", "dependency db-up")}
    # No repeat or escalation while held; released with a notice when the parent recovers.
    manager.tick(T0 + timedelta(hours=2))
    assert not [
        row for row in queued(store) if row["alert_id"] == web.id and row["kind"] != "firing"
    ]
    clock.set(T0 + timedelta(hours=2, minutes=1))
    manager.process([result("db-up", Status.OK, clock.now())])
    manager.tick()
    released = [
        row for row in queued(store) if row["alert_id"] == web.id and row["status"] == "pending"
    ]
    assert [row["kind"] for row in released] == ["firing", "firing"]


def test_the_end_of_a_mute_restarts_escalation_and_the_response_clock(setup: Setup) -> None:
    _, store, manager, clock = setup
    store.alerts.add_silence(
        {"check": "db-up"}, starts_at=T0, ends_at=T0 + timedelta(hours=2), author="bob", comment=""
    )
    manager.process([result("db-up", Status.CRITICAL, T0)])
    alert_id = store.alerts.list_alerts()[0].id
    clock.set(T0 + timedelta(hours=2, seconds=1))
    manager.tick()
    record = store.alerts.get(alert_id)
    assert record is not None and not record.response_missed
    assert [row["kind"] for row in queued(store) if row["status"] == "pending"] == [
        "unmuted",
        "unmuted",
    ]
    # Escalation steps count from the end of the mute: the 30 m step at 2h31, not at once.
    manager.tick(T0 + timedelta(hours=2, minutes=29))
    assert not [
        row for row in queued(store) if row["kind"] == "escalation" and row["channel"] == "pager"
    ]
    manager.tick(T0 + timedelta(hours=2, minutes=31))
    assert [row["channel"] for row in queued(store) if row["channel"] == "pager"] == ["pager"]


def test_a_pruned_alert_s_id_is_never_reused_so_new_notices_are_not_dropped(
    setup: Setup,
) -> None:
    _, store, manager, clock = setup
    manager.process([result("staging-up", Status.CRITICAL, T0)])
    clock.set(T0 + timedelta(minutes=1))
    manager.process([result("staging-up", Status.OK, clock.now())])
    first = store.alerts.list_alerts(open_only=False)[0].id
    store.alerts.prune(
        keep_alerts=timedelta(days=1),
        keep_notifications=timedelta(days=90),
        now=T0 + timedelta(days=10),
    )
    clock.set(T0 + timedelta(days=10))
    report = manager.process([result("staging-up", Status.CRITICAL, clock.now())])
    second = store.alerts.list_alerts()[0].id
    assert second != first
    assert report.notifications == 1


def test_two_processes_handling_one_check_at_once_open_one_alert(
    tmp_path: Path, store_config: StoreConfig
) -> None:
    import threading

    loaded = load_text(tmp_path, CONFIG)
    stores = [store_config.open(tmp_path) for _ in range(2)]
    managers = [AlertManager(loaded, store) for store in stores]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(manager: AlertManager) -> None:
        try:
            start.wait()
            for index in range(20):
                at = T0 + timedelta(seconds=index)
                manager.process(
                    [result("staging-up", Status.CRITICAL if index % 5 else Status.OK, at)]
                )
        except BaseException as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(manager,)) for manager in managers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        every = stores[0].alerts.list_alerts(open_only=False)
        assert len([alert for alert in every if alert.state != "resolved"]) <= 1
        # Each notice key once: one firing per alert and one resolved per fired alert.
        keys = [row["key"] for row in queued(stores[0])]
        assert len(keys) == len(set(keys))
    finally:
        for store in stores:
            store.close()


def test_results_and_their_alerts_are_stored_together(setup: Setup) -> None:
    _, store, manager, _ = setup
    written, report = manager.record([result("db-up", Status.CRITICAL, T0)])
    assert (written, report.fired) == (1, 1)
    assert [r.check for r in store.history("db-up")] == ["db-up"]
    assert [a.check for a in store.alerts.list_alerts()] == ["db-up"]


def test_a_failure_of_alerting_keeps_the_results_and_leaves_no_half_alert(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    from upkeep.alerting.manager import AlertProcessingError

    _, store, manager, _ = setup
    real = manager.process_in

    def half_then_fail(connection: Any, results: Any, run_id: Any = None) -> Any:
        real(connection, results, run_id)  # opens the alert and queues its notice ...
        raise RuntimeError("disk full")  # ... then the transaction fails

    monkeypatch.setattr(manager, "process_in", half_then_fail)
    with pytest.raises(AlertProcessingError) as caught:
        manager.record([result("db-up", Status.CRITICAL, T0)])
    assert caught.value.written == 1
    assert [r.check for r in store.history("db-up")] == ["db-up"]  # the history is kept
    assert store.alerts.list_alerts() == [] and queued(store) == []  # nothing half-done
    monkeypatch.undo()
    manager.process([result("db-up", Status.CRITICAL, T0)])  # the retry catches up
    assert [a.state for a in store.alerts.list_alerts()] == ["firing"]


def test_reminders_do_not_pile_up_while_a_channel_is_down(setup: Setup) -> None:
    _, store, manager, _ = setup
    manager.process([result("db-up", Status.CRITICAL, T0)])  # P1: ops, repeat 1h
    for hour in range(1, 6):
        manager.tick(T0 + timedelta(hours=hour, seconds=1))
    # The firing notice to ops has not gone out (nothing delivers here): no reminder joins it.
    assert [
        row["kind"] for row in queued(store) if "-r0-" in row["key"] and row["channel"] == "ops"
    ] == ["firing"]
    with store.engine.begin() as connection:
        connection.execute(outbox.update().values(status="sent"))
    # Once delivered, reminders come every hour again: one now, none half an hour later.
    manager.tick(T0 + timedelta(hours=6, seconds=2))
    manager.tick(T0 + timedelta(hours=6, minutes=30))
    reminders = [row for row in queued(store) if row["kind"] == "repeat" and "-r0-" in row["key"]]
    assert len(reminders) == 1
