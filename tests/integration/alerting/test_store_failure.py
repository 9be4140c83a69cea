"""The alarm does not depend on the store: a real daemon whose store fills up, is damaged,
or whose PostgreSQL goes away still alerts, through a real webhook receiver, says so on
/healthz and /metrics, and when the store is back writes everything into it without
sending anything twice.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from tests.integration.engine import test_daemon as daemon_support
from tests.integration.engine.test_daemon import Serve, ServeFactory, free_port, wait_for
from tests.support.mounts import fill, small_tmpfs
from tests.support.receivers import WebhookReceiver
from tests.support.tcp_proxy import TcpProxy
from upkeep.store.schema import alerts, outbox
from upkeep.store.store import Store

serve = daemon_support.serve
postgres_url = daemon_support.postgres_url

DISK_CHECK = "store-disk"


def _config(
    path: Path,
    *,
    store: str,
    receiver: WebhookReceiver,
    checks: dict[str, dict[str, Any]],
    spill_dir: Path,
) -> Path:
    document: dict[str, Any] = {
        "store": store,
        "engine": {
            "listen": f"127.0.0.1:{free_port()}",
            "write_interval": "200ms",
            "takeover_interval": "1s",
        },
        "targets": {"box": {"kind": "host"}},
        "checks": checks,
        "channels": {"ops": receiver.url()},
        "routes": [{"notify": ["ops"]}],
        "alerting": {
            "delivery": {"timeout": "2s", "backoff": "200ms", "max_backoff": "1s"},
            "store_failure": {"spill_dir": str(spill_dir)},
        },
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _disk_on_the_store(tmp_path: Path, disk: Path, receiver: WebhookReceiver) -> tuple[str, Path]:
    """Given a small disk, return a store URL on it and a config whose P1 check watches it."""
    url = f"sqlite:///{disk / 'upkeep.db'}"
    checks = {
        DISK_CHECK: {
            "target": "box",
            "probe": "disk",
            "params": {"path": str(disk)},
            "every": "1s",
            "crit": "free_bytes < 4096",
            "severity": "P1",
        }
    }
    config = _config(
        tmp_path / "upkeep.yaml",
        store=url,
        receiver=receiver,
        checks=checks,
        spill_dir=tmp_path / "spill",
    )
    return url, config


def _titles(receiver: WebhookReceiver) -> list[str]:
    return [str(delivery.json()["title"]) for delivery in receiver.deliveries]


def _has_title(receiver: WebhookReceiver, fragment: str) -> bool:
    return any(fragment in title for title in _titles(receiver))


def _health(daemon: Serve) -> dict[str, Any]:
    status, body = daemon.get("/healthz")
    answer: dict[str, Any] = json.loads(body)
    answer["http_status"] = status
    return answer


def _stored(url: str, check: str) -> int:
    store = Store.open(url)
    try:
        return len(store.history(check))
    finally:
        store.close()


def _outbox(url: str) -> list[dict[str, Any]]:
    store = Store.open(url)
    try:
        with store.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(select(outbox))]
    finally:
        store.close()


def test_a_full_disk_under_the_store_still_alerts_and_reconciles_without_doubles(
    tmp_path: Path, serve: ServeFactory
) -> None:
    """Finding 10: the store's own disk fills up while a P1 check of that disk fails."""
    with small_tmpfs(tmp_path / "disk", "8m") as disk, WebhookReceiver() as receiver:
        url, config = _disk_on_the_store(tmp_path, disk, receiver)
        daemon = serve(config)
        daemon.wait_role("leader")
        wait_for(lambda: _stored(url, DISK_CHECK), 20, "a first result of the disk check")
        filler = fill(disk)

        wait_for(lambda: _has_title(receiver, f"FIRING {DISK_CHECK}"), 20, "the disk alert")
        wait_for(lambda: _has_title(receiver, "FIRING upkeep:store"), 20, "the store alert")
        health = _health(daemon)
        assert health["http_status"] == 200
        assert health["status"] == "degraded"
        assert any("results cannot be stored" in reason for reason in health["reasons"])
        assert "disk is full" in " ".join(health["reasons"])
        assert health["store"]["spill"].startswith(str(tmp_path / "spill"))
        metrics = daemon.metrics()
        assert "upkeep_store_healthy 0.0" in metrics
        assert "upkeep_store_spilling 1.0" in metrics
        store_notice = next(
            delivery.json()
            for delivery in receiver.deliveries
            if "FIRING upkeep:store" in delivery.json()["title"]
        )
        assert store_notice["title"].startswith("[P1]")
        assert "database or disk is full" in store_notice["message"]

        filler.unlink()  # someone makes room
        wait_for(lambda: _has_title(receiver, "RESOLVED upkeep:store"), 20, "the store's recovery")
        wait_for(lambda: _has_title(receiver, f"RESOLVED {DISK_CHECK}"), 20, "the disk's recovery")
        wait_for(lambda: _health(daemon)["status"] == "ok", 10, "healthz ok again")

        # Nothing twice: each notice arrived once, under its own key, one per transition.
        keys = receiver.keys()
        assert set(keys.values()) == {1}, (keys, _titles(receiver))
        titles = _titles(receiver)
        for expected in (
            f"[P1] FIRING {DISK_CHECK} (box)",
            f"[P1] RESOLVED {DISK_CHECK} (box)",
            "[P1] FIRING upkeep:store",
            "[P1] RESOLVED upkeep:store",
        ):
            assert sum(title.startswith(expected) for title in titles) == 1, titles
        assert len(titles) == 4, titles
        # The store holds it all now: the notices sent from the spill are recorded sent
        # (the store's dispatcher sends none of them again), with the spill's results.
        rows = _outbox(url)
        assert sorted(row["key"] for row in rows) == sorted(key for key in keys if key)
        assert {row["status"] for row in rows} == {"sent"}
        store = Store.open(url)
        try:
            statuses = [result.status.label for result in store.history(DISK_CHECK, limit=10_000)]
            assert "critical" in statuses  # the results kept in the spill were written back
            latest = store.history("upkeep:store", limit=1)
            assert latest[0].message.endswith("writable and sound again")
            with store.engine.connect() as connection:
                states = {row.check: row.state for row in connection.execute(select(alerts)).all()}
            assert states == {DISK_CHECK: "resolved", "upkeep:store": "resolved"}
        finally:
            store.close()


def test_a_daemon_restarted_on_a_full_store_carries_on_from_the_spill(
    tmp_path: Path, serve: ServeFactory
) -> None:
    """A restart in the middle of the outage (the new daemon starts on the full disk)
    finds the spill file: no alert is raised twice, and the recovery is announced once."""
    with small_tmpfs(tmp_path / "disk", "8m") as disk, WebhookReceiver() as receiver:
        url, config = _disk_on_the_store(tmp_path, disk, receiver)
        first = serve(config)
        first.wait_role("leader")
        wait_for(lambda: _stored(url, DISK_CHECK), 20, "a first result of the disk check")
        filler = fill(disk)
        wait_for(lambda: _has_title(receiver, "FIRING upkeep:store"), 20, "the store alert")
        wait_for(lambda: _has_title(receiver, f"FIRING {DISK_CHECK}"), 20, "the disk alert")
        spill = Path(_health(first)["store"]["spill"])
        # Killed once both are recorded sent: a kill mid-send would re-send under the
        # same key (the daemon's kill -9 test covers that), which is not the point here.
        wait_for(lambda: _spill_statuses(spill) == ["sent", "sent"], 10, "both recorded sent")
        first.signal(signal.SIGKILL)
        first.wait_exit(10)

        second = serve(config)
        second.wait_role("leader")
        wait_for(lambda: _health(second)["status"] == "degraded", 20, "the restart degraded")
        time.sleep(3)  # several rounds of results, all into the spill the first one left
        assert len(receiver.deliveries) == 2, _titles(receiver)

        filler.unlink()
        wait_for(lambda: _has_title(receiver, "RESOLVED upkeep:store"), 20, "the store's recovery")
        wait_for(lambda: _has_title(receiver, f"RESOLVED {DISK_CHECK}"), 20, "the disk's recovery")
        assert set(receiver.keys().values()) == {1}, _titles(receiver)
        assert len(receiver.deliveries) == 4, _titles(receiver)


def _spill_statuses(spill: Path) -> list[str]:
    with sqlite3.connect(spill, timeout=5) as connection:
        return sorted(row[0] for row in connection.execute("SELECT status FROM outbox"))


def _corrupt_middle(database: Path) -> None:
    """Overwrite pages in the middle of a SQLite file with garbage (its header intact)."""
    size = database.stat().st_size
    with database.open("r+b") as handle:
        handle.seek(size // 2 - 4096)
        handle.write(b"\xa5" * 16384)


def _store_with_history(tmp_path: Path, url: str, config: Path) -> None:
    """Fill a store with enough rows that its middle pages are result pages."""
    from datetime import UTC, datetime, timedelta

    from tests.integration.engine.test_daemon import upkeep_cli
    from upkeep.core.results import CheckResult
    from upkeep.core.status import Status

    assert upkeep_cli(config, "validate").returncode == 0
    store = Store.open(url)
    try:
        start = datetime.now(UTC) - timedelta(days=2)
        store.write_results(
            [
                CheckResult(
                    "old",
                    "box",
                    "uptime",
                    Status.OK,
                    {"seconds": i},
                    "x" * 200,
                    1.0,
                    start + timedelta(seconds=i),
                )
                for i in range(3000)
            ]
        )
    finally:
        store.close()


def test_a_damaged_store_is_found_at_start_and_raises_the_store_alert(
    tmp_path: Path, serve: ServeFactory
) -> None:
    """Finding 11: serve and /healthz said nothing of a damaged store."""
    database = tmp_path / "store" / "upkeep.db"
    url = f"sqlite:///{database}"
    with WebhookReceiver() as receiver:
        config = _config(
            tmp_path / "upkeep.yaml",
            store=url,
            receiver=receiver,
            checks={"beat": {**daemon_support.beat(), "target": "box"}},
            spill_dir=tmp_path / "spill",
        )
        _store_with_history(tmp_path, url, config)
        _corrupt_middle(database)

        daemon = serve(config)
        wait_for(lambda: daemon.health() is not None, 20, "the daemon answering")
        wait_for(lambda: _has_title(receiver, "FIRING upkeep:store"), 20, "the store alert")
        health = _health(daemon)
        assert health["http_status"] == 200
        assert health["status"] == "degraded"
        assert health["store"]["integrity_ok"] is False
        assert any("integrity check failed" in reason for reason in health["reasons"])
        assert "upkeep_store_integrity_ok 0.0" in daemon.metrics()
        notice = next(d.json() for d in receiver.deliveries if "upkeep:store" in d.json()["title"])
        assert "integrity check failed" in notice["message"]


@pytest.fixture
def proxy(postgres_dsn: str) -> Iterator[TcpProxy]:
    forwarder = TcpProxy(("127.0.0.1", 5432))
    forwarder.start()
    yield forwarder
    forwarder.cut()


def test_a_postgres_store_that_goes_away_still_alerts_and_catches_up(
    tmp_path: Path, serve: ServeFactory, postgres_url: str, proxy: TcpProxy
) -> None:
    """The same class on PostgreSQL: the leader's server goes away (connections reset,
    port closed); the schedule keeps running, the alarm goes out from the spill, and
    when the server is back the lead is taken back and the store catches up."""
    through_proxy = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert through_proxy != postgres_url
    flag = tmp_path / "broken"
    with WebhookReceiver() as receiver:
        checks = {
            "service": {
                "target": "flag",
                "probe": "run",
                "every": "1s",
                "severity": "P1",
            }
        }
        config = _config(
            tmp_path / "upkeep.yaml",
            store=through_proxy,
            receiver=receiver,
            checks=checks,
            spill_dir=tmp_path / "spill",
        )
        document = yaml.safe_load(config.read_text())
        document["targets"]["flag"] = {
            "kind": "command",
            "command": ["sh", "-c", f"test ! -e {flag} || {{ echo CRITICAL - broken; exit 2; }}"],
        }
        config.write_text(yaml.safe_dump(document, sort_keys=False))
        daemon = serve(config)
        daemon.wait_role("leader")
        wait_for(lambda: _stored(postgres_url, "service"), 20, "a first result stored")

        proxy.cut()
        flag.write_text("down")
        wait_for(lambda: _has_title(receiver, "FIRING service"), 30, "the service alert")
        wait_for(lambda: _has_title(receiver, "FIRING upkeep:store"), 30, "the store alert")
        assert _health(daemon)["status"] == "degraded"

        flag.unlink()
        proxy.start()
        wait_for(lambda: _has_title(receiver, "RESOLVED upkeep:store"), 40, "the store's recovery")
        wait_for(lambda: _has_title(receiver, "RESOLVED service"), 20, "the service's recovery")
        assert set(receiver.keys().values()) == {1}, _titles(receiver)
        rows = _outbox(postgres_url)
        assert {row["status"] for row in rows} == {"sent"}
        assert len(rows) == len(receiver.deliveries)
