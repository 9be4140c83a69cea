"""The backup catalog on both stores: attempts, events, and pruning of old history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from upkeep.config.models import StoreConfig
from upkeep.store.backups import BackupEventKind, BackupEventStatus, BackupRecord, BackupStatus
from upkeep.store.store import Store

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(store_config: StoreConfig, tmp_path: Path) -> Iterator[Store]:
    opened = store_config.open(tmp_path)
    yield opened
    opened.close()


def test_records_and_events_round_trip_and_old_history_is_pruned(store: Store) -> None:
    catalog = store.backups
    catalog.add(
        BackupRecord("b-new", "db", BackupStatus.OK, NOW, NOW, raw_bytes=10, stored_bytes=4)
    )
    catalog.add(BackupRecord("b-old", "db", BackupStatus.REMOVED, NOW - timedelta(days=400), NOW))
    catalog.add(
        BackupRecord(
            "f-old", "db", BackupStatus.FAILED, NOW - timedelta(days=400), None, message="x"
        )
    )
    catalog.add(BackupRecord("b-kept", "db", BackupStatus.OK, NOW - timedelta(days=400), NOW))
    catalog.mark("b-new", verified_at=NOW, verified_ok=True)
    for age in (1, 500):
        catalog.add_event(
            kind=BackupEventKind.DRILL,
            source="db",
            backup_id="b-new",
            status=BackupEventStatus.OK,
            started_at=NOW - timedelta(days=age),
            finished_at=NOW - timedelta(days=age),
            message="passed",
            detail={"rto_s": 1.5},
        )
    record = catalog.get("b-new")
    assert record is not None and record.verified_ok is True and record.verified_at == NOW
    records = [r.id for r in catalog.records("db")]
    assert records[0] == "b-new" and sorted(records[1:]) == ["b-kept", "b-old", "f-old"]
    assert [e.detail for e in catalog.events(source="db", kind=BackupEventKind.DRILL)] == [
        {"rto_s": 1.5}
    ] * 2
    # Removed and failed rows and old events go; a complete backup's row stays.
    assert catalog.prune(NOW - timedelta(days=365)) == 3
    assert [r.id for r in catalog.records("db")] == ["b-new", "b-kept"]
    assert len(catalog.events()) == 1
