"""The alert state machine of one check: pure, so every rule is testable without a store.

Given the check's stored state, its open alert (if any) and a new result, ``advance``
returns the new state and what happened:

* a failing result (warning, critical, unknown) with no open alert **opens** one,
  ``pending`` (a soft state, as Icinga calls it);
* it **fires** (becomes hard, an incident) once the check has failed ``after`` results in
  a row *and* for at least ``for``; a status change while open is a **change**;
* an ok result **resolves** a pending alert at once (a soft failure that recovered), and
  a firing one after ``clear_after`` ok results in a row;
* flapping (``flapping.py``) **starts** and **stops** with hysteresis. While a check flaps
  its alert stays open and firing, so an operator gets one flapping notice instead of a
  firing and a resolved notice per flip.

Counters saturate (``consecutive_bad`` at ``after``, ``consecutive_ok`` at ``clear_after``)
so a check that stays healthy, or stays broken, reaches a fixed point and costs no write.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from upkeep.alerting.flapping import append_history, next_flapping, percent_state_change
from upkeep.core.status import Status, worst
from upkeep.store.alerts import AlertState, CheckState

_FROM_LETTER = {"o": Status.OK, "w": Status.WARNING, "c": Status.CRITICAL, "u": Status.UNKNOWN}


class Transition(StrEnum):
    """What a result did to a check's alert."""

    OPEN = "opened"
    FIRE = "firing"
    CHANGE = "changed"
    RESOLVE = "resolved"
    FLAP_START = "flapping"
    FLAP_STOP = "flapping_stopped"


@dataclass(frozen=True)
class OpenAlert:
    """The part of an open alert the state machine reads."""

    state: AlertState
    """Pending or firing: an open alert."""
    status: Status


@dataclass(frozen=True)
class Policy:
    """A check's alerting rules: soft/hard, recovery and flapping thresholds."""

    hold_for: timedelta = timedelta(0)
    after: int = 1
    clear_after: int = 1
    flap_low: float = 5.0
    flap_high: float = 20.0


@dataclass(frozen=True)
class Step:
    """The outcome of one result: the new state, the transitions, and the alert's status."""

    state: CheckState
    transitions: tuple[Transition, ...]
    alert_status: Status | None
    """The status the open alert has after this result (None if no alert is open)."""
    alert_state: AlertState | None
    """Pending, firing, or None when no alert is open after this result."""


def worst_in_history(history: str) -> Status:
    """Given a history string, return its worst status (ok for an empty or healthy one)."""
    return worst([_FROM_LETTER[letter] for letter in history])


def advance(
    state: CheckState, alert: OpenAlert | None, status: Status, at: datetime, policy: Policy
) -> Step:
    """Given a check's state, its open alert, a new result's status and time, and the
    check's policy, return the new state and the transitions the result caused.
    """
    history = append_history(state.history, status)
    flapping = next_flapping(
        state.flapping, percent_state_change(history), policy.flap_low, policy.flap_high
    )
    transitions: list[Transition] = []
    alert_state = alert.state if alert else None
    alert_status = alert.status if alert else None
    bad_since: datetime | None

    if status is not Status.OK:
        consecutive_bad = min(state.consecutive_bad + 1, policy.after)
        consecutive_ok = 0
        bad_since = state.bad_since or at
        if alert_state is None:
            transitions.append(Transition.OPEN)
            alert_state, alert_status = AlertState.PENDING, status
        elif status is not alert_status:
            transitions.append(Transition.CHANGE)
            alert_status = status
        if (
            alert_state == AlertState.PENDING
            and consecutive_bad >= policy.after
            and at - bad_since >= policy.hold_for
        ):
            transitions.append(Transition.FIRE)
            alert_state = AlertState.FIRING
    else:
        consecutive_bad = state.consecutive_bad
        consecutive_ok = min(state.consecutive_ok + 1, policy.clear_after)
        bad_since = state.bad_since
        recovered = alert_state == AlertState.PENDING or consecutive_ok >= policy.clear_after
        if recovered:
            consecutive_bad, bad_since = 0, None
            # A flapping check's alert stays open: its flips are not news, its end is.
            if alert_state is not None and not flapping:
                transitions.append(Transition.RESOLVE)
                alert_state, alert_status = None, None

    if flapping and not state.flapping:
        transitions.append(Transition.FLAP_START)
        if alert_state is None:
            transitions.append(Transition.OPEN)
            alert_status = worst_in_history(history)
        if alert_state != AlertState.FIRING:
            transitions.append(Transition.FIRE)
        alert_state = AlertState.FIRING
    elif state.flapping and not flapping:
        transitions.append(Transition.FLAP_STOP)
        if status is Status.OK and alert_state is not None and consecutive_ok >= policy.clear_after:
            transitions.append(Transition.RESOLVE)
            alert_state, alert_status = None, None

    new_state = replace(
        state,
        history=history,
        flapping=flapping,
        consecutive_bad=consecutive_bad,
        consecutive_ok=consecutive_ok,
        bad_since=bad_since,
        last_status=status,
        last_at=at,
    )
    return Step(new_state, tuple(transitions), alert_status, alert_state)
