"""SIGTERM and SIGINT for the CLI: end every command's process tree, clean up, exit 143/130.

Python's default SIGTERM ends the process on the spot: no ``finally``, no run record. A
CLI command instead turns either signal into ``Interrupted``: first every command the
process runs is asked to end its whole tree (``upkeep.io.process.end_all_launches``, which
reaches commands in worker threads too), then the work is unwound so each ``finally``
runs and a runbook run is recorded ``cancelled``; ``upkeep.cli.main`` exits with
128 + the signal's number (143 for SIGTERM, 130 for SIGINT), the shell's convention.

Synchronous code gets ``Interrupted`` raised where it stands (``install``); code under
``run_async`` has its main task cancelled with the reason, and ``Interrupted`` is raised
once the task has unwound. Even if upkeep is killed outright, the commands' supervisors
see upkeep gone and end their trees (see ``upkeep.io.process``).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

Result = TypeVar("Result")
HANDLED = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """The CLI received SIGTERM or SIGINT; ``exit_code`` is 128 + the signal's number.

    A BaseException, like KeyboardInterrupt, so ``except Exception`` does not swallow it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def reason(signum: int) -> str:
    """Given a signal number, return the reason recorded on what it interrupts."""
    return f"interrupted by {signal.Signals(signum).name}"


def end_all_launches() -> None:
    """Ask every command this process runs to end its tree (none if the seam never loaded:
    it is imported lazily, so ``upkeep --help`` stays quick)."""
    process = sys.modules.get("upkeep.io.process")
    if process is not None:
        process.end_all_launches()


def _raise(signum: int, frame: FrameType | None) -> None:
    del frame
    end_all_launches()
    raise Interrupted(signum)


def install() -> None:
    """Make SIGTERM and SIGINT raise ``Interrupted`` in the main thread (after asking every
    running command to end its tree)."""
    for signum in HANDLED:
        signal.signal(signum, _raise)


def run_async(main: Coroutine[Any, Any, Result]) -> Result:
    """Given a coroutine, run it in a new event loop and return its result.

    On SIGTERM or SIGINT every running command is asked to end its tree and the coroutine
    is cancelled with the message ``interrupted by SIGTERM`` (the reason a runbook run
    records); once it has unwound, raise ``Interrupted``. The process's handlers are the
    same afterwards as before.
    """
    import asyncio

    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    received: list[int] = []

    async def guarded() -> Result:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_signal(signum: int) -> None:
            if received:
                return  # Already unwinding; the first signal's cleanup is bounded.
            received.append(signum)
            end_all_launches()
            if task is not None:
                task.cancel(reason(signum))

        for signum in HANDLED:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            return await main
        except asyncio.CancelledError:
            if received:
                raise Interrupted(received[0]) from None
            raise
        finally:
            for signum in HANDLED:
                loop.remove_signal_handler(signum)

    try:
        return asyncio.run(guarded())
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: set outside Python, nothing to restore to
                signal.signal(signum, handler)
