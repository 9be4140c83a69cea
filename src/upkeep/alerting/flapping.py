"""Flap detection the way Nagios does it: weighted percent state change over 21 results.

Each of the last ``FLAP_HISTORY`` results is one letter of a history string (oldest
first). Every change between neighbours counts, recent changes more than old ones (weights
rise linearly from 0.75 to 1.25, as in Nagios' ``flapping.c``), and the sum is expressed
as a percent of the 20 possible changes. A check starts flapping when that percent rises
above the high threshold and stops only when it falls below the low one, so it does not
flap in and out of flapping.
"""

from __future__ import annotations

from upkeep.core.status import Status

FLAP_HISTORY = 21
LOW_WEIGHT = 0.75
HIGH_WEIGHT = 1.25
_LETTERS = {Status.OK: "o", Status.WARNING: "w", Status.CRITICAL: "c", Status.UNKNOWN: "u"}


def status_letter(status: Status) -> str:
    """Given a status, return its one-letter form in a history string."""
    return _LETTERS[status]


def append_history(history: str, status: Status) -> str:
    """Given a history string and a new status, return the history keeping the last 21."""
    return (history + _LETTERS[status])[-FLAP_HISTORY:]


def percent_state_change(history: str) -> float:
    """Given a history string (oldest first), return the weighted percent state change.

    A full history of 21 alternating results is 100 %; a constant one is 0 %. A shorter
    history is scored against the full 20 possible changes, so a new check is not called
    flapping on its first few results.
    """
    changes = 0.0
    for index in range(1, len(history)):
        if history[index] != history[index - 1]:
            position = index + (FLAP_HISTORY - len(history))
            changes += LOW_WEIGHT + (position - 1) * (HIGH_WEIGHT - LOW_WEIGHT) / (FLAP_HISTORY - 2)
    return changes * 100.0 / (FLAP_HISTORY - 1)


def next_flapping(was_flapping: bool, percent: float, low: float, high: float) -> bool:
    """Given the previous flapping flag, the percent change and thresholds, return the new flag."""
    if was_flapping:
        return percent >= low
    return percent > high
