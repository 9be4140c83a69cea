"""The status page's reads on both backends (SQLite and PostgreSQL): hours with results
(raw and rolled up), mean durations, published updates and their pruning, and bars equal
to ``period_stats``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from tests.helpers import load_text, store_yaml
from tests.unit.web.status.seed import seed_incident, seed_results
from upkeep.alerting.stats import period_stats
from upkeep.config.loader import LoadedConfig
from upkeep.config.models import StoreConfig
from upkeep.store.schema import checks, incident_updates, result_rollups
from upkeep.store.store import Store
from upkeep.store.updates import publish_update, published_updates
from upkeep.web.status.figures import mean_response_ms, reported_runs
from upkeep.web.status.page import build_snapshot

NOW = datetime(2030, 3, 10, 12, 0, tzinfo=UTC)
TODAY = datetime(2030, 3, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def opened(store_config: StoreConfig, tmp_path: Path) -> Iterator[tuple[LoadedConfig, Store]]:
    text = f"""\
store: {store_yaml(store_config)}
targets:
  box: {{kind: http, url: "http://127.0.0.1:9/"}}
checks:
  web: {{target: box}}
  api: {{target: box}}
status_page:
  enabled: true
  history_days: 5
  components:
    - {{name: site, checks: [web, api]}}
"""
    loaded = load_text(tmp_path, text)
    store = loaded.config.store.open(loaded.base_dir)
    yield loaded, store
    store.close()


def test_reported_hours_come_from_results_and_rollups(opened: tuple[LoadedConfig, Store]) -> None:
    _, store = opened
    seed_results(store, "web", TODAY - 2 * HOUR, TODAY, every=timedelta(minutes=20))
    seed_results(store, "web", TODAY + 5 * HOUR, TODAY + 6 * HOUR, every=timedelta(minutes=30))
    with store.engine.begin() as connection:
        web_id = connection.execute(select(checks.c.id).where(checks.c.name == "web")).scalar_one()
        connection.execute(
            insert(result_rollups),
            [
                {
                    "check_id": web_id,
                    "resolution": "1h",
                    "bucket_start": TODAY - 2 * HOUR - offset * HOUR,
                    "results": 3,
                    "ok": 3,
                    "warning": 0,
                    "critical": 0,
                    "unknown": 0,
                    "duration_ms_avg": 400.0,
                    "duration_ms_max": 500.0,
                    "metrics": {},
                }
                for offset in (1, 2)
            ],
        )
    runs = reported_runs(store.engine, TODAY - DAY, NOW)
    assert runs == {
        "web": [(TODAY - 4 * HOUR, TODAY), (TODAY + 5 * HOUR, TODAY + 6 * HOUR)],
    }
    # Six raw results of 100 ms and two hourly buckets of three at 400 ms: (600 + 2400) / 12.
    mean = mean_response_ms(store.engine, ["web"], TODAY - DAY, TODAY)
    assert mean == pytest.approx(3000 / 12)
    assert mean_response_ms(store.engine, ["api"], TODAY - DAY, TODAY) is None


DAY = timedelta(days=1)


def test_bars_equal_period_stats(opened: tuple[LoadedConfig, Store]) -> None:
    loaded, store = opened
    for name in ("web", "api"):
        seed_results(store, name, NOW - 6 * DAY, NOW, every=timedelta(minutes=15))
    seed_incident(store, "web", TODAY - DAY + HOUR, TODAY - DAY + 3 * HOUR)
    seed_incident(store, "api", TODAY - DAY + 2 * HOUR, TODAY - DAY + 4 * HOUR)
    snapshot = build_snapshot(loaded, store, NOW)
    (site,) = snapshot.components
    for day in site.days:
        start = datetime.combine(day.day, datetime.min.time(), tzinfo=UTC)
        expected = {
            (f.scope, f.name): f for f in period_stats(store.engine, start, min(start + DAY, NOW))
        }[("target", "box")]
        assert day.figures.uptime_percent == expected.uptime_percent
        assert day.figures.downtime_s == expected.downtime_s
    yesterday = site.days[-2].figures
    assert yesterday.downtime_s == 3 * 3600 and yesterday.incidents == 2


def test_updates_are_kept_and_pruned_with_their_incident(
    opened: tuple[LoadedConfig, Store],
) -> None:
    _, store = opened
    old = seed_incident(store, "web", NOW - 400 * DAY, NOW - 399 * DAY)
    recent = seed_incident(store, "web", NOW - DAY, NOW - DAY + HOUR)
    for incident in (old, recent):
        assert publish_update(store.engine, incident, "on it", "user:ann", NOW) is not None
    assert publish_update(store.engine, 12345, "nobody", "user:ann", NOW) is None
    updates = published_updates(store.engine, [old, recent])
    assert [update.text for update in updates[recent]] == ["on it"]
    store.alerts.prune(keep_alerts=365 * DAY, keep_notifications=90 * DAY, now=NOW)
    with store.engine.connect() as connection:
        left = connection.execute(select(incident_updates.c.alert_id)).scalars().all()
    assert left == [recent]
