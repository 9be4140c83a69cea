"""Nothing lost, nothing doubled: the daemon, a webhook receiver that is down, then slow,
and a ``kill -9`` in the middle of delivery.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from tests.integration.engine import test_daemon as daemon_support
from tests.integration.engine.test_daemon import ServeFactory, free_port, wait_for
from tests.support.receivers import WebhookReceiver
from upkeep.store.schema import outbox
from upkeep.store.store import Store

serve = daemon_support.serve
AGO = re.compile(rb"\([0-9a-z ]+ ago\)")
"""How long ago an alert fired, as a notice says it."""

CHECKS = 5


def _closed_port() -> int:
    return free_port()


def _config(path: Path, receiver: WebhookReceiver, listen: int) -> Path:
    closed = _closed_port()
    document: dict[str, Any] = {
        "store": "sqlite:///.upkeep/upkeep.db",
        "engine": {"listen": f"127.0.0.1:{listen}", "write_interval": "200ms"},
        "targets": {"dead": {"kind": "tcp", "host": "127.0.0.1", "port": closed}},
        "checks": {
            f"down-{index}": {"target": "dead", "every": "1s", "timeout": "1s", "severity": "P2"}
            for index in range(CHECKS)
        },
        "channels": {"ops": receiver.url()},
        "routes": [{"notify": ["ops"]}],
        "alerting": {
            "delivery": {"timeout": "2s", "backoff": "200ms", "max_backoff": "1s"},
        },
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _rows(tmp_path: Path) -> list[dict[str, Any]]:
    store = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    try:
        with store.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(select(outbox))]
    finally:
        store.close()


def _wait_retried(tmp_path: Path) -> None:
    """Wait until every check's firing notice has failed at least twice."""

    def retried() -> bool:
        rows = _rows(tmp_path)
        return len(rows) == CHECKS and all(row["attempts"] >= 2 for row in rows)

    wait_for(retried, 30, f"{CHECKS} notices retried against a receiver that is down")


def _wait_all_sent(tmp_path: Path, timeout: float) -> list[dict[str, Any]]:
    wait_for(
        lambda: all(row["status"] == "sent" for row in _rows(tmp_path)),
        timeout,
        "every notice delivered",
    )
    return _rows(tmp_path)


def test_a_receiver_that_was_down_gets_every_notice_exactly_once(
    tmp_path: Path, serve: ServeFactory
) -> None:
    receiver = WebhookReceiver()  # down: not started yet
    daemon = serve(_config(tmp_path / "upkeep.yaml", receiver, free_port()))
    daemon.wait_role("leader")
    _wait_retried(tmp_path)
    receiver.start()
    try:
        rows = _wait_all_sent(tmp_path, 20)
        keys = receiver.keys()
        assert None not in keys  # every notice carries its Idempotency-Key
        assert sorted(key for key in keys if key is not None) == sorted(row["key"] for row in rows)
        assert set(keys.values()) == {1}, keys  # each exactly once, no raw repeat
        titles = sorted(delivery.json()["title"] for delivery in receiver.deliveries)
        assert titles == sorted(f"[P2] FIRING down-{i} (dead): CRITICAL" for i in range(CHECKS))
    finally:
        receiver.stop()


def test_a_kill_mid_delivery_resends_only_what_was_in_flight_under_the_same_key(
    tmp_path: Path, serve: ServeFactory
) -> None:
    receiver = WebhookReceiver(delay_s=3.0)  # down now, slow once started
    config = _config(tmp_path / "upkeep.yaml", receiver, free_port())
    daemon = serve(config)
    daemon.wait_role("leader")
    _wait_retried(tmp_path)
    receiver.start()
    try:
        wait_for(
            lambda: all(row["status"] == "sending" for row in _rows(tmp_path)),
            15,
            "every delivery in flight",
        )
        in_flight = {row["key"] for row in _rows(tmp_path)}
        daemon.signal(signal.SIGKILL)
        daemon.wait_exit(10)

        receiver.delay_s = 0.0
        restarted = serve(config)
        restarted.wait_role("leader")
        # The new leader takes back a dead owner's claims at once, not after their lease.
        rows = _wait_all_sent(tmp_path, 20)
        keys = receiver.keys()
        # Nothing lost: every notice arrived. A send the kill cut short may have reached
        # the receiver already, so it can arrive twice, but only those, and always under
        # the same Idempotency-Key, so a receiver that honours the key acts on it once.
        assert None not in keys  # every notice carries its Idempotency-Key
        assert sorted(key for key in keys if key is not None) == sorted(row["key"] for row in rows)
        assert {key for key, count in keys.items() if count > 1} <= in_flight
        assert all(count <= 2 for count in keys.values()), keys
        for key in keys:
            # A re-send is the same message but for how long ago the alert fired, which is
            # reckoned when each copy is sent.
            bodies = {AGO.sub(b"(N ago)", d.body) for d in receiver.deliveries if d.key == key}
            assert len(bodies) == 1, bodies
    finally:
        receiver.stop()
