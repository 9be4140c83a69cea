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
from collections.abc import Iterable, Iterator, Mapping
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


class ProcessFailed(Exception):  # noqa: N818 - reads as an outcome, like TaskFailed
    """A streamed command exited non-zero or ran out of time; the message has its stderr."""


class StreamedProcess:
    """A running command whose stdout is read (or stdin written) as a stream, from a
    worker thread. Use as a context manager: leaving it kills the process group if the
    command is still running, and ``check`` raises ProcessFailed on a bad exit."""

    def __init__(
        self,
        argv: list[str],
        *,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
        stdin: bool = False,
        stdout: bool = True,
        max_error_bytes: int = MAX_OUTPUT_BYTES,
    ) -> None:
        import subprocess
        import tempfile

        self.argv = argv
        self._deadline = time.monotonic() + timeout_s
        self._timeout_s = timeout_s
        self._max_error_bytes = max_error_bytes
        # stderr goes to a file: a pipe nobody reads while stdout streams could fill up.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        merged_env = {**os.environ, **env} if env else None
        try:
            self.process = subprocess.Popen(  # noqa: S603 - argv from config, never a shell
                argv,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                stderr=self._stderr,
                env=merged_env,
                start_new_session=True,
            )
        except OSError as error:
            self._stderr.close()
            raise ProcessStartError(
                f"cannot start {argv[0]!r}: {error.strerror or error}"
            ) from error

    def __enter__(self) -> StreamedProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_time(self) -> None:
        if time.monotonic() > self._deadline:
            self.kill()
            raise ProcessFailed(f"{self.argv[0]} did not finish within {self._timeout_s:g}s")

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """Yield stdout in pieces until it ends; raise ProcessFailed past the deadline."""
        assert self.process.stdout is not None  # noqa: S101 - stdout=True
        while chunk := self.process.stdout.read(size):
            self._check_time()
            yield chunk

    def feed(self, data: Iterable[bytes]) -> None:
        """Write ``data`` to stdin, then close it; raise ProcessFailed past the deadline or
        if the command stops reading (its stderr says why)."""
        assert self.process.stdin is not None  # noqa: S101 - stdin=True
        try:
            for piece in data:
                self._check_time()
                self.process.stdin.write(piece)
            self.process.stdin.close()
        except BrokenPipeError:
            self.wait()
            raise ProcessFailed(
                f"{self.argv[0]} stopped reading its input: {self.error_text()}"
            ) from None

    def wait(self) -> int:
        """Wait for the exit (within the deadline) and return the exit code."""
        import subprocess

        try:
            return self.process.wait(timeout=max(0.1, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise ProcessFailed(
                f"{self.argv[0]} did not finish within {self._timeout_s:g}s"
            ) from None

    def check(self) -> None:
        """Wait for the exit; raise ProcessFailed with stderr if it was not 0."""
        code = self.wait()
        if code != 0:
            raise ProcessFailed(f"{self.argv[0]} exited {code}: {self.error_text()}")

    def error_text(self) -> str:
        """Return the command's stderr (capped) as text."""
        self._stderr.seek(0)
        return self._stderr.read(self._max_error_bytes).decode("utf-8", "replace").strip()

    def kill(self) -> None:
        """Kill the whole process group now."""
        import subprocess

        _signal_group(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=KILL_GRACE_S)

    def close(self) -> None:
        """Kill the group if it still runs; close the pipes and the stderr file."""
        if self.process.poll() is None:
            self.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._stderr.close()
