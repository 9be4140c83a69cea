"""The one seam for subprocesses.

Every external command upkeep runs goes through ``run_process``: argv only (never a
shell), its own process group so a timeout kills the whole tree, output captured and
capped, and a deadline that always holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

MAX_OUTPUT_BYTES = 64 * 1024
"""Named default: how much of stdout and of stderr is kept; the rest is counted, not kept."""
KILL_GRACE_S = 2.0
"""After a timeout, how long the process group gets between SIGTERM and SIGKILL."""


@dataclass(frozen=True)
class ProcessResult:
    """What a finished (or killed) command left behind."""

    argv: tuple[str, ...]
    exit_code: int | None
    stdout: str
    stderr: str
    elapsed_ms: float
    timed_out: bool
    truncated: bool


class ProcessStartError(Exception):
    """The command could not be started (not found, not executable)."""


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> tuple[bytes, bool]:
    if stream is None:
        return b"", False
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(65536):
        room = cap - len(kept)
        if room > 0:
            kept.extend(chunk[:room])
        if len(chunk) > room:
            truncated = True
    return bytes(kept), truncated


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


async def run_process(
    argv: list[str] | tuple[str, ...],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
) -> ProcessResult:
    """Given argv and a deadline, run the command and return its exit code and output.

    ``env`` entries are added to the current environment. On timeout the process group
    gets SIGTERM, then SIGKILL after ``KILL_GRACE_S``, and ``timed_out`` is set. Raise
    ``ProcessStartError`` if the program cannot be started.
    """
    merged_env = {**os.environ, **env} if env else None
    started = time.perf_counter()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=merged_env,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as error:
        raise ProcessStartError(f"cannot start {argv[0]!r}: {error.strerror or error}") from error

    readers = asyncio.gather(
        _read_capped(process.stdout, max_output_bytes),
        _read_capped(process.stderr, max_output_bytes),
    )
    timed_out = False
    try:
        (stdout, out_cut), (stderr, err_cut) = await asyncio.wait_for(
            asyncio.shield(readers), timeout_s
        )
        await asyncio.wait_for(process.wait(), max(0.1, timeout_s))
    except TimeoutError:
        timed_out = True
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), KILL_GRACE_S)
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
        try:
            (stdout, out_cut), (stderr, err_cut) = await asyncio.wait_for(readers, KILL_GRACE_S)
        except TimeoutError:
            # A grandchild that left the group may hold the pipes open; give up on them.
            readers.cancel()
            stdout, stderr, out_cut, err_cut = b"", b"", False, False
    finally:
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                await process.wait()
    return ProcessResult(
        argv=tuple(argv),
        exit_code=None if timed_out else process.returncode,
        stdout=stdout.decode("utf-8", "replace"),
        stderr=stderr.decode("utf-8", "replace"),
        elapsed_ms=(time.perf_counter() - started) * 1000,
        timed_out=timed_out,
        truncated=out_cut or err_cut,
    )
