"""The alert state machine: soft/hard, recovery, flapping, counters that saturate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from upkeep.alerting.flapping import FLAP_HISTORY, percent_state_change
from upkeep.alerting.state import OpenAlert, Policy, Step, Transition, advance
from upkeep.core.status import Status
from upkeep.store.alerts import AlertState, CheckState

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OK, WARN, CRIT = Status.OK, Status.WARNING, Status.CRITICAL


def open_alert(step: Step) -> OpenAlert | None:
    """Given a step, return the open alert it leaves (None if it leaves none)."""
    if step.alert_state is None:
        return None
    assert step.alert_status is not None  # an open alert always has a status
    return OpenAlert(step.alert_state, step.alert_status)


def drive(
    statuses: list[Status], policy: Policy, every: timedelta = timedelta(seconds=30)
) -> tuple[list[tuple[Transition, ...]], CheckState, OpenAlert | None]:
    """Feed statuses one every ``every``; return the transitions of each result."""
    state = CheckState("c")
    alert: OpenAlert | None = None
    seen: list[tuple[Transition, ...]] = []
    for index, status in enumerate(statuses):
        step = advance(state, alert, status, T0 + index * every, policy)
        state = step.state
        alert = open_alert(step)
        seen.append(step.transitions)
    return seen, state, alert


def test_a_failure_fires_at_once_by_default_and_one_ok_resolves_it() -> None:
    seen, state, alert = drive([CRIT, CRIT, OK], Policy())
    assert seen == [(Transition.OPEN, Transition.FIRE), (), (Transition.RESOLVE,)]
    assert alert is None
    assert state.bad_since is None


def test_after_n_results_keeps_the_alert_pending_soft_until_the_nth() -> None:
    seen, _, alert = drive([CRIT, CRIT, CRIT], Policy(after=3))
    assert seen == [(Transition.OPEN,), (), (Transition.FIRE,)]
    assert alert == OpenAlert(AlertState.FIRING, CRIT)


def test_a_soft_failure_that_recovers_resolves_at_once_without_firing() -> None:
    seen, _, alert = drive([CRIT, OK, CRIT], Policy(after=3, clear_after=5))
    assert seen == [(Transition.OPEN,), (Transition.RESOLVE,), (Transition.OPEN,)]
    assert alert == OpenAlert(AlertState.PENDING, CRIT)


def test_for_duration_must_also_have_passed() -> None:
    # Results every 30 s, for: 1m → the third failing result (60 s after the first) fires.
    seen, _, _ = drive([WARN, WARN, WARN], Policy(hold_for=timedelta(minutes=1), after=2))
    assert seen == [(Transition.OPEN,), (), (Transition.FIRE,)]


def test_clear_after_needs_that_many_ok_results_in_a_row() -> None:
    seen, _, alert = drive([CRIT, OK, OK, CRIT, OK, OK, OK], Policy(clear_after=3))
    assert seen[2] == ()
    assert seen[3] == ()  # still the same firing alert; the ok streak restarts
    assert seen[6] == (Transition.RESOLVE,)
    assert alert is None


def test_a_status_change_while_open_is_a_change() -> None:
    seen, _, alert = drive([WARN, CRIT], Policy())
    assert seen[1] == (Transition.CHANGE,)
    assert alert == OpenAlert(AlertState.FIRING, CRIT)


def test_counters_saturate_so_a_steady_check_reaches_a_fixed_point() -> None:
    _, healthy, _ = drive([OK] * 50, Policy(clear_after=2))
    _, broken, _ = drive([CRIT] * 50, Policy(after=3))
    assert (healthy.consecutive_ok, healthy.history) == (2, "o" * FLAP_HISTORY)
    assert broken.consecutive_bad == 3


def test_flapping_is_one_notice_and_keeps_the_alert_open_until_it_settles() -> None:
    flips = [CRIT, OK] * 10
    seen, state, alert = drive(flips, Policy())
    flat = [t for step in seen for t in step]
    assert flat.count(Transition.FLAP_START) == 1
    started = next(i for i, step in enumerate(seen) if Transition.FLAP_START in step)
    # Before flapping is detected each flip is news; after, nothing is until it settles.
    assert all(step == () for step in seen[started + 1 :])
    assert state.flapping and alert is not None and alert.state == "firing"
    # Steady ok results bring the percent under the low threshold and resolve it.
    state_after = state
    current: OpenAlert | None = alert
    stopped_at = None
    for index in range(40):
        step = advance(
            state_after, current, OK, T0 + timedelta(hours=1, seconds=30 * index), Policy()
        )
        state_after = step.state
        current = open_alert(step)
        if Transition.FLAP_STOP in step.transitions:
            stopped_at = index
            assert Transition.RESOLVE in step.transitions
            break
    assert stopped_at is not None
    assert current is None


@pytest.mark.parametrize(
    ("history", "expected"),
    [("o" * 21, 0.0), ("oc" * 10 + "o", 100.0), ("", 0.0), ("o" * 20 + "c", 125.0 / 20)],
)
def test_percent_state_change_weights_recent_changes_more(history: str, expected: float) -> None:
    assert percent_state_change(history) == pytest.approx(expected)
