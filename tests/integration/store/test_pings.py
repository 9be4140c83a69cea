"""Heartbeat pings on both stores: what the probe reads, first-seen, and retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from upkeep.config.models import StoreConfig
from upkeep.store.pings import MAX_PING_BODY_CHARS, PingKind, heartbeat_digest
from upkeep.store.schema import pings
from upkeep.store.store import Store

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
BEAT = heartbeat_digest("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
OTHER = heartbeat_digest("another-heartbeat-id-of-22")


@pytest.fixture
def store(store_config: StoreConfig, tmp_path: Path) -> Iterator[Store]:
    opened = store_config.open(tmp_path)
    yield opened
    opened.close()


def minutes(count: float) -> timedelta:
    return timedelta(minutes=count)


def test_the_summary_has_the_newest_of_each_kind_and_the_start_of_the_last_run(
    store: Store,
) -> None:
    log = store.pings
    assert log.summary(BEAT).newest is None
    log.record(BEAT, PingKind.START, NOW - minutes(60))
    log.record(BEAT, PingKind.SUCCESS, NOW - minutes(50), exit_code=0, source="10.0.0.7")
    log.record(BEAT, PingKind.START, NOW - minutes(30))  # a run that never finished
    log.record(BEAT, PingKind.LOG, NOW - minutes(25), body="half way")
    log.record(BEAT, PingKind.START, NOW - minutes(20))
    failed = log.record(BEAT, PingKind.FAIL, NOW - minutes(15), exit_code=2, body="x" * 20_000)
    log.record(OTHER, PingKind.SUCCESS, NOW)
    summary = log.summary(BEAT)
    assert summary.success is not None and summary.success.source == "10.0.0.7"
    assert summary.fail is not None and summary.fail.id == failed and summary.fail.exit_code == 2
    assert summary.completion == summary.fail
    assert summary.run_start is not None and summary.run_start.received_at == NOW - minutes(20)
    assert summary.newest == summary.fail
    # A completion without a start of its own has no run start: the start before it
    # belonged to the run the earlier completion ended.
    log.record(BEAT, PingKind.SUCCESS, NOW - minutes(5))
    assert log.summary(BEAT).run_start is None
    recent = log.recent(BEAT)
    assert [ping.kind for ping in recent[:3]] == [PingKind.SUCCESS, PingKind.FAIL, PingKind.START]
    assert len(recent[1].body) == MAX_PING_BODY_CHARS
    assert recent[-1].received_at == NOW - minutes(60)


def test_first_seen_is_recorded_once(store: Store) -> None:
    assert store.pings.first_seen(BEAT, NOW) == NOW
    assert store.pings.first_seen(BEAT, NOW + timedelta(days=3)) == NOW
    assert store.pings.first_seen(OTHER, NOW + timedelta(days=3)) == NOW + timedelta(days=3)


def test_retention_keeps_the_newest_of_each_kind_and_at_most_a_cap_per_heartbeat(
    store: Store,
) -> None:
    log = store.pings
    old = NOW - timedelta(days=200)
    for index, kind in enumerate([PingKind.START, PingKind.SUCCESS] * 3):
        log.record(BEAT, kind, old + minutes(index))
    log.record(BEAT, PingKind.FAIL, old + minutes(10))
    log.record(OTHER, PingKind.SUCCESS, old)  # no longer configured
    for index in range(30):
        log.record(BEAT, PingKind.LOG, NOW - minutes(30 - index))
    log.first_seen(BEAT, old)
    log.first_seen(OTHER, old)
    deleted = log.prune(NOW - timedelta(days=90), {BEAT}, keep_per_heartbeat=20)
    with store.engine.connect() as connection:
        left = connection.execute(
            select(pings.c.heartbeat, pings.c.kind, pings.c.received_at)
        ).all()
    kinds = sorted(row.kind for row in left if row.received_at < NOW - timedelta(days=90))
    # The newest start, success and failure of the configured heartbeat outlive retention,
    # and the cap keeps the 20 newest of it (plus those three).
    assert kinds == ["fail", "start", "success"]
    assert sum(1 for row in left if row.kind == "log") == 20 and len(left) == 23
    assert all(row.heartbeat == BEAT for row in left)
    assert deleted == 4 + 1 + 10
    assert log.summary(BEAT).success is not None
    assert log.first_seen(OTHER, NOW) == NOW  # forgotten, so seen anew
