"""Per-route alert state follows the route, not its place in ``routes:``.

Each test fires one alert, lets escalation run part of the way, then reloads a config
whose routes moved or changed (a new ``AlertManager``, as the daemon's reload makes) and
checks what the outbox holds: every notice once, none lost, none repeated.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.helpers import load_text
from upkeep.alerting.manager import AlertManager
from upkeep.alerting.routing import route_ids
from upkeep.config.loader import LoadedConfig
from upkeep.config.models import StoreConfig
from upkeep.core.clock import FakeClock
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.store.alerts import AlertRecord
from upkeep.store.outbox import OutboxStatus
from upkeep.store.schema import alerts, outbox

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

HEAD = """
targets:
  db: {kind: tcp, host: 127.0.0.1, port: 2, labels: {env: prod}}
  staging: {kind: tcp, host: 127.0.0.1, port: 3, labels: {env: staging}}
checks:
  db-up: {target: db, severity: P1}
  staging-up: {target: staging, severity: P3}
channels:
  ops: "json://127.0.0.1:9/ops"
  pager: "json://127.0.0.1:9/pager"
  mail: "json://127.0.0.1:9/mail"
alerting:
  response_targets: {P1: 1d}
"""

URGENT = """
  - name: urgent
    match: {severity: [P1, P2]}
    notify: [ops]
    repeat: 1h
    escalate:
      - {after: 30m, notify: [pager]}
      - {after: 1h, notify: [mail]}
    continue: true
"""
STAGING = """
  - match: {labels: {env: staging}}
    notify: [mail]
"""
CATCH_ALL = """
  - notify: [ops]
"""

BEFORE = HEAD + "routes:" + URGENT + STAGING + CATCH_ALL
# The same three routes, the first and the last swapped; the catch-all now lets the alert
# go on (``continue`` is not part of a route's identity), so the same routes take it.
REORDERED = HEAD + "routes:" + CATCH_ALL + "    continue: true\n" + STAGING + URGENT


class Setup:
    """A store, a clock, and a manager for whichever config is loaded last."""

    def __init__(self, tmp_path: Path, store_config: StoreConfig) -> None:
        self.tmp_path = tmp_path
        self.store = store_config.open(tmp_path)
        self.clock = FakeClock(T0)
        self.loaded = self.reload(BEFORE)

    def reload(self, text: str) -> LoadedConfig:
        self.loaded = load_text(self.tmp_path, text)
        self.manager = AlertManager(self.loaded, self.store, clock=self.clock)
        return self.loaded

    def tick(self, after: timedelta) -> None:
        self.clock.set(T0 + after)
        self.manager.tick()

    def alert(self) -> AlertRecord:
        (record,) = self.store.alerts.list_alerts()
        return record

    def keys(self) -> list[str]:
        with self.store.engine.connect() as connection:
            return list(connection.execute(select(outbox.c.key).order_by(outbox.c.id)).scalars())

    def deliver_all(self) -> None:
        """Mark every queued notice sent: reminders are held while one is undelivered."""
        with self.store.engine.begin() as connection:
            connection.execute(update(outbox).values(status=OutboxStatus.SENT, sent_at=T0))


@pytest.fixture
def setup(tmp_path: Path, store_config: StoreConfig) -> Iterator[Setup]:
    built = Setup(tmp_path, store_config)
    yield built
    built.store.close()


def db_result(status: Status, at: datetime) -> CheckResult:
    return CheckResult(
        "db-up", "db", "tcp.connect", status, {}, status.label, 1.0, at, labels={"env": "prod"}
    )


def fire_db(setup: Setup) -> int:
    """Fire db-up at T0 and take the first escalation step (pager at 30m); return its id."""
    setup.manager.process([db_result(Status.CRITICAL, T0)])
    alert_id = setup.alert().id
    setup.tick(timedelta(minutes=31))
    setup.deliver_all()
    # urgent (position 0) and the catch-all (position 2) took it; urgent escalated once.
    assert setup.keys() == [
        f"a{alert_id}-r0-n1-ops",
        f"a{alert_id}-r2-n1-ops",
        f"a{alert_id}-r0-n2-pager",
    ]
    return alert_id


def test_reordering_routes_mid_escalation_keeps_each_routes_steps_and_counts(setup: Setup) -> None:
    alert_id = fire_db(setup)
    setup.reload(REORDERED)
    setup.tick(timedelta(minutes=40))
    # Nothing is due: urgent took its first step already, wherever it stands now.
    assert len(setup.keys()) == 3
    setup.tick(timedelta(minutes=61))
    setup.tick(timedelta(minutes=62))
    # At 1h urgent reminds ops and takes its second step, once each, numbered on from its
    # own earlier notices (its slot stays 0 though it is the third route now).
    assert setup.keys()[3:] == [f"a{alert_id}-r0-n3-ops", f"a{alert_id}-r0-n4-mail"]
    routing = setup.alert().routing
    catch_all, _staging, urgent = route_ids(setup.loaded.config.routes)
    assert (routing.routes[urgent].slot, routing.routes[urgent].steps) == (0, 2)
    assert routing.routes[urgent].notices == 4
    assert (routing.routes[catch_all].slot, routing.routes[catch_all].notices) == (2, 1)
    # The recovery goes to both routes, each under its own slot.
    setup.deliver_all()
    setup.clock.set(T0 + timedelta(minutes=70))
    setup.manager.process([db_result(Status.OK, setup.clock.now())])
    assert sorted(setup.keys()[5:]) == [f"a{alert_id}-r0-n5-ops", f"a{alert_id}-r2-n2-ops"]


def test_state_stored_by_position_is_adopted_once_and_then_follows_the_route(
    setup: Setup,
) -> None:
    alert_id = fire_db(setup)
    # What the previous version stored for the same history: keyed by route position.
    legacy = {
        "0": {"steps": 1, "sent": 2, "n": 2, "last": T0.isoformat()},
        "2": {"steps": 0, "sent": 1, "n": 1, "last": T0.isoformat()},
    }
    with setup.store.engine.begin() as connection:
        connection.execute(update(alerts).where(alerts.c.id == alert_id).values(routing=legacy))
    assert setup.alert().routing.legacy
    # The upgraded daemon's first tick adopts it under the routes at those positions ...
    setup.tick(timedelta(minutes=40))
    assert len(setup.keys()) == 3
    adopted = setup.alert().routing
    assert not adopted.legacy
    urgent, _staging, catch_all = route_ids(setup.loaded.config.routes)
    assert adopted.routes[urgent].steps == 1 and adopted.routes[urgent].notices == 2
    with setup.store.engine.connect() as connection:
        stored: dict[str, Any] = connection.execute(
            select(alerts.c.routing).where(alerts.c.id == alert_id)
        ).scalar_one()
    assert stored["version"] == 2 and set(stored["routes"]) == {urgent, catch_all}
    # ... so a reorder after the upgrade moves nothing to another route.
    setup.reload(REORDERED)
    setup.tick(timedelta(minutes=61))
    assert setup.keys()[3:] == [f"a{alert_id}-r0-n3-ops", f"a{alert_id}-r0-n4-mail"]


def test_a_renamed_route_starts_afresh_under_a_slot_of_its_own(setup: Setup) -> None:
    alert_id = fire_db(setup)
    setup.reload(BEFORE.replace("name: urgent", "name: urgent-v2"))
    setup.tick(timedelta(minutes=32))
    # A new route: its first step is due (the alert fired 32 minutes ago). Its position,
    # 0, is the old route's slot, so it takes the next number no route of this alert
    # holds: 1 (the catch-all holds 2).
    assert setup.keys()[3:] == [f"a{alert_id}-r1-n1-pager"]
    routing = setup.alert().routing
    assert routing.routes["urgent-v2"].model_dump(exclude={"last"}) == {
        "slot": 1,
        "notices": 1,
        "sent": 1,
        "steps": 1,
    }
    assert routing.routes["urgent"].steps == 1  # kept, in case the name comes back


def test_a_route_whose_match_or_channels_change_starts_afresh(setup: Setup) -> None:
    alert_id = fire_db(setup)
    before = route_ids(setup.loaded.config.routes)
    setup.reload(BEFORE.replace("  - notify: [ops]\n", "  - notify: [ops, mail]\n"))
    after = route_ids(setup.loaded.config.routes)
    assert before[:2] == after[:2] and before[2] != after[2]
    setup.tick(timedelta(minutes=61))
    # urgent goes on (reminder, second step); the changed catch-all has no state, and no
    # repeat or escalation of its own, so it adds nothing until the recovery.
    assert setup.keys()[3:] == [f"a{alert_id}-r0-n3-ops", f"a{alert_id}-r0-n4-mail"]
    assert set(setup.alert().routing.routes) == {before[0], before[2]}
    # Its first notice is the recovery, under slot 3: at slot 2 its key would be the old
    # catch-all's first (a<id>-r2-n1-ops), and the outbox would drop it as a repeat.
    setup.deliver_all()
    setup.clock.set(T0 + timedelta(minutes=70))
    setup.manager.process([db_result(Status.OK, setup.clock.now())])
    assert sorted(setup.keys()[5:]) == [
        f"a{alert_id}-r0-n5-ops",
        f"a{alert_id}-r3-n1-mail",
        f"a{alert_id}-r3-n1-ops",
    ]
