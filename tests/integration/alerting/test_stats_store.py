"""Reading incidents and first-seen times from a real store (SQLite and PostgreSQL), and the
figures computed from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from tests.integration.store import test_store as backends
from upkeep.alerting.stats import (
    compute_stats,
    first_seen,
    load_incident,
    load_incidents,
)
from upkeep.store.schema import alert_events, alerts, check_results, checks, result_rollups
from upkeep.store.store import Store

# The same two-backend fixture as the store tests: SQLite in tmp_path, PostgreSQL in a schema.
store = backends.store

START = datetime(2030, 3, 1, tzinfo=UTC)
END = START + timedelta(days=10)
H = 3600.0


def h(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def add_check(
    store: Store, name: str, target: str, first: datetime, labels: dict[str, str] | None = None
) -> int:
    with store.engine.begin() as connection:
        key = connection.execute(
            insert(checks).values(
                name=name, target=target, probe="http", labels=labels or {}, first_seen=first
            )
        ).inserted_primary_key
    assert key is not None
    return int(key[0])


def add_result(store: Store, check_id: int, at: datetime) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            insert(check_results).values(check_id=check_id, at=at, status=0, duration_ms=1.0)
        )


def add_rollup(store: Store, check_id: int, bucket: datetime) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            insert(result_rollups).values(
                check_id=check_id,
                resolution="1h",
                bucket_start=bucket,
                results=1,
                ok=1,
                warning=0,
                critical=0,
                unknown=0,
                duration_ms_avg=1.0,
                duration_ms_max=1.0,
            )
        )


def add_alert(
    store: Store,
    check: str,
    opened: datetime,
    *,
    fired: datetime | None,
    resolved: datetime | None = None,
    acked: datetime | None = None,
    target: str = "box",
    severity: str = "P2",
    labels: dict[str, str] | None = None,
) -> int:
    state = "resolved" if resolved is not None else ("pending" if fired is None else "firing")
    values: dict[str, Any] = {
        "check": check,
        "target": target,
        "severity": severity,
        "labels": labels or {"env": "prod"},
        "state": state,
        "status": 2,
        "message": f"{check} is down",
        "active": None if resolved is not None else check,
        "opened_at": opened,
        "fired_at": fired,
        "resolved_at": resolved,
        "last_result_at": resolved or opened,
        "first_acked_at": acked,
        "acked_by": "alice" if acked is not None else None,
        "acked_at": acked,
    }
    with store.engine.begin() as connection:
        key = connection.execute(insert(alerts).values(**values)).inserted_primary_key
        assert key is not None
        alert_id = int(key[0])
        timeline: list[tuple[datetime | None, str, str, str | None]] = [
            (opened, "opened", "critical", None),
            (fired, "firing", "", None),
        ]
        timeline.append((acked, "acknowledged", "", "alice"))
        connection.execute(
            insert(alert_events),
            [
                {"alert_id": alert_id, "at": at, "kind": kind, "detail": detail, "author": author}
                for at, kind, detail, author in timeline
                if at is not None
            ],
        )
    return alert_id


def test_load_incidents_reads_fired_alerts_overlapping_the_period(store: Store) -> None:
    straddling = add_alert(store, "web", h(-2), fired=h(-1), resolved=h(4))
    add_alert(store, "web", h(-20), fired=h(-19), resolved=h(-10))  # ended before the period
    add_alert(store, "web", h(8), fired=None, resolved=h(9))  # pending that recovered
    acked = add_alert(store, "api", h(10), fired=h(10.5), resolved=h(14), acked=h(11))
    ongoing = add_alert(store, "db", h(200), fired=h(200), labels={"env": "staging"})
    add_alert(store, "db", h(250), fired=h(250), resolved=h(251))  # after the period

    found = load_incidents(store.engine, START, END)
    assert [incident.id for incident in found] == [straddling, acked, ongoing]
    first = found[0]
    assert (first.check, first.target, first.severity) == ("web", "box", "P2")
    assert first.opened_at == h(-2) and first.fired_at == h(-1) and first.resolved_at == h(4)
    assert all(i.opened_at.tzinfo is not None and i.fired_at.tzinfo is not None for i in found)
    assert found[1].first_acked_at == h(11) and found[1].acked_by == "alice"
    assert found[2].resolved_at is None and found[2].state == "firing"
    assert dict(found[2].labels) == {"env": "staging"}

    assert [i.id for i in load_incidents(store.engine, START, END, {"env": "prod"})] == [
        straddling,
        acked,
    ]
    assert load_incidents(store.engine, START, END, {"team": "x"}) == []
    assert [i.id for i in load_incidents(store.engine, START, END, open_only=True)] == [ongoing]
    with pytest.raises(ValueError, match="naive"):
        load_incidents(store.engine, START.replace(tzinfo=None), END)


def test_first_seen_is_the_earliest_registration_result_or_rollup(store: Store) -> None:
    web = add_check(store, "web", "box", h(50), {"env": "prod"})
    add_result(store, web, h(60))
    add_rollup(store, web, h(30))  # raw results of that hour were pruned into a rollup
    api = add_check(store, "api", "box", h(100), {"env": "prod"})
    add_result(store, api, h(100))
    add_check(store, "db", "sql", h(-5), {"env": "staging"})

    seen = first_seen(store.engine)
    assert seen == {
        ("check", "web"): h(30),
        ("check", "api"): h(100),
        ("target", "box"): h(30),
        ("check", "db"): h(-5),
        ("target", "sql"): h(-5),
    }
    assert all(moment.tzinfo is not None for moment in seen.values())
    assert set(first_seen(store.engine, {"env": "staging"})) == {
        ("check", "db"),
        ("target", "sql"),
    }


def test_figures_from_the_store(store: Store) -> None:
    add_check(store, "web", "box", h(-100))
    add_check(store, "api", "box", h(120))  # added mid-period
    add_check(store, "quiet", "other", h(-100))
    add_alert(store, "web", h(10), fired=h(10), resolved=h(14), acked=h(10 + 5 / 60), severity="P1")
    add_alert(store, "api", h(180), fired=h(180), resolved=h(186))
    add_alert(store, "web", h(182), fired=h(182.5), severity="P1")  # open at the end

    figures = {
        (figure.scope, figure.name): figure
        for figure in compute_stats(
            load_incidents(store.engine, START, END),
            START,
            END,
            first_seen(store.engine),
            {"P1": timedelta(minutes=15)},
        )
    }
    web = figures[("check", "web")]
    assert web.downtime_s == (4 + 58) * H
    assert web.uptime_percent == pytest.approx(100 * 178 / 240)
    assert (web.incidents, web.open_incidents) == (2, 1)
    assert web.mttr_s == 4 * H
    assert web.mtbf_s == 178 * H / 2
    assert web.mtta_s == 300.0
    # The open one passed its 15-minute target unacknowledged.
    assert (web.response_met, web.response_missed) == (1, 1)

    api = figures[("check", "api")]
    assert api.observed_s == 120 * H
    assert api.uptime_percent == 95.0

    box = figures[("target", "box")]
    # web [10,14) + web [182, end) + api [180,186) overlapping it = 4 + 60 hours.
    assert box.downtime_s == 64 * H
    assert (box.incidents, box.outages) == (3, 2)
    assert box.mttr_s == 4 * H

    quiet = figures[("check", "quiet")]
    assert quiet.uptime_percent == 100.0 and quiet.mtbf_s is None
    assert figures[("target", "other")].incidents == 0


def test_incident_timeline_and_notes(store: Store) -> None:
    fired = add_alert(store, "web", h(1), fired=h(2), acked=h(3))
    pending = add_alert(store, "api", h(1), fired=None)

    incident = load_incident(store.engine, fired)
    assert incident is not None and incident.check == "web" and incident.message == "web is down"
    assert load_incident(store.engine, pending) is None
    assert load_incident(store.engine, 999_999) is None

    assert store.alerts.add_note(fired, "restarted nginx", "bob", h(4)) is True
    assert store.alerts.add_note(pending, "not an incident", "bob", h(4)) is False
    assert store.alerts.add_note(999_999, "nothing", "bob", h(4)) is False

    events = store.alerts.events(fired)
    assert [(e.kind, e.at, e.author) for e in events] == [
        ("opened", h(1), None),
        ("firing", h(2), None),
        ("acknowledged", h(3), "alice"),
        ("note", h(4), "bob"),
    ]
    assert events[-1].detail == "restarted nginx"
    assert [e.kind for e in store.alerts.events(pending)] == ["opened"]
