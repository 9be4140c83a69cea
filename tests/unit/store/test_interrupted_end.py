"""When a run whose owner died ended: ``interrupted_end``'s bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from upkeep.store.runs import interrupted_end

START = datetime(2030, 3, 1, 2, 0, tzinfo=UTC)
SWEEP = START + timedelta(seconds=70)


def test_the_last_heartbeat_ends_the_run() -> None:
    beat = START + timedelta(seconds=10)
    assert interrupted_end(SWEEP, beat, START) == (beat, True)


def test_a_later_recorded_moment_wins_over_the_heartbeat() -> None:
    step_end = START + timedelta(seconds=25)
    assert interrupted_end(SWEEP, START + timedelta(seconds=10), step_end) == (step_end, True)


def test_never_after_the_sweep_even_with_a_clock_ahead() -> None:
    assert interrupted_end(SWEEP, SWEEP + timedelta(minutes=5), START) == (SWEEP, True)


def test_nothing_known_keeps_the_sweep_moment() -> None:
    assert interrupted_end(SWEEP, None, START + timedelta(seconds=25)) == (SWEEP, False)
