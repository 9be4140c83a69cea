"""Time, injected: the one ``Clock`` everything that schedules, waits or stamps reads.

The scheduler, the runbook executor, the check runner, the dispatcher, the alert manager
and the store guard read the time and wait only through the ``Clock`` they are given; the
daemon gives all of them the same one. ``SystemClock`` is the real one (``SYSTEM_CLOCK``,
its shared instance: it holds no state, so defaults may share it). ``FakeClock`` moves
only when told to, and wakes what sleeps on it in deadline order, so tests (and
benchmarks) drive schedules through their public API without waiting for real time.

What stays on real time, in every clock: timeouts that bound real work (a probe, a step's
command or task, a runbook's ``timeout``, a send, the drain after SIGTERM) and the
durations measured of it. A fake clock cannot make a process, a socket or a database
finish sooner, so those are ``asyncio.timeout`` and ``time.perf_counter`` where the work is.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

FAKE_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""Where a ``FakeClock`` starts unless told otherwise."""
SETTLE_TIMEOUT_S = 10.0
"""How long (real seconds) ``FakeClock.advance`` waits for a task it woke to sleep on the
clock again or end, before it gives up with ``TimeoutError``."""
SETTLE_YIELDS = 3
"""Loop turns ``FakeClock.advance`` gives after the woken tasks have settled, so tasks they
started run up to their first real wait (a check stamps its result's time there)."""
SETTLE_POLL_S = 0.001
"""How often (real seconds) ``FakeClock.advance`` looks at a woken task that is busy with
real work (a store write on a worker thread)."""


class Clock(Protocol):
    """What reads the time and waits: wall time, a monotonic reading, sleeps and timeouts."""

    def now(self) -> datetime:
        """Return the current wall time, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Return seconds on a clock that never goes back (for intervals and deadlines)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Given seconds, return once that much time has passed on this clock (after one
        turn of the event loop if ``seconds`` is not positive)."""
        ...

    async def sleep_until(self, moment: datetime) -> None:
        """Given an aware wall time, return once ``now()`` has reached it."""
        ...

    async def wait(self, *events: asyncio.Event, timeout: float) -> bool:
        """Given events and seconds, return True as soon as one of the events is set, or
        False once ``timeout`` seconds have passed on this clock without that."""
        ...


class SystemClock:
    """The real clock: ``datetime.now(UTC)``, ``time.monotonic`` and asyncio's sleeps."""

    def now(self) -> datetime:
        """Return the current wall time, timezone-aware, in UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Given seconds, ``asyncio.sleep`` that long."""
        await asyncio.sleep(seconds)

    async def sleep_until(self, moment: datetime) -> None:
        """Given an aware wall time, return once the wall clock has reached it.

        The sleep runs on the monotonic clock; should the wall clock be set back meanwhile,
        the rest is slept again, so this never returns early.
        """
        while (remaining := (moment - self.now()).total_seconds()) > 0:
            await asyncio.sleep(remaining)

    async def wait(self, *events: asyncio.Event, timeout: float) -> bool:
        """Given events and seconds, return True as soon as one of the events is set, or
        False after ``timeout`` seconds."""
        if not events:
            await asyncio.sleep(timeout)
            return False
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        return any(event.is_set() for event in events)


SYSTEM_CLOCK = SystemClock()
"""The real clock; the default wherever a clock is taken."""


@dataclass(order=True)
class _Sleeper:
    deadline: timedelta
    """Elapsed time (since the clock's start) at which it wakes."""
    order: int
    """Ties on the deadline wake in the order they went to sleep."""
    future: asyncio.Future[None] = field(compare=False)
    owner: asyncio.Task[Any] | None = field(compare=False)


class FakeClock:
    """A clock that moves only when told to; it starts at ``start`` (aware).

    ``advance`` moves it forward step by step: each sleeper wakes at its own deadline, in
    deadline order, and the clock moves on only once every task it woke sleeps on it again
    or has ended (bounded by ``settle_timeout_s`` of real time), so a loop that sleeps
    every second sees every second. ``jump`` moves it at once, as a suspended machine
    resuming would: everything due wakes at the new time. ``set`` moves it while nothing
    sleeps through the move (for code that only reads the time).

    ``now`` may be read from worker threads; the rest belongs to the event loop's thread.
    """

    def __init__(
        self, start: datetime = FAKE_EPOCH, *, settle_timeout_s: float = SETTLE_TIMEOUT_S
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("a FakeClock starts at an aware time")
        self._start = start.astimezone(UTC)
        self._elapsed = timedelta(0)
        self._sleepers: list[_Sleeper] = []
        self._order = itertools.count()
        self._moving = False
        self.settle_timeout_s = settle_timeout_s

    # --- reading -----------------------------------------------------------------------------

    def now(self) -> datetime:
        """Return the fake wall time, aware, in UTC."""
        return self._start + self._elapsed

    def monotonic(self) -> float:
        """Return the seconds this clock has moved since it started."""
        return self._elapsed.total_seconds()

    @property
    def sleeping(self) -> int:
        """Return how many sleeps and waits are pending on this clock."""
        return len(self._sleepers)

    @property
    def next_wake(self) -> datetime | None:
        """Return when the earliest pending sleep ends, or None if nothing sleeps."""
        return self._start + self._sleepers[0].deadline if self._sleepers else None

    # --- sleeping ----------------------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        """Given seconds, return once the clock has been moved that far (after one turn of
        the event loop if ``seconds`` is not positive)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        await self._park(self._elapsed + _delta(seconds))

    async def sleep_until(self, moment: datetime) -> None:
        """Given an aware wall time, return once the clock has been moved to it."""
        if moment <= self.now():
            await asyncio.sleep(0)
            return
        await self._park(moment - self._start)

    async def wait(self, *events: asyncio.Event, timeout: float) -> bool:
        """Given events and seconds, return True as soon as one of the events is set, or
        False once the clock has been moved ``timeout`` seconds on."""
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        sleeper = self._register(self._elapsed + _delta(timeout)) if timeout > 0 else None
        try:
            if sleeper is None:
                await asyncio.sleep(0)
            else:
                pending: list[asyncio.Future[Any]] = [*waiters, sleeper.future]
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if sleeper is not None:
                self._discard(sleeper)
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        return any(event.is_set() for event in events)

    async def wait_for_sleepers(self, count: int, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Given a number, return once at least that many sleeps are pending on this clock
        (a test's way to know the code under test has reached its waits); raise
        ``TimeoutError`` after ``timeout_s`` real seconds."""
        deadline = time.monotonic() + timeout_s
        while self.sleeping < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.sleeping} sleep(s) pending on the clock after {timeout_s:g}s "
                    f"of real time; expected {count}"
                )
            await asyncio.sleep(SETTLE_POLL_S)

    # --- moving ------------------------------------------------------------------------------

    async def advance(self, by: timedelta | float) -> None:
        """Given a duration (or seconds), move the clock that far forward, waking each
        sleeper at its own deadline in deadline order.

        After each wake the clock waits until every task it woke sleeps on it again or has
        ended; raise ``TimeoutError`` if one does neither within ``settle_timeout_s`` real
        seconds (it waits on something the clock does not move), ``ValueError`` if ``by``
        is negative.
        """
        step = _delta(by)
        if step < timedelta(0):
            raise ValueError("a clock moves only forward")
        await self._move(self._elapsed + step, stepwise=True)

    async def advance_to(self, moment: datetime) -> None:
        """Given a later aware time, ``advance`` to it; raise ValueError if it is earlier."""
        await self.advance(moment - self.now())

    async def jump(self, by: timedelta | float) -> None:
        """Given a duration (or seconds), move the clock there at once, then wake everything
        due by then, in deadline order, all seeing the new time (a machine that was
        suspended). Raise as ``advance`` does."""
        step = _delta(by)
        if step < timedelta(0):
            raise ValueError("a clock moves only forward")
        await self._move(self._elapsed + step, stepwise=False)

    def set(self, moment: datetime) -> None:
        """Given an aware time not earlier than now, move the clock there at once.

        Raise ValueError if ``moment`` is earlier than now, RuntimeError if something
        sleeps on the clock until then (``advance`` wakes sleepers in order).
        """
        target = moment - self._start
        if target < self._elapsed:
            raise ValueError(f"a clock moves only forward: {moment} is before {self.now()}")
        if self._sleepers and self._sleepers[0].deadline <= target:
            raise RuntimeError("something sleeps on this clock until then: advance instead")
        self._elapsed = target

    async def _move(self, target: timedelta, *, stepwise: bool) -> None:
        if self._moving:
            raise RuntimeError("the clock is already being moved")
        self._moving = True
        try:
            if not stepwise:
                self._elapsed = target
            while self._sleepers and self._sleepers[0].deadline <= target:
                due = self._sleepers[0].deadline if stepwise else target
                self._elapsed = max(self._elapsed, due)
                woken: list[_Sleeper] = []
                while self._sleepers and self._sleepers[0].deadline <= due:
                    sleeper = heapq.heappop(self._sleepers)
                    if not sleeper.future.done():
                        sleeper.future.set_result(None)
                        woken.append(sleeper)
                await self._settle(woken)
            self._elapsed = max(self._elapsed, target)
        finally:
            self._moving = False

    async def _settle(self, woken: list[_Sleeper]) -> None:
        """Wait until every task in ``woken`` sleeps on this clock again or has ended."""
        owners = {sleeper.owner for sleeper in woken if sleeper.owner is not None}
        # Real time on purpose: this bounds how long real work (a worker thread) may take.
        deadline = time.monotonic() + self.settle_timeout_s
        turns = 0
        while busy := [task for task in owners if not task.done() and not self._parks(task)]:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"task {busy[0].get_name()} woken at {self.now().isoformat()} neither "
                    f"slept on the clock again nor ended within {self.settle_timeout_s:g}s"
                )
            # A few bare turns first (most woken tasks go back to sleep in one), then short
            # real pauses while one waits for a worker thread.
            await asyncio.sleep(0 if turns < 20 else SETTLE_POLL_S)
            turns += 1
        for _ in range(SETTLE_YIELDS):
            await asyncio.sleep(0)

    def _parks(self, task: asyncio.Task[Any]) -> bool:
        return any(sleeper.owner is task for sleeper in self._sleepers)

    def _register(self, deadline: timedelta) -> _Sleeper:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sleeper = _Sleeper(deadline, next(self._order), future, asyncio.current_task())
        heapq.heappush(self._sleepers, sleeper)
        return sleeper

    def _discard(self, sleeper: _Sleeper) -> None:
        if not sleeper.future.done():
            sleeper.future.cancel()
        if sleeper in self._sleepers:
            self._sleepers.remove(sleeper)
            heapq.heapify(self._sleepers)

    async def _park(self, deadline: timedelta) -> None:
        sleeper = self._register(deadline)
        try:
            await sleeper.future
        finally:
            self._discard(sleeper)


def _delta(by: timedelta | float) -> timedelta:
    return by if isinstance(by, timedelta) else timedelta(seconds=by)
