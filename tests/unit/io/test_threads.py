"""``run_blocking``: blocking calls on daemon threads that nobody waits for past a deadline."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from upkeep.io.threads import run_blocking


def add(left: int, right: int) -> int:
    return left + right


def fail(message: str) -> None:
    raise ValueError(message)


async def test_returns_the_result_and_runs_on_a_daemon_thread() -> None:
    seen: list[threading.Thread] = []

    def record() -> str:
        seen.append(threading.current_thread())
        return "done"

    assert await run_blocking(add, 2, 3, timeout_s=5) == 5
    assert await run_blocking(record, timeout_s=5) == "done"
    (thread,) = seen
    assert thread is not threading.main_thread() and thread.daemon


async def test_an_exception_of_the_call_is_raised_to_the_caller() -> None:
    with pytest.raises(ValueError, match="boom"):
        await run_blocking(fail, "boom", timeout_s=5)


async def test_a_call_past_its_deadline_raises_timeout_without_waiting_for_it() -> None:
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await run_blocking(time.sleep, 5.0, timeout_s=0.2)
    assert time.perf_counter() - started < 1.0


def test_asyncio_run_returns_at_the_deadline_not_when_the_call_returns() -> None:
    finished = threading.Event()

    def hang() -> None:
        time.sleep(1.5)  # a stat on a hung NFS mount
        finished.set()

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await run_blocking(hang, timeout_s=0.2)

    started = time.perf_counter()
    asyncio.run(main())
    assert time.perf_counter() - started < 1.0
    assert not finished.is_set()
    # The abandoned call later finds its loop closed; that must pass quietly (an exception
    # in the thread would be reported by pytest's thread-exception hook as an error).
    assert finished.wait(5.0)
    time.sleep(0.1)
