"""The clocks: the system's, the fake one tests move by hand, and the offset one spawned
daemons run on."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.clocks import OffsetClock
from upkeep.core.clock import SYSTEM_CLOCK, Clock, FakeClock, SystemClock

T0 = datetime(2026, 3, 29, 0, 59, 30, tzinfo=UTC)


def test_every_clock_is_a_clock() -> None:
    clocks: list[Clock] = [SystemClock(), FakeClock(), OffsetClock(Path("/nonexistent"))]
    assert all(clock.now().tzinfo is UTC for clock in clocks)


# --- SystemClock -----------------------------------------------------------------------------


def test_the_system_clock_reads_the_real_time() -> None:
    before = datetime.now(UTC)
    now = SYSTEM_CLOCK.now()
    assert now.utcoffset() == timedelta(0) and before <= now <= datetime.now(UTC)
    first = SYSTEM_CLOCK.monotonic()
    assert first <= SYSTEM_CLOCK.monotonic() <= time.monotonic()


async def test_the_system_clock_sleeps_in_real_time() -> None:
    started = time.monotonic()
    await SYSTEM_CLOCK.sleep(0.05)
    assert time.monotonic() - started >= 0.05
    moment = SYSTEM_CLOCK.now() + timedelta(milliseconds=50)
    await SYSTEM_CLOCK.sleep_until(moment)
    assert SYSTEM_CLOCK.now() >= moment


async def test_the_system_clock_waits_for_an_event_or_the_timeout() -> None:
    event = asyncio.Event()
    started = time.monotonic()
    assert await SYSTEM_CLOCK.wait(event, timeout=0.05) is False
    assert time.monotonic() - started >= 0.05
    asyncio.get_running_loop().call_later(0.02, event.set)
    started = time.monotonic()
    assert await SYSTEM_CLOCK.wait(asyncio.Event(), event, timeout=5) is True
    assert time.monotonic() - started < 1
    assert await SYSTEM_CLOCK.wait(timeout=0.01) is False


# --- FakeClock: reading and setting ----------------------------------------------------------


def test_a_fake_clock_stands_still_until_moved() -> None:
    clock = FakeClock(T0)
    assert clock.now() == T0 and clock.monotonic() == 0.0
    time.sleep(0.01)
    assert clock.now() == T0
    clock.set(T0 + timedelta(minutes=1))
    assert clock.now() == T0 + timedelta(minutes=1) and clock.monotonic() == 60.0
    with pytest.raises(ValueError, match="only forward"):
        clock.set(T0)
    with pytest.raises(ValueError, match="aware"):
        FakeClock(datetime(2026, 1, 1))  # noqa: DTZ001 - the naive time is the point


def test_a_fake_clock_starts_in_utc_whatever_zone_it_is_given() -> None:
    from zoneinfo import ZoneInfo

    clock = FakeClock(datetime(2026, 3, 29, 1, 59, 30, tzinfo=ZoneInfo("Europe/Berlin")))
    assert clock.now() == T0 and clock.now().tzinfo is UTC


def test_a_fake_clock_is_read_from_worker_threads() -> None:
    clock = FakeClock(T0)
    seen: list[datetime] = []
    reader = threading.Thread(target=lambda: seen.append(clock.now()))
    reader.start()
    reader.join()
    assert seen == [T0]


async def test_set_refuses_to_move_past_a_sleeper() -> None:
    clock = FakeClock(T0)
    sleeper = asyncio.create_task(clock.sleep(10))
    await clock.wait_for_sleepers(1)
    clock.set(T0 + timedelta(seconds=9))  # short of the deadline: fine
    with pytest.raises(RuntimeError, match="advance instead"):
        clock.set(T0 + timedelta(seconds=10))
    sleeper.cancel()
    await asyncio.gather(sleeper, return_exceptions=True)


# --- FakeClock: sleeping and advancing -------------------------------------------------------


async def test_advancing_wakes_sleepers_in_deadline_order_each_at_its_deadline() -> None:
    clock = FakeClock(T0)
    woken: list[tuple[str, datetime]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woken.append((name, clock.now()))

    async def until(name: str, moment: datetime) -> None:
        await clock.sleep_until(moment)
        woken.append((name, clock.now()))

    tasks = [
        asyncio.create_task(sleeper("three", 3)),
        asyncio.create_task(sleeper("one", 1)),
        asyncio.create_task(until("half past", T0 + timedelta(seconds=2.5))),
        asyncio.create_task(sleeper("two", 2)),
        asyncio.create_task(sleeper("nine", 9)),
    ]
    await clock.wait_for_sleepers(5)
    assert clock.next_wake == T0 + timedelta(seconds=1)
    await clock.advance(timedelta(seconds=5))
    assert woken == [
        ("one", T0 + timedelta(seconds=1)),
        ("two", T0 + timedelta(seconds=2)),
        ("half past", T0 + timedelta(seconds=2.5)),
        ("three", T0 + timedelta(seconds=3)),
    ]
    assert clock.now() == T0 + timedelta(seconds=5)
    assert clock.sleeping == 1 and clock.next_wake == T0 + timedelta(seconds=9)
    await clock.advance_to(T0 + timedelta(seconds=9))
    assert woken[-1] == ("nine", T0 + timedelta(seconds=9))
    await asyncio.gather(*tasks)


async def test_sleepers_with_one_deadline_wake_in_the_order_they_slept() -> None:
    clock = FakeClock(T0)
    woken: list[int] = []

    async def sleeper(number: int) -> None:
        await clock.sleep(1)
        woken.append(number)

    tasks = [asyncio.create_task(sleeper(number)) for number in range(5)]
    await clock.wait_for_sleepers(5)
    await clock.advance(1)
    assert woken == [0, 1, 2, 3, 4]
    await asyncio.gather(*tasks)


async def test_a_loop_that_sleeps_every_second_sees_every_second() -> None:
    clock = FakeClock(T0)
    ticks: list[datetime] = []

    async def every_second() -> None:
        while True:
            await clock.sleep(1)
            ticks.append(clock.now())

    ticker = asyncio.create_task(every_second())
    await clock.wait_for_sleepers(1)
    await clock.advance(5)
    assert ticks == [T0 + timedelta(seconds=second) for second in range(1, 6)]
    ticker.cancel()
    await asyncio.gather(ticker, return_exceptions=True)
    assert clock.sleeping == 0  # a cancelled sleep leaves nothing behind


async def test_a_jump_wakes_everything_due_once_at_the_new_time() -> None:
    clock = FakeClock(T0)
    ticks: list[datetime] = []

    async def every_second() -> None:
        while True:
            await clock.sleep(1)
            ticks.append(clock.now())

    ticker = asyncio.create_task(every_second())
    await clock.wait_for_sleepers(1)
    await clock.jump(timedelta(hours=1))
    assert ticks == [T0 + timedelta(hours=1)]
    ticker.cancel()
    await asyncio.gather(ticker, return_exceptions=True)


async def test_the_clock_waits_for_a_woken_task_busy_on_a_worker_thread() -> None:
    clock = FakeClock(T0)
    seen: list[datetime] = []

    async def worker() -> None:
        for _ in range(2):
            await clock.sleep(1)
            await asyncio.to_thread(time.sleep, 0.05)  # a store write, say
            seen.append(clock.now())

    task = asyncio.create_task(worker())
    await clock.wait_for_sleepers(1)
    await clock.advance(3)
    # Had the clock moved on while the thread worked, both would read T0 + 3 s.
    assert seen == [T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]
    await task


async def test_tasks_a_woken_task_starts_read_the_time_it_was_woken_at() -> None:
    clock = FakeClock(T0)
    stamps: list[datetime] = []

    async def stamp() -> None:
        stamps.append(clock.now())

    async def starter() -> None:
        while True:
            await clock.sleep(1)
            asyncio.create_task(stamp())  # noqa: RUF006 - ends at its first step

    task = asyncio.create_task(starter())
    await clock.wait_for_sleepers(1)
    await clock.advance(3)
    assert stamps == [T0 + timedelta(seconds=second) for second in (1, 2, 3)]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_woken_task_that_waits_on_something_else_fails_the_advance() -> None:
    clock = FakeClock(T0, settle_timeout_s=0.2)
    never = asyncio.Event()

    async def stuck() -> None:
        await clock.sleep(1)
        await never.wait()

    task = asyncio.create_task(stuck(), name="stuck")
    await clock.wait_for_sleepers(1)
    with pytest.raises(TimeoutError, match="task stuck woken at 2026-03-29T00:59:31"):
        await clock.advance(2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_sleeping_for_nothing_only_yields() -> None:
    clock = FakeClock(T0)
    await clock.sleep(0)
    await clock.sleep(-1)
    await clock.sleep_until(T0)
    assert clock.sleeping == 0 and clock.now() == T0


async def test_a_clock_moves_only_forward_and_by_one_mover_at_a_time() -> None:
    clock = FakeClock(T0, settle_timeout_s=5)
    with pytest.raises(ValueError, match="only forward"):
        await clock.advance(-1)
    with pytest.raises(ValueError, match="only forward"):
        await clock.jump(timedelta(seconds=-1))
    release = asyncio.Event()

    async def busy() -> None:
        await clock.sleep(1)
        await release.wait()

    task = asyncio.create_task(busy())
    await clock.wait_for_sleepers(1)
    mover = asyncio.create_task(clock.advance(2))
    await asyncio.sleep(0.05)  # the mover now waits for the busy task
    with pytest.raises(RuntimeError, match="already being moved"):
        await clock.advance(1)
    release.set()
    await mover
    await task
    assert clock.now() == T0 + timedelta(seconds=2)


async def test_waiting_on_a_fake_clock_ends_with_the_event_or_the_timeout() -> None:
    clock = FakeClock(T0)
    event = asyncio.Event()
    waiter = asyncio.create_task(clock.wait(event, timeout=10))
    await clock.wait_for_sleepers(1)
    event.set()
    assert await waiter is True
    assert clock.sleeping == 0 and clock.now() == T0

    waiter = asyncio.create_task(clock.wait(asyncio.Event(), timeout=10))
    await clock.wait_for_sleepers(1)
    await clock.advance(9)
    assert not waiter.done()
    await clock.advance(1)
    assert waiter.done() and waiter.result() is False

    event.clear()
    assert await clock.wait(event, timeout=0) is False
    event.set()
    assert await clock.wait(event, timeout=0) is True


async def test_waiting_for_sleepers_gives_up_in_real_time() -> None:
    with pytest.raises(TimeoutError, match="0 sleep"):
        await FakeClock(T0).wait_for_sleepers(1, timeout_s=0.05)


# --- OffsetClock (test support for spawned daemons) ------------------------------------------


def test_an_offset_clock_runs_at_real_pace_ahead_by_its_file(tmp_path: Path) -> None:
    clock = OffsetClock(tmp_path / "offset")
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 1  # no file: no offset
    clock.set_offset(120)
    reader = OffsetClock(tmp_path / "offset")  # another process reads the same file
    ahead = (reader.now() - datetime.now(UTC)).total_seconds()
    assert 119 < ahead < 121
    assert 119 < reader.monotonic() - time.monotonic() < 121
    target = datetime.now(UTC) + timedelta(minutes=10)
    clock.move_to(target)
    assert abs((reader.now() - target).total_seconds()) < 1
    with pytest.raises(ValueError, match="only forward"):
        clock.move_to(target - timedelta(minutes=1))


def test_an_offset_clock_starts_where_the_test_wants_it_in_the_minute(tmp_path: Path) -> None:
    clock = OffsetClock(tmp_path / "offset")
    now = clock.start_at_second(5)
    assert 5 <= now.second + now.microsecond / 1e6 < 6
    assert 0 <= clock.offset() < 60


async def test_moving_an_offset_clock_ends_sleeps_and_waits(tmp_path: Path) -> None:
    clock = OffsetClock(tmp_path / "offset")
    mover = OffsetClock(tmp_path / "offset")
    started = time.monotonic()
    asyncio.get_running_loop().call_later(0.1, mover.set_offset, 3600)
    await clock.sleep(60)
    asyncio.get_running_loop().call_later(0.1, mover.set_offset, 7200)
    assert await clock.wait(asyncio.Event(), timeout=60) is False
    target = mover.now() + timedelta(hours=1)
    asyncio.get_running_loop().call_later(0.1, mover.move_to, target)
    await clock.sleep_until(target)
    assert time.monotonic() - started < 5
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, event.set)
    assert await clock.wait(event, timeout=60) is True
