"""``upkeep check`` on a store that cannot take its results: read-only, damaged, or a
PostgreSQL server that is not there. Every result is still printed, stderr says they were
not stored and why, the alarm still goes out (from the spill), and the next run on a
working store writes it all back without sending anything twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.e2e.conftest import Upkeep
from tests.integration.engine import test_daemon as daemon_support
from tests.support.mounts import bind_view
from tests.support.receivers import WebhookReceiver
from tests.support.tcp_proxy import TcpProxy
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.store.schema import alerts, outbox
from upkeep.store.store import Store

postgres_url = daemon_support.postgres_url

CHECKS = ("up", "load", "service")


def _config(path: Path, store: str, receiver: WebhookReceiver, extra: str = "") -> Path:
    flag = path.parent / "broken"
    flag.write_text("the service is down\n")
    path.write_text(
        f"""\
store: "{store}"
targets:
  box: {{kind: host}}
  flag: {{kind: command, command: [sh, -c, "test ! -e {flag} || {{ echo CRITICAL - down; exit 2; }}"]}}
checks:
  up: {{target: box, probe: uptime}}
  load: {{target: box, probe: load}}
  service: {{target: flag, severity: P1}}
channels:
  ops: "{receiver.url()}"
routes:
  - notify: [ops]
alerting:
  delivery: {{timeout: 5s}}
{extra}"""
    )
    return path


def _titles(receiver: WebhookReceiver) -> list[str]:
    return [str(delivery.json()["title"]) for delivery in receiver.deliveries]


def _count(receiver: WebhookReceiver, fragment: str) -> int:
    return sum(fragment in title for title in _titles(receiver))


def _printed(stdout: str) -> set[str]:
    return {item["check"] for item in json.loads(stdout)["results"]}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as started:
        yield started


def test_a_read_only_store_still_prints_every_result_and_alerts_from_the_spill(
    upkeep: Upkeep, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """Finding 12: on a read-only store ``upkeep check`` printed no result at all."""
    (tmp_path / "data").mkdir()
    with bind_view(tmp_path / "data", tmp_path / "view") as view:
        _config(tmp_path / "upkeep.yaml", f"sqlite:///{view.path}/upkeep.db", receiver)
        first = upkeep("check")
        assert first.returncode == 2, first.stderr  # the service is critical
        assert _count(receiver, "FIRING service") == 1

        view.read_only()
        table = upkeep("check")
        assert "internal error" not in table.stderr
        for name in CHECKS:
            assert name in table.stdout
        assert "3 checks" in table.stdout
        assert "cannot open store" in table.stderr
        assert "results were not stored" in table.stderr
        assert "unable to open database file" in table.stderr
        assert "alerting continues from the spill file" in table.stderr
        assert table.returncode == 2  # a critical result keeps its own code

        as_json = upkeep("check", "--json")
        assert _printed(as_json.stdout) == set(CHECKS)
        assert "results were not stored" in as_json.stderr
        ok_only = upkeep("check", "up", "load")
        assert ok_only.returncode == 3  # results that were not stored never pass as ok

        # The store's alert went out once; the service's firing was not sent again: the
        # spill started from the store's state (read as an immutable file).
        assert _count(receiver, "FIRING upkeep:store") == 1
        assert _count(receiver, "FIRING service") == 1

        view.writable()
        back = upkeep("check")
        assert back.returncode == 2
        assert "not stored" not in back.stderr, back.stderr
        assert _count(receiver, "RESOLVED upkeep:store") == 1
        assert _count(receiver, "FIRING service") == 1
        assert set(receiver.keys().values()) == {1}, _titles(receiver)

    store = Store.open(f"sqlite:///{tmp_path / 'data' / 'upkeep.db'}")
    try:
        # The three runs on the read-only store are in the history now, between the two
        # on the writable one (the third ran only up and load).
        assert len(store.history("up")) == 5
        assert len(store.history("service")) == 4
        with store.engine.connect() as connection:
            rows = connection.execute(select(outbox.c.status)).scalars().all()
            open_alerts = connection.execute(
                select(alerts.c.check).where(alerts.c.active.is_not(None))
            ).scalars()
            assert sorted(open_alerts) == ["service"]
        assert set(rows) == {"sent"} and len(rows) == 3
    finally:
        store.close()


def _fill_and_damage(database: Path) -> None:
    """Write enough results that the middle of the file holds them, then overwrite pages
    there with garbage (the header intact)."""
    store = Store.open(f"sqlite:///{database}")
    start = datetime.now(UTC) - timedelta(days=2)
    try:
        store.write_results(
            [
                CheckResult(
                    "old",
                    "box",
                    "uptime",
                    Status.OK,
                    {"seconds": index},
                    "x" * 200,
                    1.0,
                    start + timedelta(seconds=index),
                )
                for index in range(3000)
            ]
        )
    finally:
        store.close()
    size = database.stat().st_size
    with database.open("r+b") as handle:
        handle.seek(size // 2 - 4096)
        handle.write(b"\xa5" * 16384)


def test_a_damaged_store_is_reported_by_check(
    upkeep: Upkeep, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """Finding 11: check said nothing until ``stats`` failed on the damage."""
    database = tmp_path / ".upkeep" / "upkeep.db"
    _config(
        tmp_path / "upkeep.yaml",
        "sqlite:///.upkeep/upkeep.db",
        receiver,
        "  store_failure: {integrity_interval: 1s}\n",
    )
    (tmp_path / "broken").unlink()  # every check ok
    assert upkeep("check").returncode == 0  # the store is created and passes its check
    _fill_and_damage(database)
    time.sleep(1.1)  # the last pass is now older than integrity_interval

    damaged = upkeep("check", "--json")
    assert _printed(damaged.stdout) == set(CHECKS)
    assert "the store failed its integrity check" in damaged.stderr
    assert "malformed" in damaged.stderr or "corrupt" in damaged.stderr.lower()
    assert "internal error" not in damaged.stderr
    assert damaged.returncode == 3  # ok results on a damaged store do not pass as ok
    assert _count(receiver, "FIRING upkeep:store") == 1
    notice = next(d.json() for d in receiver.deliveries if "upkeep:store" in d.json()["title"])
    assert "integrity check failed" in notice["message"]


def test_a_postgres_store_that_is_not_there_still_alerts_and_catches_up_later(
    upkeep: Upkeep, tmp_path: Path, receiver: WebhookReceiver, postgres_url: str
) -> None:
    """The same class on PostgreSQL: the server's port is closed, then open again."""
    proxy = TcpProxy(("127.0.0.1", 5432))  # not started: connections are refused
    through_proxy = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    _config(tmp_path / "upkeep.yaml", through_proxy, receiver)

    down = upkeep("check", "--json")
    assert _printed(down.stdout) == set(CHECKS)
    assert "Connection refused" in down.stderr
    assert "results were not stored" in down.stderr
    assert down.returncode == 2
    assert _count(receiver, "FIRING service") == 1
    assert _count(receiver, "FIRING upkeep:store") == 1

    again = upkeep("check")  # a cron run later: the spill remembers what was sent
    assert again.returncode == 2
    assert len(receiver.deliveries) == 2, _titles(receiver)

    proxy.start()
    try:
        back = upkeep("check")
        assert back.returncode == 2
        assert "not stored" not in back.stderr, back.stderr
    finally:
        proxy.cut()
    assert _count(receiver, "RESOLVED upkeep:store") == 1
    assert _count(receiver, "FIRING service") == 1
    assert set(receiver.keys().values()) == {1}, _titles(receiver)
    store = Store.open(postgres_url)
    try:
        assert len(store.history("service")) == 3
        with store.engine.connect() as connection:
            statuses = connection.execute(select(outbox.c.status)).scalars().all()
        assert sorted(statuses) == ["sent"] * 3
    finally:
        store.close()
