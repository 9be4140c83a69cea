"""The status page's snapshot: built once, answered stale while its successor is built,
rebuilt at once for a reloaded config; days cut in the page's own timezone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import load_text
from tests.unit.web.status.seed import seed_incident, seed_results
from upkeep.core.clock import FakeClock
from upkeep.engine.metrics import DaemonMetrics
from upkeep.web.app import DaemonState
from upkeep.web.status import routes
from upkeep.web.status.page import StatusSnapshot, build_snapshot
from upkeep.web.status.routes import StatusService

NOW = datetime(2030, 6, 10, 12, 0, tzinfo=UTC)
CONFIG = """\
timezone: {zone}
targets:
  box: {{kind: http, url: "http://127.0.0.1:9/"}}
checks:
  web: {{target: box}}
status_page:
  enabled: true
  history_days: 3
  title: {title}
  components:
    - {{name: site, checks: [web]}}
"""


@pytest.fixture
def state(tmp_path: Path) -> Iterator[DaemonState]:
    loaded = load_text(tmp_path, CONFIG.format(zone="UTC", title="First"))
    store = loaded.config.store.open(loaded.base_dir)
    seed_results(store, "web", NOW - timedelta(days=4), NOW)
    yield DaemonState(
        instance_id="h:1:a",
        loaded=loaded,
        store=store,
        metrics=DaemonMetrics(),
        clock=FakeClock(NOW),
    )
    store.close()


def test_a_stale_snapshot_is_served_while_its_successor_is_built(
    state: DaemonState, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = StatusService(state)
    generation, first = service.current()
    assert service.current() == (generation, first)  # fresh: the same
    release = threading.Event()
    started = threading.Event()

    def slow_build(*arguments: Any) -> StatusSnapshot:
        started.set()
        assert release.wait(10)
        return build_snapshot(*arguments)

    monkeypatch.setattr(routes, "build_snapshot", slow_build)
    monkeypatch.setattr(routes, "SNAPSHOT_TTL_S", 0.0)
    # Stale: the old snapshot answers at once while one thread rebuilds.
    assert service.current() == (generation, first)
    assert started.wait(10)
    assert service.current() == (generation, first)  # still building: no second build
    monkeypatch.setattr(routes, "SNAPSHOT_TTL_S", 3600.0)
    release.set()
    for _ in range(200):
        if service.current()[0] != generation:
            break
        threading.Event().wait(0.02)
    newer, second = service.current()
    assert newer > generation and second is not first


def test_a_reloaded_config_is_built_at_once(state: DaemonState, tmp_path: Path) -> None:
    service = StatusService(state)
    _, first = service.current()
    assert first.title == "First"
    (tmp_path / "reload").mkdir()
    state.loaded = load_text(tmp_path / "reload", CONFIG.format(zone="UTC", title="Second"))
    assert service.current()[1].title == "Second"


def test_days_are_cut_in_the_page_timezone(state: DaemonState, tmp_path: Path) -> None:
    """An incident 22:30-23:30 UTC on June 8 is June 9 00:30-01:30 in Berlin (UTC+2)."""
    seed_incident(
        state.store,
        "web",
        datetime(2030, 6, 8, 22, 30, tzinfo=UTC),
        datetime(2030, 6, 8, 23, 30, tzinfo=UTC),
    )
    by_day = {}
    for zone in ("UTC", "Europe/Berlin"):
        (tmp_path / zone.replace("/", "-")).mkdir()
        loaded = load_text(tmp_path / zone.replace("/", "-"), CONFIG.format(zone=zone, title="T"))
        (site,) = build_snapshot(loaded, state.store, NOW).components
        by_day[zone] = {day.day: day.figures.downtime_s for day in site.days}
    assert by_day["UTC"][date(2030, 6, 8)] == 3600 and by_day["UTC"][date(2030, 6, 9)] == 0
    assert by_day["Europe/Berlin"][date(2030, 6, 9)] == 3600
    assert by_day["Europe/Berlin"][date(2030, 6, 8)] == 0


def test_answers_are_rendered_again_with_the_next_snapshot(
    state: DaemonState, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = StatusService(state)
    rendered: list[int] = []

    def make(snapshot: StatusSnapshot) -> bytes:
        rendered.append(id(snapshot))
        return f"{snapshot.generated_at.isoformat()} {len(rendered)}".encode()

    def never(snapshot: StatusSnapshot) -> bytes:
        raise AssertionError("rendered on the request path")

    first = service.body(("test",), make)
    assert service.body(("test",), never) == first  # kept for its snapshot
    generation = service.current()[0]
    monkeypatch.setattr(routes, "SNAPSHOT_TTL_S", 0.0)
    service.current()  # stale: a rebuild starts
    monkeypatch.setattr(routes, "SNAPSHOT_TTL_S", 3600.0)  # and no other after it
    for _ in range(500):
        if service.current()[0] != generation:
            break
        threading.Event().wait(0.02)
    second = service.body(("test",), never)  # rendered by the rebuild, before the swap
    assert len(rendered) == 2 and second[0].endswith(b" 2") and second[2] != first[2]
