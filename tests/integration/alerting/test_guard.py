"""The store guard against real stores (SQLite and PostgreSQL) that stop taking writes:
alerts go out from the spill, and when the store takes writes again everything is written
back into it, with every notice sent exactly once."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from tests.helpers import load_text, store_yaml
from tests.support.receivers import WebhookReceiver
from upkeep.alerting import guard as guard_module
from upkeep.alerting.delivery import deliver_now
from upkeep.alerting.guard import StoreGuard
from upkeep.config.loader import LoadedConfig
from upkeep.config.models import StoreConfig
from upkeep.core.clock import FakeClock
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.store.schema import alerts, outbox
from upkeep.store.spill import Spill
from upkeep.store.store import Store, normalise_url

CONFIG = """
store: {store}
targets:
  db: {{kind: tcp, host: 127.0.0.1, port: 2}}
  staging: {{kind: tcp, host: 127.0.0.1, port: 3}}
checks:
  db-up: {{target: db, severity: P1}}
  staging-up: {{target: staging, severity: P3}}
channels:
  ops: "{channel}"
routes:
  - notify: [ops]
alerting:
  store_failure: {{spill_dir: "{spill}"}}
"""


@pytest.fixture(autouse=True)
def _retry_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch tries the store again (the daemon waits RECONCILE_RETRY_S between)."""
    monkeypatch.setattr(guard_module, "RECONCILE_RETRY_S", 0.0)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as started:
        yield started


def result(check: str, status: Status) -> CheckResult:
    target = "db" if check == "db-up" else "staging"
    return CheckResult(
        check, target, "tcp.connect", status, {}, status.label, 1.0, datetime.now(UTC)
    )


def loaded_for(tmp_path: Path, store: str, receiver: WebhookReceiver) -> LoadedConfig:
    return load_text(
        tmp_path,
        CONFIG.format(store=store, channel=receiver.url(), spill=tmp_path / "spill"),
    )


class Refusal:
    """Makes a store refuse new rows of a table (results by default), as a full disk
    would, and take them again."""

    def __init__(self, store: Store, table: str = "check_results") -> None:
        self.store = store
        self.table = table
        self.postgres = store.engine.dialect.name == "postgresql"

    def refuse(self) -> None:
        with self.store.engine.begin() as connection:
            if self.postgres:
                connection.execute(
                    text(
                        "CREATE OR REPLACE FUNCTION refuse_results() RETURNS trigger AS $$ BEGIN "
                        "RAISE EXCEPTION 'could not extend file: No space left on device'; "
                        "END $$ LANGUAGE plpgsql"
                    )
                )
                connection.execute(
                    text(
                        f"CREATE TRIGGER refuse BEFORE INSERT ON {self.table} "
                        "FOR EACH ROW EXECUTE FUNCTION refuse_results()"
                    )
                )
            else:
                connection.execute(
                    text(
                        f"CREATE TRIGGER refuse BEFORE INSERT ON {self.table} BEGIN "
                        "SELECT RAISE(ABORT, 'database or disk is full'); END"
                    )
                )

    def allow(self) -> None:
        statement = "DROP TRIGGER refuse" + (f" ON {self.table}" if self.postgres else "")
        with self.store.engine.begin() as connection:
            connection.execute(text(statement))


def deliver_spill(guard: StoreGuard) -> None:
    reports = asyncio.run(guard.deliver_spill("test-owner"))
    assert all(report.ok for report in reports), reports


def titles(receiver: WebhookReceiver) -> list[str]:
    return sorted(
        str(delivery.json()["title"]).split(" after ")[0].split(":")[0]
        for delivery in receiver.deliveries
    )


def rows(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(outbox))]


def test_results_the_store_refuses_are_alerted_from_the_spill_and_written_back_once(
    tmp_path: Path, store_config: StoreConfig, receiver: WebhookReceiver
) -> None:
    loaded = loaded_for(tmp_path, store_yaml(store_config), receiver)
    store = store_config.open(tmp_path)
    refusal = Refusal(store)
    guard = StoreGuard(loaded, store)
    try:
        assert guard.record([result("db-up", Status.CRITICAL)]).stored
        deliver_now(loaded, store)
        assert titles(receiver) == ["[P1] FIRING db-up (db)"]

        refusal.refuse()
        outcome = guard.record([result("staging-up", Status.CRITICAL)])
        assert not outcome.stored and outcome.spill is not None
        assert any(word in (outcome.reason or "") for word in ("disk is full", "No space left"))
        assert guard.spilling and guard.health.status == "degraded"
        deliver_now(loaded, store)  # the store's outbox waits while the spill delivers
        deliver_spill(guard)
        assert len(receiver.deliveries) == 3
        # The db alert, copied into the spill with its id, resolves there.
        assert not guard.record([result("db-up", Status.OK)]).stored
        deliver_spill(guard)

        refusal.allow()
        back = guard.record([result("staging-up", Status.OK)])
        assert back.stored and back.reconciled is not None
        assert not guard.spilling and guard.health.status == "ok"
        assert deliver_spill(guard) is None  # nothing left there
        deliver_now(loaded, store)
        assert titles(receiver) == sorted(
            [
                "[P1] FIRING db-up (db)",
                "[P3] FIRING staging-up (staging)",
                "[P1] FIRING upkeep",
                "[P1] RESOLVED db-up (db)",
                "[P3] RESOLVED staging-up (staging)",
                "[P1] RESOLVED upkeep",
            ]
        )
        assert set(receiver.keys().values()) == {1}
        stored = rows(store)
        assert sorted(row["key"] for row in stored) == sorted(
            str(key) for key in receiver.keys().elements()
        )
        assert {row["status"] for row in stored} == {"sent"}
        assert deliver_now(loaded, store) == []  # nothing is sent again
        assert [r.status for r in store.history("db-up")] == [Status.OK, Status.CRITICAL]
        with store.engine.connect() as connection:
            open_alerts = connection.execute(
                select(alerts).where(alerts.c.active.is_not(None))
            ).all()
        assert open_alerts == []
    finally:
        guard.close()
        store.close()


def test_alerts_the_store_refuses_are_processed_in_the_spill_and_written_back(
    tmp_path: Path, store_config: StoreConfig, receiver: WebhookReceiver
) -> None:
    """The results table takes rows but the outbox does not: the results stay in the
    store, their alerts are processed and delivered from the spill."""
    loaded = loaded_for(tmp_path, store_yaml(store_config), receiver)
    store = store_config.open(tmp_path)
    refusal = Refusal(store, "outbox")
    guard = StoreGuard(loaded, store)
    try:
        refusal.refuse()
        outcome = guard.record([result("db-up", Status.CRITICAL)])
        assert outcome.stored and outcome.spill is not None  # results in the store
        assert guard.spilling and guard.health.status == "degraded"
        deliver_spill(guard)
        assert titles(receiver) == ["[P1] FIRING db-up (db)", "[P1] FIRING upkeep"]

        refusal.allow()
        assert guard.record([result("db-up", Status.OK)]).stored
        deliver_now(loaded, store)
        assert titles(receiver) == [
            "[P1] FIRING db-up (db)",
            "[P1] FIRING upkeep",
            "[P1] RESOLVED db-up (db)",
            "[P1] RESOLVED upkeep",
        ]
        assert set(receiver.keys().values()) == {1}
        assert [r.status for r in store.history("db-up")] == [Status.OK, Status.CRITICAL]
        assert {row["status"] for row in rows(store)} == {"sent"}
    finally:
        guard.close()
        store.close()


def test_an_import_cut_short_before_the_spill_was_emptied_is_not_imported_twice(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    url = "sqlite:///.upkeep/upkeep.db"
    loaded = loaded_for(tmp_path, url, receiver)
    store = Store.open(url, tmp_path)
    refusal = Refusal(store)
    guard = StoreGuard(loaded, store)
    try:
        refusal.refuse()
        assert not guard.record([result("db-up", Status.CRITICAL)]).stored
        spill_file = Path(str(guard.health.spill))
        guard.close()
        refusal.allow()
        kept = tmp_path / "spill-copy.db"
        shutil.copy(spill_file, kept)

        spill = Spill.open(url, tmp_path, str(tmp_path / "spill"))
        first = spill.reconcile(store)
        assert first is not None and (first.results, first.alerts) == (2, 2)
        spill.close()
        # As if the process died after the store's commit, before the spill was emptied.
        shutil.copy(kept, spill_file)
        spill = Spill.open(url, tmp_path, str(tmp_path / "spill"))
        again = spill.reconcile(store)
        assert again is not None and again.already_imported
        assert spill.episode() is None
        spill.close()
        assert len(store.history("db-up")) == 1
        with store.engine.connect() as connection:
            assert len(connection.execute(select(alerts)).all()) == 2
    finally:
        store.close()


@pytest.fixture
def restricted_store(postgres_dsn: str, tmp_path: Path) -> Iterator[tuple[StoreConfig, str, Any]]:
    """A schema owned by a login role of its own (not a superuser, which may not create
    schemas in the database); yield the store in it, the role, and an admin engine to
    take rights from it."""
    suffix = uuid.uuid4().hex[:10]
    role, schema = f"upkeep_role_{suffix}", f"upkeep_guard_{suffix}"
    admin = create_engine(normalise_url(postgres_dsn, tmp_path), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        connection.execute(text(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"'))
    base = postgres_dsn.split("?", 1)[0]
    url = base.replace("postgres@", f"{role}@", 1)
    try:
        yield StoreConfig.model_validate({"url": url, "schema": schema}), role, admin
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            connection.execute(text(f'DROP OWNED BY "{role}"'))
            connection.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


def test_a_postgres_role_that_loses_its_write_rights_alerts_from_the_spill(
    tmp_path: Path, restricted_store: tuple[StoreConfig, str, Any], receiver: WebhookReceiver
) -> None:
    store_config, role, admin = restricted_store
    assert store_config.url.startswith(f"postgresql://{role}@")
    loaded = loaded_for(tmp_path, store_yaml(store_config), receiver)
    store = store_config.open(tmp_path)
    guard = StoreGuard(loaded, store)
    schema = store_config.schema_name
    try:
        assert guard.record([result("db-up", Status.OK)]).stored
        assert guard.check_integrity() is not None and guard.health.integrity_ok
        with admin.connect() as connection:
            connection.execute(
                text(f'REVOKE INSERT, UPDATE ON ALL TABLES IN SCHEMA "{schema}" FROM "{role}"')
            )
        outcome = guard.record([result("db-up", Status.CRITICAL)])
        assert not outcome.stored and "permission denied" in (outcome.reason or "")
        integrity = guard.check_integrity()
        assert integrity is not None and not integrity.ok
        assert "may not write the results table" in integrity.reason
        deliver_spill(guard)
        assert titles(receiver) == ["[P1] FIRING db-up (db)", "[P1] FIRING upkeep"]

        with admin.connect() as connection:
            connection.execute(
                text(f'GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
            )
        assert guard.check_integrity() is not None and guard.health.integrity_ok
        assert guard.record([result("db-up", Status.CRITICAL)]).stored
        deliver_now(loaded, store)
        assert titles(receiver) == [
            "[P1] FIRING db-up (db)",
            "[P1] FIRING upkeep",
            "[P1] RESOLVED upkeep",
        ]
        assert set(receiver.keys().values()) == {1}
        assert len(store.history("db-up")) == 3
    finally:
        guard.close()
        store.close()


def test_a_second_outage_alerts_from_the_spill_like_the_first(
    tmp_path: Path, store_config: StoreConfig, receiver: WebhookReceiver
) -> None:
    """Writing an episode back empties the spill's tables, its checks included; the
    spill's store still had their ids cached, so the first batch of the next outage failed
    on them ("alerts could not be processed in the spill either"): its alerts were not
    processed, /healthz said unhealthy, and results could land under another check's id."""
    loaded = loaded_for(tmp_path, store_yaml(store_config), receiver)
    store = store_config.open(tmp_path)
    refusal = Refusal(store)
    guard = StoreGuard(loaded, store)
    try:
        refusal.refuse()
        assert not guard.record([result("staging-up", Status.CRITICAL)]).stored
        deliver_spill(guard)
        refusal.allow()
        assert guard.record([result("staging-up", Status.OK)]).reconciled is not None
        deliver_now(loaded, store)

        refusal.refuse()
        second = guard.record([result("db-up", Status.CRITICAL)])
        assert not second.stored and guard.health.alarm_ok, guard.health
        assert second.report.opened, second
        deliver_spill(guard)
        refusal.allow()
        assert guard.record([result("db-up", Status.OK)]).reconciled is not None
        deliver_now(loaded, store)
        # (upkeep:store, out twice in a row, may be called flapping the second time.)
        assert [title for title in titles(receiver) if "upkeep" not in title] == [
            "[P1] FIRING db-up (db)",
            "[P1] RESOLVED db-up (db)",
            "[P3] FIRING staging-up (staging)",
            "[P3] RESOLVED staging-up (staging)",
        ]
        assert set(receiver.keys().values()) == {1}
        assert [r.status for r in store.history("db-up")] == [Status.OK, Status.CRITICAL]
        assert [r.status for r in store.history("staging-up")] == [Status.OK, Status.CRITICAL]
    finally:
        guard.close()
        store.close()


def test_the_first_write_back_is_due_at_once_whatever_the_monotonic_clock_reads(
    tmp_path: Path, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Never tried" was 0.0 on the monotonic clock, which counts from boot: on a host up
    for less than the retry interval, the first write-back waited as if one had just been
    tried (seen on a freshly booted CI machine with the interval at an hour)."""
    monkeypatch.setattr(guard_module, "RECONCILE_RETRY_S", 3600.0)
    clock = FakeClock()  # its monotonic clock reads 0.0: a host that has just booted
    loaded = loaded_for(tmp_path, "sqlite:///.upkeep/upkeep.db", receiver)
    store = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    refusal = Refusal(store)
    guard = StoreGuard(loaded, store, clock=clock)
    try:
        refusal.refuse()
        assert not guard.record([result("db-up", Status.CRITICAL)]).stored
        refusal.allow()
        recorded = guard.record([result("db-up", Status.CRITICAL)])
        assert recorded.reconciled is not None and recorded.stored, recorded
    finally:
        guard.close()
        store.close()


def test_an_episode_another_process_wrote_back_is_not_started_again_while_the_store_works(
    tmp_path: Path, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes share the spill (the daemon and a cron ``upkeep check``). One writes
    the episode back once the store takes writes again; the other, whose next retry was
    not due yet, took the emptied spill for a new outage: it started a second episode,
    kept its results out of a working store and paged a second ``upkeep:store`` FIRING."""
    monkeypatch.setattr(guard_module, "RECONCILE_RETRY_S", 3600.0)
    url = "sqlite:///.upkeep/upkeep.db"
    loaded = loaded_for(tmp_path, url, receiver)
    store = Store.open(url, tmp_path)
    refusal = Refusal(store)
    daemon = StoreGuard(loaded, store)
    cron = None
    try:
        refusal.refuse()
        assert not daemon.record([result("db-up", Status.CRITICAL)]).stored
        cron = StoreGuard(loaded, Store.open(url, tmp_path))
        assert cron.spilling  # it found the daemon's episode; its first retry fails
        assert not cron.record([result("staging-up", Status.OK)]).stored
        deliver_spill(daemon)

        refusal.allow()
        assert daemon.record([result("db-up", Status.CRITICAL)]).reconciled is not None
        # The cron process's retry is not due for an hour: the store works all the same.
        later = cron.record([result("staging-up", Status.CRITICAL)])
        assert later.stored, later
        assert not cron.spilling and cron.health.status == "ok"
        assert daemon.spill_store is None and cron.spill_store is None
        deliver_now(loaded, store)
        assert titles(receiver) == [
            "[P1] FIRING db-up (db)",
            "[P1] FIRING upkeep",
            "[P1] RESOLVED upkeep",
            "[P3] FIRING staging-up (staging)",
        ]
        assert set(receiver.keys().values()) == {1}
    finally:
        daemon.close()
        if cron is not None:
            assert cron.main is not None
            cron.close()
            cron.main.close()
        store.close()


def test_a_notice_another_process_is_sending_from_the_spill_is_not_sent_again(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """A cron ``upkeep check`` was sending the spill's notices (to a slow receiver) when
    the daemon wrote the episode back: the store got them as ``sending`` under the cron
    process's claim, the cron process's "sent" then found no row to mark, and once the
    claim's lease ran out the store's dispatcher sent every one of them again."""
    from upkeep.alerting.delivery import lease_for

    url = "sqlite:///.upkeep/upkeep.db"
    loaded = loaded_for(tmp_path, url, receiver)
    store = Store.open(url, tmp_path)
    refusal = Refusal(store)
    daemon = StoreGuard(loaded, store)
    cron_store = Store.open(url, tmp_path)
    cron = None
    try:
        refusal.refuse()
        assert not daemon.record([result("db-up", Status.CRITICAL)]).stored
        cron = StoreGuard(loaded, cron_store)
        assert cron.spilling
        receiver.delay_s = 1.5
        sending = threading.Thread(target=deliver_spill, args=(cron,))
        sending.start()
        time.sleep(0.5)  # the cron process holds its claims and waits for the receiver
        refusal.allow()
        daemon.record([result("db-up", Status.CRITICAL)])
        sending.join(30)
        assert not sending.is_alive()
        receiver.delay_s = 0.0
        daemon.record([result("db-up", Status.CRITICAL)])
        assert not daemon.spilling and daemon.health.status == "ok"
        # Long after every lease, only the store's recovery is left to send.
        later = datetime.now(UTC) + lease_for(loaded.config.alerting.delivery) * 3
        assert all(report.ok for report in deliver_now(loaded, store, now=later))
        assert titles(receiver) == [
            "[P1] FIRING db-up (db)",
            "[P1] FIRING upkeep",
            "[P1] RESOLVED upkeep",
        ]
        assert set(receiver.keys().values()) == {1}
        assert {row["status"] for row in rows(store)} == {"sent"}
    finally:
        daemon.close()
        if cron is not None:
            cron.close()
        cron_store.close()
        store.close()
