"""The one seam for blocking calls made from async code: a daemon thread under a deadline.

``asyncio.to_thread`` runs calls on the loop's default executor, and ``asyncio.run`` joins
that executor's threads before it returns. A call that never returns (a ``statvfs`` on a
hung NFS mount, a read from a dead network file system) then keeps ``upkeep check`` from
exiting long after the check itself timed out. ``run_blocking`` runs each call on its own
daemon thread and stops waiting at the deadline. Python cannot kill a thread, so a call
past its deadline is abandoned: it finishes (or not) on its own, nobody waits for it, and
it ends with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


async def run_blocking(function: Callable[[*Ts], T], *args: *Ts, timeout_s: float) -> T:
    """Given a blocking function, its arguments and a deadline, run it on a daemon thread
    and return its result.

    An exception the function raises is raised here. Raise ``TimeoutError`` if it has
    not returned within ``timeout_s``; the thread is then abandoned, not joined, so
    neither this call nor ``asyncio.run`` waits for it. Cancelling the caller abandons
    the thread the same way.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: tuple[T] | Exception) -> None:
        # Runs on the loop; after a timeout or cancellation nobody is waiting any more.
        if future.done():
            return
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome[0])

    def work() -> None:
        outcome: tuple[T] | Exception
        try:
            outcome = (function(*args),)
        except Exception as error:  # noqa: BLE001 - handed to the awaiting caller, who raises it
            outcome = error
        # The loop may have closed while the call ran (asyncio.run returned after the
        # deadline); then there is no one to tell, and the answer is dropped.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome)

    name = getattr(function, "__name__", "call")
    threading.Thread(target=work, name=f"upkeep-blocking-{name}", daemon=True).start()
    async with asyncio.timeout(timeout_s):
        return await future
