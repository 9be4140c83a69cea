"""The one seam for subprocesses.

Every external command upkeep runs goes through ``run_process`` (or ``StreamedProcess``
for a stream of bytes): argv only (never a shell), output captured and capped, and a
deadline that always holds.

Every descendant of a command ends with it. A command is not started directly but below
a supervisor (``upkeep.io.supervisor``, one small process per command) that is a child
subreaper: a grandchild that calls ``setsid``, double-forks or clears its environment
stays below it and is ended (SIGTERM, then SIGKILL after ``KILL_GRACE_S``) and reaped
when the command exits, when its deadline passes, when the awaiting task is cancelled,
when ``end_all_launches`` is called (the CLI on SIGTERM/SIGINT), and when upkeep dies in
any way (the supervisor sees its control socket close). Only ``leave_detached=True`` (a
service's start command) lets what is left run on after the command exits by itself.

upkeep's own process never becomes a subreaper and never waits for any pid but the
supervisors it started, so exit statuses of other children (asyncio's watcher,
``subprocess`` elsewhere) are never taken from them. If a supervisor dies without its
final report (something killed it), the processes that still carry the launch's id in
their environment are killed as a fallback. Signals cannot kill a supervisor by
accident (it ignores every one but SIGTERM, SIGINT and SIGHUP, which end the tree); only
SIGKILL or SIGSTOP sent on purpose by a command running as root can, and a descendant
that also cleared its environment then escapes: containing a hostile root command takes
a cgroup (run upkeep under systemd), not a process tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from upkeep.io import supervisor
from upkeep.io.supervisor import LAUNCH_ID_VARIABLE

MAX_OUTPUT_BYTES = 64 * 1024
"""Named default: how much of stdout and of stderr is kept; the rest is counted, not kept."""
KILL_GRACE_S = 2.0
"""After a timeout, how long the command's tree gets between SIGTERM and SIGKILL."""
SUPERVISOR_MARGIN_S = 5.0
"""Beyond the grace period, how long a supervisor may take to end its tree and exit
before upkeep kills it and sweeps by launch id."""
START_TIMEOUT_S = 30.0
"""How long a supervisor may take to say whether the command started (a loaded host)."""
SUPERVISOR_PATH = str(Path(supervisor.__file__).resolve())


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


class ProcessFailed(Exception):  # noqa: N818 - reads as an outcome, like TaskFailed
    """A streamed command exited non-zero or ran out of time; the message has its stderr."""


# --- launches: the supervisor side of every command ----------------------------------------


class _Launch:
    """One command below one supervisor: its control socket and its launch id.

    Closing the write side of the control socket (``stop``) asks the supervisor to end
    the tree; the supervisor answers with ``started``/``error`` and, at the end, ``exit``
    or ``signal`` lines.
    """

    def __init__(self, argv: list[str] | tuple[str, ...], leave_detached: bool) -> None:
        if not argv:
            raise ProcessStartError("cannot start an empty command")
        self.argv = tuple(argv)
        self.launch_id = secrets.token_hex(16)
        self.ours, self.theirs = socket.socketpair()
        self._stopped = False
        self._lock = threading.Lock()
        self.reported_end = False
        self.command = [
            sys.executable,
            "-I",
            "-S",
            SUPERVISOR_PATH,
            "--control-fd",
            str(self.theirs.fileno()),
            "--grace",
            f"{KILL_GRACE_S:g}",
            *(["--leave-detached"] if leave_detached else []),
            "--",
            *self.argv,
        ]

    def environment(self, env: Mapping[str, str] | None) -> dict[str, str]:
        """Given the command's extra variables, return its whole environment."""
        return {**os.environ, **(env or {}), LAUNCH_ID_VARIABLE: self.launch_id}

    def spawned(self) -> None:
        """The supervisor runs: drop our copy of its end, and count the launch as live."""
        self.theirs.close()
        with _live_lock:
            _live.add(self)

    def stop(self) -> None:
        """Ask the supervisor to end the command's tree now (idempotent, thread-safe)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            with contextlib.suppress(OSError):
                self.ours.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Close the control socket (which ends the tree too) and forget the launch."""
        self.stop()
        with contextlib.suppress(OSError):
            self.theirs.close()
        self.ours.close()
        with _live_lock:
            _live.discard(self)

    def start_error(self, line: str) -> ProcessStartError | None:
        """Given the supervisor's first line, return the start error it reports, if any."""
        kind, _, value = line.partition(" ")
        if kind == "started":
            return None
        reason = (
            os.strerror(int(value))
            if kind == "error" and value.isdigit()
            else "the process supervisor failed"
        )
        return ProcessStartError(f"cannot start {self.argv[0]!r}: {reason}")

    def exit_code(self, line: str) -> int | None:
        """Given the supervisor's last line, return the command's exit code (negative: the
        signal that ended it), or None if the line is no exit report."""
        kind, _, value = line.partition(" ")
        try:
            number = int(value)
        except ValueError:
            return None
        self.reported_end = True
        if kind == "exit":
            return number
        if kind == "signal":
            return -number
        self.reported_end = False
        return None

    def sweep(self) -> int:
        """Kill every process that still carries this launch's id; return how many.

        The fallback for a supervisor that died before its report: its tree is re-parented
        to init, but whatever kept the environment it was given is still recognisable.
        """
        marker = f"{LAUNCH_ID_VARIABLE}={self.launch_id}".encode()
        own_group = os.getpgid(0)
        killed = 0
        for entry in supervisor.all_entries():
            if entry.pid == os.getpid() or entry.pid == own_group:
                continue
            try:
                environment = Path(f"/proc/{entry.pid}/environ").read_bytes()
            except OSError:
                continue
            if marker in environment.split(b"\0") and supervisor.signal_entry(
                entry, signal.SIGKILL, protected=(own_group,)
            ):
                killed += 1
        return killed


_live: set[_Launch] = set()
_live_lock = threading.Lock()


def end_all_launches() -> int:
    """Ask every supervisor of this process to end its command's tree now; return how many.

    Safe from a signal handler's callback or any thread: it only shuts sockets. The
    commands' readers then see their output end and their deadlines no longer matter.
    """
    with _live_lock:
        launches = list(_live)
    for launch in launches:
        launch.stop()
    return len(launches)


def live_launches() -> int:
    """Return how many commands of this process are running now."""
    with _live_lock:
        return len(_live)


# --- run_process: the async seam ------------------------------------------------------------

_Captured = tuple[bytes, bool]


class _Capture(asyncio.SubprocessProtocol):
    """Keeps up to ``cap`` bytes of stdout and of stderr (the first ones, or with ``tail``
    the last ones), notes that there were more, and tells when the supervisor has exited
    and when each pipe has closed (separately: a pipe can outlive the process that held
    it)."""

    def __init__(self, cap: int, *, tail: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.cap = cap
        self.tail = tail
        self.kept = {1: bytearray(), 2: bytearray()}
        self.cut = {1: False, 2: False}
        self.closed = {1: loop.create_future(), 2: loop.create_future()}
        self.exited: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        kept = self.kept[fd]
        if self.tail:
            kept.extend(data[-self.cap :])
            if len(data) > self.cap:
                self.cut[fd] = True
            if len(kept) > self.cap:
                del kept[: len(kept) - self.cap]
                self.cut[fd] = True
            return
        room = self.cap - len(kept)
        if room > 0:
            kept.extend(data[:room])
        if len(data) > room:
            self.cut[fd] = True

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in self.closed and not self.closed[fd].done():
            self.closed[fd].set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def output(self, fd: int) -> _Captured:
        return bytes(self.kept[fd]), self.cut[fd]

    async def pipes_closed(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for stdout and stderr to close; return whether they did."""
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(asyncio.gather(*self.closed.values()))
        except TimeoutError:
            return False
        return True


async def _read_line(reader: asyncio.StreamReader) -> str:
    return (await reader.readline()).decode("ascii", "replace").strip()


async def _end(transport: asyncio.SubprocessTransport, capture: _Capture, launch: _Launch) -> None:
    """Ask the supervisor to end the tree and wait for it to exit; past the margin, kill
    it. Then, if it did not exit cleanly (something killed it), sweep by launch id."""
    launch.stop()
    try:
        async with asyncio.timeout(KILL_GRACE_S + SUPERVISOR_MARGIN_S):
            await asyncio.shield(capture.exited)
    except TimeoutError:
        transport.kill()
        await asyncio.shield(capture.exited)
    if transport.get_returncode() != 0:
        await asyncio.to_thread(launch.sweep)


async def run_process(
    argv: list[str] | tuple[str, ...],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
    leave_detached: bool = False,
    keep_tail: bool = False,
) -> ProcessResult:
    """Given argv and a deadline, run the command and return its exit code and output.

    ``env`` entries are added to the current environment. When the command exits, the
    rest of its process tree is ended (unless ``leave_detached``: then it runs on, as a
    daemon a start command launched must); on timeout the whole tree gets SIGTERM, then
    SIGKILL after ``KILL_GRACE_S``, and ``timed_out`` is set; on cancellation the tree is
    ended before CancelledError propagates. A negative exit code is the signal that ended
    the command. Of each of stdout and stderr the first ``max_output_bytes`` are kept, or
    with ``keep_tail`` the last (the end of a job's log says how it ended). Raise
    ``ProcessStartError`` if the program cannot be started.
    """
    launch = _Launch(argv, leave_detached)
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    capture = _Capture(max_output_bytes, tail=keep_tail)
    try:
        transport, _ = await loop.subprocess_exec(
            lambda: capture,
            *launch.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=launch.environment(env),
            cwd=cwd,
            start_new_session=True,
            pass_fds=(launch.theirs.fileno(),),
        )
    except OSError as error:
        launch.close()
        raise ProcessStartError(f"cannot start {argv[0]!r}: {error.strerror or error}") from error
    launch.spawned()
    deadline = loop.time() + timeout_s
    control_writer: asyncio.StreamWriter | None = None
    try:
        control, control_writer = await asyncio.open_unix_connection(sock=launch.ours)
        exit_code, timed_out = await _outcome(
            transport, capture, launch, control, deadline, leave_detached
        )
    finally:
        if transport.get_returncode() is None:
            await asyncio.shield(_end(transport, capture, launch))
        # Closes our ends of the pipes even if something still holds theirs.
        transport.close()
        if control_writer is not None:
            control_writer.close()
            with contextlib.suppress(OSError):
                await control_writer.wait_closed()
        launch.close()
    (stdout, out_cut), (stderr, err_cut) = capture.output(1), capture.output(2)
    return ProcessResult(
        argv=tuple(argv),
        exit_code=exit_code,
        stdout=stdout.decode("utf-8", "replace"),
        stderr=stderr.decode("utf-8", "replace"),
        elapsed_ms=(time.perf_counter() - started) * 1000,
        timed_out=timed_out,
        truncated=out_cut or err_cut,
    )


async def _outcome(
    transport: asyncio.SubprocessTransport,
    capture: _Capture,
    launch: _Launch,
    control: asyncio.StreamReader,
    deadline: float,
    leave_detached: bool,
) -> tuple[int | None, bool]:
    """Wait for a launched command; return (exit code, timed out). Its output is in
    ``capture`` once this returns.

    Raise ProcessStartError if the supervisor says the command could not start.
    """
    loop = asyncio.get_running_loop()
    # asyncio.timeout rather than wait_for: on Python 3.11, wait_for returns the result
    # when a cancellation arrives just as the line does, and the cancellation is lost.
    try:
        async with asyncio.timeout(START_TIMEOUT_S + max(0.0, deadline - loop.time())):
            first = await _read_line(control)
    except TimeoutError:
        first = ""
    failure = launch.start_error(first)
    if failure is not None:
        await _end(transport, capture, launch)
        returncode = transport.get_returncode() or 0
        if returncode >= 0 or first:
            raise failure
        # Killed before it could say "started" (by the command itself): no start error.
    try:
        async with asyncio.timeout(max(0.0, deadline - loop.time())):
            last = await _read_line(control)
    except TimeoutError:
        await _end(transport, capture, launch)
        if leave_detached:
            await asyncio.to_thread(launch.sweep)
        await capture.pipes_closed(KILL_GRACE_S)
        return None, True
    exit_code = launch.exit_code(last)
    if exit_code is None:
        # The supervisor ended without a report: something killed it. _end sweeps what it
        # left by launch id, which closes the pipes.
        exit_code = -signal.SIGKILL
    await _end(transport, capture, launch)
    # The command has exited and the supervisor has ended the rest of its tree, so the
    # pipes close; a detached daemon still holding them (leave_detached) gets the rest
    # of the deadline, then the tree is swept like a timeout.
    if leave_detached and not await capture.pipes_closed(max(0.0, deadline - loop.time())):
        await asyncio.to_thread(launch.sweep)
        await capture.pipes_closed(KILL_GRACE_S)
        return None, True
    await capture.pipes_closed(KILL_GRACE_S)
    return exit_code, False


# --- StreamedProcess: the thread seam for streams of bytes ---------------------------------


class StreamedProcess:
    """A running command whose stdout is read (or stdin written) as a stream, from a
    worker thread. Use as a context manager: leaving it ends the command's whole process
    tree if it still runs, and ``check`` raises ProcessFailed on a bad exit.

    Raise ProcessStartError from the constructor if the program cannot be started.
    """

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
        self._exit_code: int | None = None
        self._launch = _Launch(argv, leave_detached=False)
        # stderr goes to a file: a pipe nobody reads while stdout streams could fill up.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        try:
            self.process = subprocess.Popen(  # noqa: S603 - argv from config, never a shell
                self._launch.command,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                stderr=self._stderr,
                env=self._launch.environment(env),
                start_new_session=True,
                pass_fds=(self._launch.theirs.fileno(),),
            )
        except OSError as error:
            self._stderr.close()
            self._launch.close()
            raise ProcessStartError(
                f"cannot start {argv[0]!r}: {error.strerror or error}"
            ) from error
        self._launch.spawned()
        self._control = self._launch.ours.makefile("rb")
        self._launch.ours.settimeout(START_TIMEOUT_S)
        try:
            first = self._read_control()
        except OSError:
            first = ""
        failure = self._launch.start_error(first)
        if failure is not None:
            self.kill()
            if (self.process.returncode is not None and self.process.returncode >= 0) or first:
                self.close()
                raise failure
            # Killed before it could say "started" (by the command itself): no start error.

    def _read_control(self) -> str:
        return self._control.readline().decode("ascii", "replace").strip()

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
        """Wait for the exit (within the deadline) and return the exit code; the rest of
        the command's tree has ended by then. Raise ProcessFailed past the deadline."""
        if self._exit_code is not None:
            return self._exit_code
        try:
            self._launch.ours.settimeout(max(0.1, self._deadline - time.monotonic()))
            last = self._read_control()
        except TimeoutError:
            self.kill()
            raise ProcessFailed(
                f"{self.argv[0]} did not finish within {self._timeout_s:g}s"
            ) from None
        code = self._launch.exit_code(last)
        self.kill()  # The command has exited: this waits while the rest of its tree ends.
        self._exit_code = -signal.SIGKILL if code is None else code
        return self._exit_code

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
        """End the command's whole tree now (SIGTERM, SIGKILL after the grace period) and
        wait for the supervisor; past its margin kill it. If it did not exit cleanly
        (something killed it), sweep by launch id."""
        import subprocess

        self._launch.stop()
        try:
            self.process.wait(timeout=KILL_GRACE_S + SUPERVISOR_MARGIN_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.returncode != 0:
            self._launch.sweep()

    def close(self) -> None:
        """End the tree if it still runs; close the pipes, the control socket and the
        stderr file."""
        if self.process.poll() is None:
            self.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._control.close()
        self._launch.close()
        self._stderr.close()
