"""The store on both backends: migrations, batched writes, history, retention with rollups."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from upkeep.config.models import StoreConfig
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.store.store import SCHEMA_REVISION, Store, StoreError


def result(check: str, at: datetime, status: Status = Status.OK, **metrics: float) -> CheckResult:
    return CheckResult(
        check=check,
        target="t",
        probe="host.disk",
        status=status,
        metrics=dict(metrics) or {"used_percent": 10.0},
        message=status.label,
        duration_ms=2.0,
        at=at,
        labels={"env": "prod"},
    )


@pytest.fixture
def store(store_config: StoreConfig, tmp_path: Path) -> Iterator[Store]:
    opened = store_config.open(tmp_path)
    yield opened
    opened.close()


def test_schema_revision_matches_the_migration_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import upkeep.store.store as module

    config = Config()
    config.set_main_option("script_location", str(Path(module.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_write_and_read_history(store: Store) -> None:
    now = datetime.now(UTC)
    batch = [result("disk", now - timedelta(minutes=minutes)) for minutes in range(10)]
    batch.append(result("memory", now, Status.WARNING, used_percent=85.5))
    assert store.write_results(batch) == 11
    history = store.history("disk", since=now - timedelta(minutes=4, seconds=30))
    assert [row.at for row in history] == [now - timedelta(minutes=m) for m in range(5)]
    assert all(row.at.tzinfo is not None for row in history)
    (memory,) = store.history("memory")
    assert memory.status is Status.WARNING
    assert memory.metrics == {"used_percent": 85.5}
    assert memory.probe == "host.disk" and memory.target == "t"
    assert len(store.history(None, since=now - timedelta(hours=1))) == 11
    assert store.known_checks() == ["disk", "memory"]


def test_latest_is_each_checks_newest_result(store: Store) -> None:
    now = datetime.now(UTC)
    store.write_results([result("disk", now - timedelta(minutes=m)) for m in (3, 1, 2)])
    store.write_results([result("memory", now - timedelta(hours=1), Status.CRITICAL)])
    latest = store.latest()
    assert set(latest) == {"disk", "memory"}
    assert latest["disk"].at == now - timedelta(minutes=1)
    assert latest["memory"].status is Status.CRITICAL and latest["memory"].at.tzinfo is not None
    assert latest["disk"].to_json()["status"] == "ok"


def test_check_dimension_follows_changes(store: Store) -> None:
    now = datetime.now(UTC)
    store.write_results([result("disk", now)])
    moved = CheckResult(
        check="disk",
        target="other",
        probe="host.disk",
        status=Status.OK,
        metrics={},
        message="",
        duration_ms=1.0,
        at=now + timedelta(seconds=1),
        labels={"env": "staging"},
    )
    store.write_results([moved])
    assert [row.target for row in store.history("disk")] == ["other", "other"]


def test_reopening_does_not_migrate_twice(store: Store, tmp_path: Path) -> None:
    store.migrate()
    store.migrate()
    with store.engine.connect() as connection:
        assert (
            connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            == SCHEMA_REVISION
        )


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        store.write_results([result("disk", datetime(2026, 1, 1))])  # noqa: DTZ001 - the point of the test


def test_retention_rolls_up_then_deletes(store: Store) -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    old_hour = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    rows = [
        result("disk", old_hour + timedelta(minutes=10), Status.OK, used_percent=10.0),
        result("disk", old_hour + timedelta(minutes=20), Status.WARNING, used_percent=85.0),
        result("disk", old_hour + timedelta(minutes=30), Status.CRITICAL, used_percent=95.0),
        result("disk", old_hour + timedelta(hours=1, minutes=5), Status.OK, used_percent=20.0),
        result("disk", now - timedelta(days=1), Status.OK, used_percent=30.0),
    ]
    store.write_results(rows)
    report = store.prune(keep_results=timedelta(days=7), keep_rollups=timedelta(days=365), now=now)
    assert (report.results_rolled_up, report.results_deleted) == (4, 4)
    assert [row.metrics["used_percent"] for row in store.history("disk")] == [30.0]
    first, second = store.rollups("disk")
    assert first["bucket_start"] == old_hour
    assert (first["results"], first["ok"], first["warning"], first["critical"]) == (3, 1, 1, 1)
    assert first["metrics"]["used_percent"] == {
        "min": 10.0,
        "avg": 190.0 / 3,
        "max": 95.0,
        "count": 3,
    }
    assert second["results"] == 1
    # A late arrival in an already rolled-up hour is merged, not double-counted or lost.
    store.write_results(
        [result("disk", old_hour + timedelta(minutes=50), Status.OK, used_percent=40.0)]
    )
    store.prune(keep_results=timedelta(days=7), keep_rollups=timedelta(days=365), now=now)
    merged = store.rollups("disk")[0]
    assert merged["results"] == 4 and merged["metrics"]["used_percent"]["max"] == 95.0
    assert merged["metrics"]["used_percent"]["avg"] == pytest.approx(230.0 / 4)
    # Rollups older than their own retention go too.
    report = store.prune(keep_results=timedelta(days=7), keep_rollups=timedelta(days=10), now=now)
    assert report.rollups_deleted == 2 and store.rollups("disk") == []


def test_sqlite_store_is_in_wal_mode_next_to_the_config(tmp_path: Path) -> None:
    opened = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    try:
        assert (tmp_path / ".upkeep" / "upkeep.db").exists()
        with opened.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        opened.close()


def test_unreachable_postgres_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open store") as caught:
        Store.open("postgresql://postgres:Store-Secret-9@127.0.0.1:1/none", tmp_path)
    assert "Store-Secret-9" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@127.0.0.1:1/upkeep?password=hunter22hunter&sslmode=disable",
        "postgresql://127.0.0.1:1/upkeep?user=app&sslpassword=hunter22hunter&password=hunter22hunter",
        "postgresql://app:hunter22hunter@127.0.0.1:1/upkeep",
        # An unencoded "/" in the password: the rest of it parses as the host and port.
        "postgresql://app:hunter22/hunter@127.0.0.1:1/upkeep",
        "postgresql://app:hunter22#hunter@127.0.0.1:1/upkeep",
    ],
)
def test_store_errors_show_the_url_without_any_password(tmp_path: Path, url: str) -> None:
    with pytest.raises(StoreError, match="cannot open store postgresql") as caught:
        Store.open(url, tmp_path)
    assert "hunter" not in str(caught.value)


OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from upkeep.store.store import Store
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
Store.open("sqlite:///.upkeep/upkeep.db", Path(sys.argv[1])).close()
"""


def test_processes_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    for attempt in range(4):
        directory = tmp_path / f"attempt-{attempt}"
        directory.mkdir()
        # Every process has imported everything before the common start time, so they
        # reach the migration together, as two `upkeep check` runs started at once do.
        start = time.time() + 2.0
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_AT_ONCE, str(directory), str(start)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        for process in processes:
            _, stderr = process.communicate(timeout=60)
            assert process.returncode == 0, stderr
        opened = Store.open("sqlite:///.upkeep/upkeep.db", directory)
        try:
            with opened.engine.connect() as connection:
                revision = connection.execute(text("SELECT version_num FROM alembic_version"))
                assert revision.scalars().all() == [SCHEMA_REVISION]
        finally:
            opened.close()
