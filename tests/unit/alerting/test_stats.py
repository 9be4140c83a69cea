"""Reliability figures over constructed incident histories, with exact expected numbers.

Every test uses the same 10-day period, [START, END) = 240 hours; ``h(x)`` is x hours
after START (negative: before it).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from upkeep.alerting.stats import (
    IncidentSpan,
    ReliabilityFigures,
    Subject,
    compute_stats,
    exact_percent,
)
from upkeep.core.text import format_percent
from upkeep.store.alerts import AlertState

START = datetime(2030, 1, 1, tzinfo=UTC)
HOURS = 240
END = START + timedelta(hours=HOURS)
H = 3600.0


def h(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def incident(
    opened: float,
    resolved: float | None,
    *,
    check: str = "web",
    target: str = "box",
    fired: float | None = None,
    acked: float | None = None,
    severity: str = "P2",
    number: int = 1,
) -> IncidentSpan:
    return IncidentSpan(
        id=number,
        check=check,
        target=target,
        severity=severity,
        opened_at=h(opened),
        fired_at=h(opened if fired is None else fired),
        resolved_at=None if resolved is None else h(resolved),
        first_acked_at=None if acked is None else h(acked),
        state=AlertState.RESOLVED if resolved is not None else AlertState.FIRING,
    )


def figures(
    incidents: list[IncidentSpan],
    since: dict[Subject, datetime] | None = None,
    targets: dict[str, timedelta] | None = None,
) -> dict[Subject, ReliabilityFigures]:
    return {
        (figure.scope, figure.name): figure
        for figure in compute_stats(incidents, START, END, since, targets)
    }


def check(result: dict[Subject, ReliabilityFigures], name: str = "web") -> ReliabilityFigures:
    return result[("check", name)]


# --- clipping at the period's edges ------------------------------------------------------------


def test_no_incidents_is_full_uptime_without_mtbf() -> None:
    result = figures([], since={("check", "web"): h(-100), ("target", "box"): h(-100)})
    web = check(result)
    assert web.observed_s == HOURS * H
    assert web.downtime_s == 0.0
    assert web.uptime_percent == 100.0
    assert (web.incidents, web.outages, web.open_incidents) == (0, 0, 0)
    assert web.mttr_s is None and web.mtbf_s is None and web.mtta_s is None
    assert (web.acked, web.unacked) == (0, 0)
    assert web.response_target_met_percent is None
    assert result[("target", "box")].uptime_percent == 100.0


def test_incident_straddling_the_start_counts_only_its_inside_part() -> None:
    web = check(figures([incident(-2, 4, fired=-1)]))
    assert web.downtime_s == 4 * H
    assert web.uptime_percent == pytest.approx(100 * 236 / 240)
    assert web.incidents == 1
    # Resolved inside the period: its whole length is the repair time.
    assert web.mttr_s == 6 * H
    # It started before the period: no failure started inside it.
    assert web.mtbf_s is None
    # It fired before the period: not part of this period's acknowledgements.
    assert (web.acked, web.unacked) == (0, 0)


def test_incident_straddling_the_end_is_downtime_but_not_yet_repaired() -> None:
    web = check(figures([incident(236, 250)]))
    assert web.downtime_s == 4 * H
    assert web.uptime_percent == pytest.approx(100 * 236 / 240)
    assert web.mttr_s is None
    assert web.mtbf_s == 236 * H
    assert web.open_incidents == 0


def test_incident_spanning_the_whole_period_is_zero_uptime() -> None:
    web = check(figures([incident(-10, 300)]))
    assert web.downtime_s == HOURS * H
    assert web.uptime_percent == 0.0
    assert web.incidents == 1
    assert web.mttr_s is None and web.mtbf_s is None


def test_open_incident_is_downtime_up_to_the_end_and_left_out_of_mttr() -> None:
    web = check(figures([incident(10, 12, number=1), incident(200, None, number=2)]))
    assert web.downtime_s == 42 * H
    assert web.uptime_percent == pytest.approx(100 * 198 / 240)
    assert (web.incidents, web.open_incidents) == (2, 1)
    assert web.mttr_s == 2 * H
    assert web.mtbf_s == 198 * H / 2


def test_incidents_outside_the_period_are_ignored() -> None:
    result = figures(
        [incident(-20, -10, number=1), incident(-5, 0, number=2), incident(240, 250, number=3)],
        since={("check", "web"): h(-100)},
    )
    web = check(result)
    assert web.incidents == 0 and web.downtime_s == 0.0 and web.uptime_percent == 100.0


# --- targets: the union of their checks ---------------------------------------------------------


def test_overlapping_incidents_of_two_checks_count_once_for_their_target() -> None:
    result = figures(
        [
            incident(10, 14, check="web", number=1),
            incident(12, 18, check="api", number=2),
        ]
    )
    web, api, box = check(result, "web"), check(result, "api"), result[("target", "box")]
    assert (web.downtime_s, web.mttr_s, web.mtbf_s) == (4 * H, 4 * H, 236 * H)
    assert (api.downtime_s, api.mttr_s, api.mtbf_s) == (6 * H, 6 * H, 234 * H)
    assert box.downtime_s == 8 * H
    assert box.uptime_percent == pytest.approx(100 * 232 / 240)
    assert (box.incidents, box.outages) == (2, 1)
    assert box.mttr_s == 8 * H
    assert box.mtbf_s == 232 * H
    assert list(result) == [("check", "api"), ("check", "web"), ("target", "box")]


def test_open_incident_keeps_the_targets_merged_outage_open() -> None:
    box = figures(
        [incident(100, None, check="web", number=1), incident(110, 120, check="api", number=2)]
    )[("target", "box")]
    assert box.downtime_s == 140 * H
    assert box.outages == 1 and box.mttr_s is None
    assert box.mtbf_s == 100 * H


def test_back_to_back_incidents_are_two_failures() -> None:
    web = check(figures([incident(10, 12, number=1), incident(12, 15, number=2)]))
    assert web.downtime_s == 5 * H
    assert (web.incidents, web.outages) == (2, 2)
    assert web.mttr_s == 2.5 * H
    assert web.mtbf_s == 235 * H / 2


# --- the observed period ------------------------------------------------------------------------


def test_check_first_seen_mid_period_is_observed_from_then() -> None:
    result = figures(
        [incident(180, 186)],
        since={("check", "web"): h(120), ("target", "box"): h(120), ("check", "new"): h(300)},
    )
    web = check(result)
    assert web.observed_s == 120 * H
    assert web.uptime_percent == 95.0
    assert web.mtbf_s == 114 * H
    assert result[("target", "box")].uptime_percent == 95.0
    # First seen after the period: nothing was observed, so there is no uptime to report.
    new = check(result, "new")
    assert new.observed_s == 0.0 and new.uptime_percent is None


def test_an_incident_older_than_the_first_result_moves_the_observed_start_back() -> None:
    # The results before the incident were pruned; the incident proves monitoring ran.
    web = check(figures([incident(60, 72)], since={("check", "web"): h(200)}))
    assert web.observed_s == 180 * H
    assert web.downtime_s == 12 * H


# --- acknowledgement ------------------------------------------------------------------------------


def test_mtta_over_acknowledged_incidents_fired_in_the_period() -> None:
    web = check(
        figures(
            [
                incident(-3, 1, fired=-2, acked=-1, number=1),  # fired before the period
                incident(10, 11, acked=10 + 5 / 60, number=2),
                incident(50, 52, acked=50 + 15 / 60, number=3),
                incident(100, 101, number=4),  # never acknowledged
            ]
        )
    )
    assert web.mtta_s == 600.0
    assert (web.acked, web.unacked) == (2, 1)


def test_mtta_without_acks_is_none() -> None:
    web = check(figures([incident(10, 11), incident(20, 22, number=2)]))
    assert web.mtta_s is None
    assert (web.acked, web.unacked) == (0, 2)


def test_acknowledged_while_pending_counts_as_immediate() -> None:
    web = check(figures([incident(10, 12, fired=11, acked=10.5)]))
    assert web.mtta_s == 0.0


def test_response_targets_met_and_missed() -> None:
    targets = {"P1": timedelta(minutes=15)}
    web = check(
        figures(
            [
                incident(10, 11, acked=10 + 5 / 60, severity="P1", number=1),  # met
                incident(20, 21, acked=20 + 20 / 60, severity="P1", number=2),  # late: missed
                incident(30, 30 + 10 / 60, severity="P1", number=3),  # recovered unacked in time
                incident(40, 41, severity="P1", number=4),  # unacked past its target: missed
                incident(50, 51, acked=55, severity="P4", number=5),  # no target for P4
                incident(HOURS - 5 / 60, None, severity="P1", number=6),  # target not passed yet
            ],
            targets=targets,
        )
    )
    assert (web.response_met, web.response_missed) == (1, 2)
    assert web.response_target_met_percent == pytest.approx(100 / 3)


def test_response_target_exactly_on_time_is_met() -> None:
    web = check(
        figures(
            [incident(10, 11, acked=10.25, severity="P1")],
            targets={"P1": timedelta(minutes=15)},
        )
    )
    assert (web.response_met, web.response_missed) == (1, 0)
    assert web.response_target_met_percent == 100.0


# --- contract -----------------------------------------------------------------------------------


def test_naive_datetimes_and_empty_periods_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        compute_stats([], START.replace(tzinfo=None), END)
    with pytest.raises(ValueError, match="end after"):
        compute_stats([], END, START)
    naive = IncidentSpan(1, "web", "box", "P1", h(1).replace(tzinfo=None), h(1))
    with pytest.raises(ValueError, match="naive"):
        compute_stats([naive], START, END)


def test_figures_serialise_to_json_in_seconds() -> None:
    document = check(figures([incident(10, 12)])).to_json()
    assert document["scope"] == "check" and document["name"] == "web"
    assert document["mttr_s"] == 7200.0 and document["downtime_s"] == 7200.0


# --- rendering ------------------------------------------------------------------------------------


def test_percent_never_rounds_up_to_a_hundred() -> None:
    assert format_percent(None) == "-"
    assert format_percent(100.0) == "100.000%"
    assert format_percent(99.99999) == "99.999%"
    assert format_percent(95.0) == "95.000%"
    assert format_percent(100 / 3) == "33.333%"
    assert format_percent(0.0) == "0.000%"
    # The largest float below 100: multiplying it by 1000 rounds to 100000.0, so truncating
    # the product (the old way) printed "100%" for an imperfect figure.
    assert format_percent(math.nextafter(100.0, 0.0)) == "99.999%"
    with pytest.raises(ValueError, match="within"):
        format_percent(100.00000000000001)
    with pytest.raises(ValueError, match="within"):
        format_percent(-0.5)


def test_zero_downtime_is_exactly_a_hundred_for_any_period_length() -> None:
    # 100 * x / x is not 100.0 for every float x (it was 100.00000000000001 for some), so a
    # check without downtime showed 99.999% or serialised above 100 (the last three periods
    # gave 100.00000000000001, 100.00000000000001 and 99.99999999999999).
    for micros in (1, 999_999, 3_174_117_916_527, 5_834_002_168_601, 6_561_859_883_644):
        end = START + timedelta(microseconds=micros)
        (web,) = compute_stats([], START, end, {("check", "web"): START - timedelta(days=1)})
        assert web.downtime_s == 0.0
        assert web.uptime_percent == 100.0
        assert format_percent(web.uptime_percent) == "100.000%"


def test_one_microsecond_of_downtime_in_a_year_is_not_a_hundred() -> None:
    end = START + timedelta(days=365)
    down = [
        IncidentSpan(
            1, "web", "box", "P2", h(10), h(10), resolved_at=h(10) + timedelta(microseconds=1)
        )
    ]
    (web, _box) = compute_stats(down, START, end)
    assert web.downtime_s == 1e-6
    assert web.uptime_percent is not None and web.uptime_percent < 100.0
    assert format_percent(web.uptime_percent) == "99.999%"
    assert json.loads(json.dumps(web.to_json()))["uptime_percent"] < 100.0


def test_a_check_never_up_has_no_mtbf() -> None:
    # Down from its first result to now: no time between failures to measure, so MTBF is
    # undefined (it was 0s), and nothing was repaired, so MTTR is undefined too.
    web = check(figures([incident(100, None)], since={("check", "web"): h(100)}))
    assert web.uptime_percent == 0.0
    assert web.mtbf_s is None and web.mttr_s is None
    assert web.to_json()["mtbf_s"] is None


def test_exact_percent_contract() -> None:
    assert exact_percent(0, 0) is None
    assert exact_percent(5, 5) == 100.0
    assert exact_percent(0, 5) == 0.0
    assert exact_percent(1, 3) == pytest.approx(100 / 3)
    assert exact_percent(10**18 - 1, 10**18) == math.nextafter(100.0, 0.0)
    with pytest.raises(ValueError, match="negative"):
        exact_percent(-1, 5)


# --- properties over generated histories ----------------------------------------------------------

# Histories on a grid of whole minutes plus an odd number of microseconds, so that an oracle
# that walks the grid minute by minute is exact, and the period is not a round float.
MINUTES = 600
JITTER = timedelta(microseconds=123_457)
GRID_START = START + JITTER


def at(minute: int) -> datetime:
    return GRID_START + timedelta(minutes=minute)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[IncidentSpan], int | None]:
    """A list of incidents of one check (some open, some outside the period) and the minute
    the check was first seen (None: observed over the whole period)."""
    first_seen = draw(st.one_of(st.none(), st.integers(-60, MINUTES + 30)))
    count = draw(st.integers(0, 6))
    spans = []
    for number in range(count):
        opened = draw(st.integers(-120, MINUTES + 60))
        length = draw(st.one_of(st.none(), st.integers(1, MINUTES)))
        spans.append(
            IncidentSpan(
                id=number,
                check="web",
                target="box",
                severity="P2",
                opened_at=at(opened),
                fired_at=at(opened),
                resolved_at=None if length is None else at(opened + length),
            )
        )
    return spans, first_seen


def down_minutes(spans: list[IncidentSpan], observed_from: int) -> set[int]:
    """The oracle: every grid minute in the observed period some incident covers."""
    down: set[int] = set()
    for span in spans:
        opened = (span.opened_at - GRID_START) // timedelta(minutes=1)
        ends = (
            MINUTES
            if span.resolved_at is None
            else (span.resolved_at - GRID_START) // timedelta(minutes=1)
        )
        down.update(range(max(opened, observed_from), min(ends, MINUTES)))
    return down


def failure_starts(spans: list[IncidentSpan]) -> set[int]:
    """The oracle of failures: grid minutes in the period where an outage starts, i.e. an
    incident opens and no other incident is strictly in progress (touching ones are two)."""
    bounds = [
        (
            (span.opened_at - GRID_START) // timedelta(minutes=1),
            None
            if span.resolved_at is None
            else (span.resolved_at - GRID_START) // timedelta(minutes=1),
        )
        for span in spans
    ]
    return {
        start
        for start, _ in bounds
        if 0 <= start < MINUTES
        and not any(other < start and (end is None or start < end) for other, end in bounds)
    }


@settings(max_examples=400, deadline=None, database=None)
@given(history=histories())
def test_uptime_is_exact_bounded_and_honest_for_any_history(
    history: tuple[list[IncidentSpan], int | None],
) -> None:
    spans, first_seen = history
    web_subject: Subject = ("check", "web")
    since = None if first_seen is None else {web_subject: at(first_seen)}
    result = {
        (figure.scope, figure.name): figure
        for figure in compute_stats(spans, GRID_START, at(MINUTES), since)
    }
    web = result.get(("check", "web"))
    if web is None:
        # Not monitored and no incident overlapping the period: nothing to report.
        assert first_seen is None
        return
    overlapping = [
        s for s in spans if s.opened_at < at(MINUTES) and (s.resolved_at or at(MINUTES)) > at(0)
    ]
    opened = [(s.opened_at - GRID_START) // timedelta(minutes=1) for s in overlapping]
    observed_from = 0 if first_seen is None else max(0, min([first_seen, *opened]))
    observed = max(0, MINUTES - observed_from)
    down = len(down_minutes(overlapping, observed_from))
    assert web.observed_s == observed * 60
    assert web.downtime_s == down * 60
    if observed == 0:
        assert web.uptime_percent is None
        return
    uptime = web.uptime_percent
    assert uptime is not None
    assert 0.0 <= uptime <= 100.0
    assert uptime == pytest.approx(100 * (observed - down) / observed, abs=1e-9)
    assert (uptime == 100.0) == (down == 0)
    assert (uptime == 0.0) == (down == observed)
    shown = format_percent(uptime)
    assert (shown == "100.000%") == (down == 0)
    assert json.loads(json.dumps(web.to_json()))["uptime_percent"] == uptime
    # MTBF exists only with a failure in the period and some time up: uptime per failure.
    failures = len(failure_starts(overlapping))
    if down == observed or not failures:
        assert web.mtbf_s is None
    else:
        assert web.mtbf_s == pytest.approx((observed - down) * 60 / failures)
    if web.mttr_s is not None:
        assert web.mttr_s > 0
