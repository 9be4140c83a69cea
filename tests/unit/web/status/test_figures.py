"""The status page's figures over a seeded SQLite store: states, daily bars equal to
``period_stats``, the unknown-hour policies and maintenance counted apart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import load_text
from tests.unit.web.status.seed import seed_incident, seed_results, seed_state
from upkeep.alerting.stats import Subject, period_stats
from upkeep.config.loader import LoadedConfig
from upkeep.core.status import Status
from upkeep.store.store import Store
from upkeep.web.status.figures import SpanFigures, merge_spans, subtract_spans
from upkeep.web.status.page import ComponentView, StatusSnapshot, build_snapshot

NOW = datetime(2030, 1, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
TODAY = datetime(2030, 1, 10, tzinfo=UTC)


def config(policy: str = "excluded", extra: str = "") -> str:
    return f"""\
targets:
  box: {{kind: http, url: "http://127.0.0.1:9/"}}
  other: {{kind: http, url: "http://127.0.0.1:9/"}}
checks:
  web: {{target: box, labels: {{tier: front}}}}
  api: {{target: box}}
  db: {{target: other}}
  quiet: {{target: other}}
windows:
  upgrade:
    start: "2030-01-08T10:00:00+00:00"
    duration: 2h
    mute: {{checks: [db]}}
    description: database upgrade
  runbooks-only: {{schedule: "0 1 * * *", duration: 1h}}
{extra}
status_page:
  enabled: true
  history_days: 7
  unknown_policy: {policy}
  components:
    - {{name: site, checks: [web, api]}}
    - {{name: front, labels: {{tier: front}}}}
    - {{name: database, checks: [db]}}
    - {{name: silent, checks: [quiet]}}
"""


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[tuple[LoadedConfig, Store]]:
    loaded = load_text(tmp_path, config())
    store = loaded.config.store.open(loaded.base_dir)
    start = NOW - timedelta(days=10)
    for name, target in (("web", "box"), ("api", "box"), ("db", "other")):
        seed_results(store, name, start, NOW, target=target)
        seed_state(store, name, NOW - timedelta(minutes=1))
    yield loaded, store
    store.close()


def snapshot(loaded: LoadedConfig, store: Store) -> StatusSnapshot:
    return build_snapshot(loaded, store, NOW)


def component(result: StatusSnapshot, name: str) -> tuple[ComponentView, dict[date, SpanFigures]]:
    """Return a component's view and its figures by day."""
    view = next(view for view in result.components if view.name == name)
    return view, {day.day: day.figures for day in view.days}


def test_state_is_the_worst_firing_alert_of_the_component(
    opened: tuple[LoadedConfig, Store],
) -> None:
    loaded, store = opened
    assert {view.name: view.state for view in snapshot(loaded, store).components} == {
        "site": "operational",
        "front": "operational",
        "database": "operational",
        "silent": "unknown",  # none of its checks ever reported
    }
    seed_incident(store, "api", NOW - timedelta(hours=1), None, status=Status.WARNING)
    assert {view.name: view.state for view in snapshot(loaded, store).components}["site"] == (
        "degraded"
    )
    seed_incident(store, "web", NOW - timedelta(minutes=30), None, status=Status.CRITICAL)
    states = {view.name: view.state for view in snapshot(loaded, store).components}
    assert states["site"] == "outage" and states["front"] == "outage"
    assert snapshot(loaded, store).state == "outage"


def test_a_component_whose_checks_were_only_ever_ok_is_operational(tmp_path: Path) -> None:
    """Alerting stores no state for a check whose results were all ok; its results alone
    make it reported (a daemon's fresh site showed such components as unknown)."""
    loaded = load_text(tmp_path, config())
    store = loaded.config.store.open(loaded.base_dir)
    try:
        seed_results(store, "db", NOW - timedelta(hours=2), NOW, target="other")
        states = {view.name: view.state for view in snapshot(loaded, store).components}
        assert (states["database"], states["site"]) == ("operational", "unknown")
    finally:
        store.close()


def test_a_pending_alert_is_no_outage(opened: tuple[LoadedConfig, Store]) -> None:
    loaded, store = opened
    with store.alerts.transaction() as connection:
        store.alerts.insert_alert(
            connection,
            check="web",
            target="box",
            severity="P2",
            labels={},
            state="pending",
            status=Status.CRITICAL,
            message="",
            opened_at=NOW - timedelta(minutes=2),
            last_result_at=NOW,
        )
    assert {view.name: view.state for view in snapshot(loaded, store).components}["site"] == (
        "operational"
    )


def test_daily_bars_equal_period_stats_for_each_day(opened: tuple[LoadedConfig, Store]) -> None:
    loaded, store = opened
    # Overlapping incidents of two checks of one target: the union counts once.
    seed_incident(
        store, "web", TODAY - 3 * DAY + timedelta(hours=2), TODAY - 3 * DAY + timedelta(hours=5)
    )
    seed_incident(
        store, "api", TODAY - 3 * DAY + timedelta(hours=4), TODAY - 3 * DAY + timedelta(hours=6)
    )
    # Across midnight: split between two days.
    seed_incident(
        store, "api", TODAY - 2 * DAY - timedelta(hours=1), TODAY - 2 * DAY + timedelta(hours=2)
    )
    seed_incident(store, "web", NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    result = snapshot(loaded, store)
    site = component(result, "site")
    front = component(result, "front")
    compared = 0
    for offset in range(7):
        start = TODAY - offset * DAY
        end = min(start + DAY, NOW)
        figures = {(f.scope, f.name): f for f in period_stats(store.engine, start, end)}
        checked: tuple[tuple[dict[date, SpanFigures], Subject], ...] = (
            (site[1], ("target", "box")),
            (front[1], ("check", "web")),
        )
        for days, subject in checked:
            bar = days[start.date()]
            expected = figures[subject]
            assert bar.unknown_s == 0 and bar.maintenance_s == 0
            assert bar.uptime_percent == expected.uptime_percent
            assert bar.downtime_s == expected.downtime_s
            assert bar.observed_s == expected.observed_s
            compared += 1
    assert compared == 14
    three_days_ago = site[1][(TODAY - 3 * DAY).date()]
    # 02:00-06:00 (not 3h + 2h) and 23:00-24:00 of the incident across midnight.
    assert three_days_ago.downtime_s == 5 * 3600
    assert three_days_ago.incidents == 3


def test_maintenance_is_counted_apart(opened: tuple[LoadedConfig, Store]) -> None:
    loaded, store = opened
    # 09:00-12:00 on the window's day; the window (10:00-12:00) covers two hours of it.
    day = TODAY - 2 * DAY
    seed_incident(store, "db", day + timedelta(hours=9), day + timedelta(hours=12))
    result = snapshot(loaded, store)
    bar = component(result, "database")[1][day.date()]
    assert bar.maintenance_s == 7200
    assert bar.downtime_s == 3600  # only the hour outside the window
    assert bar.uptime_percent == pytest.approx(100 * (86400 - 7200 - 3600) / (86400 - 7200))
    # The window concerns only the component of the check it mutes; a window without
    # mute (runbooks only) is not shown.
    site_bar = component(result, "site")[1][day.date()]
    assert site_bar.maintenance_s == 0
    assert [item.window for item in result.maintenance] == ["upgrade"]
    assert result.maintenance[0].components == ("database",)
    assert result.maintenance[0].phase == "past"
    view = component(result, "database")[0]
    window_bar = next(bar for bar in view.bars() if bar.first == day.date())
    assert window_bar.days == 1 and window_bar.level.endswith(" m")
    assert "2h maintenance" in window_bar.text()


def test_state_is_maintenance_while_a_window_is_open(tmp_path: Path) -> None:
    extra = """  now-window:
    start: "2030-01-10T11:00:00+00:00"
    duration: 2h
    mute: {labels: {tier: front}}
  later:
    start: "2030-01-20T11:00:00+00:00"
    duration: 1h
    mute: {checks: [api]}"""
    loaded = load_text(tmp_path, config(extra=extra))
    store = loaded.config.store.open(loaded.base_dir)
    try:
        seed_results(store, "web", NOW - 3 * DAY, NOW)
        seed_incident(store, "web", NOW - timedelta(minutes=20), None)
        result = snapshot(loaded, store)
        states = {view.name: view.state for view in result.components}
        assert states["front"] == "maintenance" and states["site"] == "maintenance"
        phases = {(item.window, item.phase) for item in result.maintenance}
        assert ("now-window", "ongoing") in phases and ("later", "upcoming") in phases
    finally:
        store.close()


@pytest.mark.parametrize(
    ("policy", "uptime", "unknown"),
    [
        ("up", 100 * (24 - 1) / 24, 11 * 3600),
        ("down", 100 * (24 - 1 - 11) / 24, 11 * 3600),
        ("excluded", 100 * (13 - 1) / 13, 11 * 3600),
    ],
)
def test_unknown_policy(tmp_path: Path, policy: str, uptime: float, unknown: float) -> None:
    """A day in which the check reported only until 12:00, with an incident 12:00-13:00
    (an incident is downtime whatever the policy): 11 hours without data."""
    loaded = load_text(tmp_path, config(policy))
    store = loaded.config.store.open(loaded.base_dir)
    try:
        day = TODAY - 3 * DAY  # not the day of the window `upgrade`
        seed_results(store, "db", day - 3 * DAY, day + timedelta(hours=12), target="other")
        seed_results(store, "db", day + DAY, NOW, target="other")
        seed_incident(store, "db", day + timedelta(hours=12), day + timedelta(hours=13))
        bar = component(snapshot(loaded, store), "database")[1][day.date()]
        assert bar.unknown_s == unknown
        assert bar.uptime_percent == pytest.approx(uptime)
        # The day before, fully reported, is not touched by the policy.
        before = component(snapshot(loaded, store), "database")[1][(day - DAY).date()]
        assert before.uptime_percent == 100.0 and before.unknown_s == 0
    finally:
        store.close()


def test_days_before_the_first_result_have_no_data(opened: tuple[LoadedConfig, Store]) -> None:
    loaded, store = opened
    result = snapshot(loaded, store)
    silent = component(result, "silent")[0]
    assert all(day.figures.uptime_percent is None for day in silent.days)
    assert [bar.days for bar in silent.bars()] == [7]


def test_span_arithmetic() -> None:
    def at(hour: int) -> datetime:
        return TODAY + timedelta(hours=hour)

    assert merge_spans([(at(3), at(5)), (at(1), at(2)), (at(2), at(3)), (at(7), at(7))]) == [
        (at(1), at(5))
    ]
    assert subtract_spans([(at(0), at(10))], [(at(2), at(3)), (at(5), at(12))]) == [
        (at(0), at(2)),
        (at(3), at(5)),
    ]


def test_a_stored_one_off_window_counts_too(opened: tuple[LoadedConfig, Store]) -> None:
    loaded, store = opened
    day = TODAY - DAY
    store.runs.add_window(
        "hotfix",
        day + timedelta(hours=1),
        day + timedelta(hours=4),
        created_by="user:ann",
        comment="hotfix of the web tier",
        mute={"labels": {"tier": "front"}},
    )
    result = snapshot(loaded, store)
    for name in ("site", "front"):
        assert component(result, name)[1][day.date()].maintenance_s == 3 * 3600
    assert component(result, "database")[1][day.date()].maintenance_s == 0
    hotfix = next(item for item in result.maintenance if item.window == "hotfix")
    assert hotfix.components == ("site", "front") and hotfix.description == "hotfix of the web tier"


def test_incidents_can_be_left_off(tmp_path: Path) -> None:
    loaded = load_text(
        tmp_path,
        config().replace("  history_days: 7\n", "  history_days: 7\n  publish_incidents: false\n"),
    )
    store = loaded.config.store.open(loaded.base_dir)
    try:
        seed_results(store, "web", NOW - 3 * DAY, NOW)
        seed_incident(store, "web", NOW - DAY, NOW - DAY + timedelta(hours=1))
        result = snapshot(loaded, store)
        assert result.incidents == []
        # The downtime still counts: only the list is left off.
        assert component(result, "front")[1][(NOW - DAY).date()].downtime_s == 3600
    finally:
        store.close()


def test_the_hour_under_way_is_not_judged(opened: tuple[LoadedConfig, Store]) -> None:
    """Results stop at 12:00: at 12:30 nothing is unknown yet; at 14:30 the two whole
    hours 12:00-14:00 are."""
    loaded, store = opened
    for moment, unknown in ((NOW + timedelta(minutes=30), 0), (NOW + timedelta(hours=2.5), 7200)):
        result = build_snapshot(loaded, store, moment)
        assert component(result, "site")[1][TODAY.date()].unknown_s == unknown


def test_reported_hours_are_read_in_part_between_full_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from upkeep.web.status import figures

    loaded = load_text(tmp_path, config())
    store = loaded.config.store.open(loaded.base_dir)
    hour = timedelta(hours=1)
    try:
        seed_results(store, "web", TODAY, TODAY + 2 * hour)
        hours = figures.ReportedHours()
        assert hours.runs(store.engine, TODAY - DAY, TODAY + 3 * hour) == {
            "web": [(TODAY, TODAY + 2 * hour)]
        }
        # New results since the last read, and a late one within the margin, are found.
        seed_results(store, "web", TODAY + 3 * hour, TODAY + 4 * hour)
        seed_results(store, "web", TODAY + 2 * hour, TODAY + 2 * hour + timedelta(minutes=1))
        # One written very late, long before the last read, waits for the next full read.
        seed_results(store, "web", TODAY - 10 * hour, TODAY - 9 * hour)
        assert hours.runs(store.engine, TODAY - DAY, TODAY + 5 * hour) == {
            "web": [(TODAY, TODAY + 4 * hour)]
        }
        monkeypatch.setattr(figures, "FULL_REFRESH_S", 0.0)
        assert hours.runs(store.engine, TODAY - DAY, TODAY + 5 * hour) == {
            "web": [(TODAY - 10 * hour, TODAY - 9 * hour), (TODAY, TODAY + 4 * hour)]
        }
    finally:
        store.close()
