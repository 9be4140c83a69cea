"""A clock for ``upkeep serve`` run as a real process: real time plus an offset in a file.

A spawned daemon cannot be handed a ``FakeClock``: it runs real commands, takes real locks
and answers HTTP while it schedules. ``OffsetClock`` runs at the real pace, ahead of the
system clock by the number of seconds in a file the test writes. The test sets it before
the daemon starts (a firing lands where the test wants it in the minute, so no test waits
for a quiet part of a real minute) and moves it forward while the daemon runs (the next
minute's firing comes now, not in up to a minute of real time). Sleeps and waits look at
the file every ``POLL_S``, so a move ends them as it would end a real one.

It is test support: ``tests/support/clocked_serve.py`` runs ``upkeep serve`` on it. Nothing
under ``src/`` reads the file or any setting that would bring this clock in.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from upkeep.core.clock import SYSTEM_CLOCK

POLL_S = 0.05
"""How often a sleep or a wait looks at the offset again (real seconds)."""


class OffsetClock:
    """Real time plus the offset (seconds, never negative) written in ``path``; no file is
    an offset of 0. The test writes it (``set_offset``, ``move_to``), the daemon reads it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._offset = 0.0

    # --- reading (the daemon) ----------------------------------------------------------------

    def offset(self) -> float:
        """Return the offset in seconds, read again whenever the file has been replaced."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return 0.0
        seen = (status.st_ino, status.st_mtime_ns)
        if seen != self._seen:
            self._offset = float(self.path.read_text(encoding="utf-8"))
            self._seen = seen
        return self._offset

    def now(self) -> datetime:
        """Return the real wall time plus the offset, aware, in UTC."""
        return datetime.now(UTC) + timedelta(seconds=self.offset())

    def monotonic(self) -> float:
        """Return ``time.monotonic()`` plus the offset: a move forward is time that passed."""
        return time.monotonic() + self.offset()

    async def sleep(self, seconds: float) -> None:
        """Given seconds, return once that much has passed on this clock (moves included)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        deadline = self.monotonic() + seconds
        while (remaining := deadline - self.monotonic()) > 0:
            await asyncio.sleep(min(remaining, POLL_S))

    async def sleep_until(self, moment: datetime) -> None:
        """Given an aware wall time, return once ``now()`` has reached it."""
        if moment <= self.now():
            await asyncio.sleep(0)
            return
        while (remaining := (moment - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(remaining, POLL_S))

    async def wait(self, *events: asyncio.Event, timeout: float) -> bool:
        """Given events and seconds, return True as soon as one is set, or False once
        ``timeout`` seconds have passed on this clock (moves included)."""
        deadline = self.monotonic() + timeout
        while True:
            remaining = deadline - self.monotonic()
            if await SYSTEM_CLOCK.wait(*events, timeout=max(0.0, min(remaining, POLL_S))):
                return True
            if remaining <= POLL_S:
                return False

    # --- moving (the test) -------------------------------------------------------------------

    def set_offset(self, seconds: float) -> None:
        """Given seconds (not negative, not less than the current offset), write them.

        Raise ValueError for a move backwards: sleeps in the daemon would last longer than
        asked and firings already made would come again.
        """
        if seconds < 0 or seconds < self.offset():
            raise ValueError(f"an OffsetClock moves only forward: {seconds} < {self.offset()}")
        # Replaced, never rewritten in place: a reader sees the old offset or the new one.
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(repr(seconds), encoding="utf-8")
        temporary.replace(self.path)

    def move_to(self, moment: datetime) -> None:
        """Given a later aware time, move the clock so that ``now()`` reads it now."""
        self.set_offset(self.offset() + (moment - self.now()).total_seconds())

    def start_at_second(self, second: float) -> datetime:
        """Given a second of the minute, set the smallest offset that makes ``now()`` read
        that second (of this minute or the next); return ``now()``."""
        now = datetime.now(UTC)
        into = now.second + now.microsecond / 1e6
        self.set_offset((second - into) % 60)
        return self.now()
