"""service.restart: stop a service, wait for it to exit, escalate, start it, verify it.

The seed's restart-service.sh does ``pkill -TERM -f "$SERVICE_NAME"``, ``sleep 10``,
starts, ``sleep 5`` and curls a health URL: a match on command lines that can hit any
process mentioning the name, and fixed sleeps that are too short for a slow shutdown and
wasted on a fast one. This task only ever touches the process the service itself names:

* **stop** — run the configured ``stop`` command (argv, no shell), or send ``signal``
  (default SIGTERM) to the pid in ``pidfile``. Never a process-name match.
* **wait** — poll the pidfile's process until it has exited, at most ``stop_timeout``.
  With only a ``stop`` command there is no pid to watch: the command's own exit (within
  ``stop_timeout``) is taken as the service having stopped.
* **kill** — if the process is still alive after ``stop_timeout`` and
  ``kill_after_timeout`` holds, SIGKILL it. Escalation needs a pid, so with a ``stop``
  command give the ``pidfile`` too (the command stops, the pidfile says whom to watch
  and, if need be, to kill); without one the phase is skipped.
* **start** — run the ``start`` command within ``start_timeout``. It must return once the
  service is up (``systemctl start``, ``pg_ctl start``, a daemonising binary): the seam
  waits for it and its output pipes, so a program that stays in the foreground must be
  wrapped to detach (new session, stdio redirected).
* **verify** — run the configured check named by ``verify``, up to ``1 + verify_retries``
  times ``verify_interval`` apart; critical or unknown after the last attempt fails the
  restart (warning passes: the service is up).

A pidfile is trusted only as far as it can be (``upkeep.io.signals``, shared with
``logs.rotate``): a missing pidfile or one whose pid is not running means the service is
not running (stop, wait and kill are skipped and the start goes ahead); a pid that started
after the pidfile was last written belongs to some other process that reused the number,
and is treated the same way. A pidfile that is a link, hard-linked or not a regular file,
content that is not a pid, a thread's id, pid 0 or 1, upkeep's own pid, process group or
parents, and a process whose real or saved uid is not the (non-root) pidfile's owner make
the task refuse. Signals go through a
pidfd, so a pid reused after the check is never hit.

Every phase is recorded, skipped ones with the reason. ``TaskFailed`` carries only a
message, so its message ends with the trail of phases reached.
"""

from __future__ import annotations

import asyncio
import shlex
import signal as signals
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, ValidatorFunctionWrapHandler, field_validator, model_validator

from upkeep.core.durations import Duration, format_duration
from upkeep.core.models import Reference, StrictModel, given_keys, validate_with_key_rule
from upkeep.core.redaction import Redactor, SecretMarker
from upkeep.core.status import Status
from upkeep.io import signals as signals_io
from upkeep.io.process import ProcessResult, ProcessStartError, run_process
from upkeep.io.signals import PidfileProcess
from upkeep.tasks.base import (
    Change,
    Phase,
    PhaseRecorder,
    Task,
    TaskContext,
    TaskFailed,
    TaskOutcome,
    TaskPlan,
)

POLL_INTERVAL_S = 0.05
"""How often a stopping process is looked at: short against any stop_timeout worth having."""
KILL_WAIT_S = 5.0
"""Named timeout: after SIGKILL, how long the kernel gets to take the process down."""
OUTPUT_TAIL_CHARS = 400
"""How much of a failed command's output a message quotes (its end, where errors are)."""
DEFAULT_SIGNAL = "SIGTERM"

Argv = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


def _stop_problem(data: dict[str, Any]) -> str | None:
    """Given restart params as written, return how stopping is asked for wrongly (neither
    ``stop`` nor ``pidfile``; ``signal`` beside ``stop``), or None."""
    if not given_keys(data, ("stop", "pidfile")):
        return (
            "service.restart needs `stop` (a command) or `pidfile` (whose pid gets "
            "`signal`); it never matches processes by name"
        )
    if given_keys(data, ("stop",)) and given_keys(data, ("signal",)):
        return "`signal` applies only without `stop`: the stop command does the stopping"
    return None


class RestartParams(StrictModel):
    """Params of ``service.restart``."""

    stop: Argv | None = Field(default=None, description="argv of the stop command")
    pidfile: str | None = Field(
        default=None,
        description="absolute path of the service's pidfile: signalled without `stop`, "
        "watched and killed if need be with it",
    )
    signal: str | None = Field(
        default=None, description="signal for the pidfile's pid when there is no `stop` (SIGTERM)"
    )
    start: Argv = Field(description="argv of the start command; must return once started")
    stop_timeout: Duration = Field(
        default=timedelta(seconds=30), description="how long stopping may take"
    )
    kill_after_timeout: bool = Field(
        default=True, description="SIGKILL the pidfile's pid if still alive after stop_timeout"
    )
    start_timeout: Duration = Field(
        default=timedelta(seconds=30), description="how long the start command may take"
    )
    verify: Annotated[str, Reference(("checks",), "check")] | None = Field(
        default=None, min_length=1, description="name of a configured check to run after start"
    )
    verify_retries: int = Field(
        default=3, ge=0, le=100, description="further verify attempts after a failing one"
    )
    verify_interval: Duration = Field(
        default=timedelta(seconds=2), description="pause between verify attempts"
    )
    env: Annotated[dict[str, str], SecretMarker()] = Field(
        default_factory=dict, description="added to the environment of both commands; secret"
    )

    @model_validator(mode="wrap")
    @classmethod
    def _how_to_stop(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> RestartParams:
        # Rules over the keys written, checked with the fields' own errors: a wrong signal
        # must not hide that neither stop nor pidfile is given.
        return validate_with_key_rule(cls, data, handler, _stop_problem)

    @field_validator("pidfile")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_absolute():
            raise ValueError(f"pidfile {value!r} must be an absolute path")
        return value

    @field_validator("signal")
    @classmethod
    def _known_signal(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip().upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        if name not in signals.Signals.__members__:
            raise ValueError(f"{value!r} is not a signal name such as SIGTERM, SIGINT or SIGQUIT")
        return name

    @field_validator("stop_timeout", "start_timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("a timeout must be longer than zero")
        return value

    @field_validator("verify_interval")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("the interval cannot be negative")
        return value


# ---------------------------------------------------------------------------------------
# Pidfiles and processes


def read_pidfile(path: str) -> PidfileProcess:
    """Given a pidfile path, return the running process it names, or why none runs
    (``upkeep.io.signals.read_pidfile``). Raise TaskFailed if it cannot be trusted."""
    try:
        return signals_io.read_pidfile(path)
    except signals_io.PidfileError as error:
        raise TaskFailed(str(error)) from None


def has_exited(process: Any) -> bool:
    """Given a ``psutil.Process``, return True once it is gone, a zombie, or its pid reused."""
    import psutil

    try:
        return not process.is_running() or bool(process.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


async def wait_for_exit(process: Any, timeout_s: float) -> bool:
    """Given a ``psutil.Process`` and a timeout, poll until it exits; return True if it did."""
    deadline = time.monotonic() + timeout_s
    while not has_exited(process):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_INTERVAL_S)
    return True


def send_signal(process: Any, signal_name: str) -> bool:
    """Given a checked ``psutil.Process`` and a signal name, send it to that very process;
    return False if it has already exited.

    Raise TaskFailed if upkeep may not signal the process.
    """
    try:
        return signals_io.send_signal(process, signals.Signals[signal_name])
    except signals_io.PidfileError as error:
        raise TaskFailed(str(error)) from None
    except PermissionError as error:
        raise TaskFailed(
            f"no permission to send {signal_name} to pid {process.pid} "
            "(upkeep must run as the service's user or root)"
        ) from error


# ---------------------------------------------------------------------------------------
# The task


def _tail(result: ProcessResult) -> str:
    """Given a finished command, return the end of its stderr (else stdout) for a message."""
    text = (result.stderr.strip() or result.stdout.strip())[-OUTPUT_TAIL_CHARS:]
    return f": {text}" if text else ""


def _trail(outcome: TaskOutcome) -> str:
    """Given an outcome, return its phases as ``stop ok, wait ok, kill skipped``."""
    return ", ".join(f"{phase.name} {phase.status}" for phase in outcome.phases)


class _Restart:
    """One restart in progress: the phases run in order against one outcome."""

    def __init__(self, params: RestartParams, context: TaskContext) -> None:
        self.params = params
        self.context = context
        self.outcome = TaskOutcome()
        self.phases = PhaseRecorder(self.outcome)
        self.process: Any = None
        self.pid: int | None = None
        self.verify_attempts = 0
        self.outcome.figures["killed"] = False

    def shown(self, argv: list[str]) -> str:
        """Given argv, return it as one shell-quoted line with known secrets masked."""
        return shown_command(argv, self.context.redactor)

    async def command(self, role: str, argv: list[str], timeout: timedelta) -> str:
        """Given a role, argv and timeout, run the command; return a message.

        Raise TaskFailed if it cannot start, times out or exits non-zero.
        """
        shown = self.shown(argv)
        try:
            # The start command's job is to leave the service running behind it; every
            # other command's leftovers end with it (see upkeep.io.process).
            result = await run_process(
                argv,
                timeout_s=timeout.total_seconds(),
                env=self.params.env or None,
                leave_detached=role == "start",
            )
        except ProcessStartError as error:
            raise TaskFailed(self.context.redactor.redact(f"{role} command: {error}")) from error
        if result.timed_out:
            raise TaskFailed(
                f"{role} command `{shown}` did not finish within {format_duration(timeout)} "
                "(it was killed)"
            )
        if result.exit_code != 0:
            raise TaskFailed(
                self.context.redactor.redact(
                    f"{role} command `{shown}` exited {result.exit_code}{_tail(result)}"
                )
            )
        self.outcome.changes.append(Change("run", f"{role}: {shown}", "exit 0"))
        return f"`{shown}` exited 0 in {result.elapsed_ms:.0f} ms"

    async def stop(self) -> None:
        """Record the stop phase: skipped if the pidfile names no running process, else
        the stop command or the signal. Raise TaskFailed if the pidfile cannot be trusted,
        the command fails, or the process may not be signalled."""
        params = self.params
        if params.pidfile is not None:
            try:
                state = read_pidfile(params.pidfile)
            except TaskFailed as error:
                # Recorded so the trail shows the restart ended before anything was stopped.
                self.outcome.phases.append(
                    Phase("stop", "failed", datetime.now(UTC), 0.0, str(error))
                )
                raise
            self.pid = state.pid
            if state.process is None:
                self.phases.skip("stop", state.reason)
                return
            self.process = state.process
        if params.stop is not None:
            await self.phases.run(
                "stop", lambda: self.command("stop", params.stop or [], params.stop_timeout)
            )
            return
        await self.phases.run("stop", self._signal_stop)

    async def _signal_stop(self) -> str:
        """Send the configured signal to the pidfile's process; return what happened."""
        signal_name = self.params.signal or DEFAULT_SIGNAL
        if not send_signal(self.process, signal_name):
            return f"pid {self.pid} exited before it was signalled"
        self.outcome.changes.append(Change("signal", f"pid {self.pid}", signal_name))
        return f"sent {signal_name} to pid {self.pid}"

    async def wait(self) -> bool:
        """Record the wait phase; return True if the process is still alive afterwards."""
        if self.process is None:
            reason = (
                "no pidfile to watch; the stop command's exit is taken as the service stopped"
                if self.params.pidfile is None
                else "nothing to wait for"
            )
            self.phases.skip("wait", reason)
            return False
        timeout = self.params.stop_timeout
        alive = False

        async def action() -> str:
            nonlocal alive
            started = time.monotonic()
            if await wait_for_exit(self.process, timeout.total_seconds()):
                self.outcome.figures["stop_wait_ms"] = round((time.monotonic() - started) * 1000, 3)
                return f"pid {self.pid} exited after {time.monotonic() - started:.2f}s"
            if not self.params.kill_after_timeout:
                raise TaskFailed(
                    f"pid {self.pid} is still running after {format_duration(timeout)} "
                    "and kill_after_timeout is off; not starting a second instance"
                )
            alive = True
            return f"pid {self.pid} still running after {format_duration(timeout)}"

        await self.phases.run("wait", action)
        return alive

    async def kill(self, alive: bool) -> None:
        """Given whether the process outlived the wait, record the kill phase: SIGKILL and
        a short wait, or skipped with the reason. Raise TaskFailed if it survives."""
        if self.process is None:
            reason = (
                "no pidfile: escalation needs one"
                if self.params.pidfile is None
                else "nothing to kill"
            )
            self.phases.skip("kill", reason)
            return
        if not alive:
            self.phases.skip("kill", f"not needed: pid {self.pid} exited")
            return

        async def action() -> str:
            if send_signal(self.process, "SIGKILL"):
                self.outcome.changes.append(Change("signal", f"pid {self.pid}", "SIGKILL"))
                self.outcome.figures["killed"] = True
            if not await wait_for_exit(self.process, KILL_WAIT_S):
                raise TaskFailed(
                    f"pid {self.pid} survived SIGKILL for {KILL_WAIT_S:g}s "
                    "(stuck in the kernel?); not starting a second instance"
                )
            return f"sent SIGKILL to pid {self.pid}; it exited"

        await self.phases.run("kill", action)

    async def verify(self) -> None:
        """Record the verify phase: run the named check until it is ok or warning, at most
        ``1 + verify_retries`` times. Raise TaskFailed if it stays critical or unknown."""
        name = self.params.verify
        if name is None:
            self.phases.skip("verify", "no check named in `verify`")
            return
        attempts = self.params.verify_retries + 1
        interval = self.params.verify_interval.total_seconds()

        async def action() -> str:
            while True:
                self.verify_attempts += 1
                result = await self.context.run_check(name)
                message = self.context.redactor.redact(result.message)
                if result.status in (Status.OK, Status.WARNING):
                    return (
                        f"check {name} {result.status.label} on attempt "
                        f"{self.verify_attempts}: {message}"
                    )
                if self.verify_attempts >= attempts:
                    raise TaskFailed(
                        f"check {name} still {result.status.label} after {attempts} "
                        f"attempt(s): {message}"
                    )
                await asyncio.sleep(interval)

        try:
            await self.phases.run("verify", action)
        finally:
            self.outcome.figures["verify_attempts"] = self.verify_attempts

    async def run(self) -> TaskOutcome:
        """Run every phase in order; return the outcome. Raise TaskFailed at the first
        phase that fails (the outcome so far stays on ``self.outcome``)."""
        await self.stop()
        alive = await self.wait()
        await self.kill(alive)
        params = self.params
        await self.phases.run(
            "start", lambda: self.command("start", params.start, params.start_timeout)
        )
        await self.verify()
        self.outcome.message = f"restarted ({_trail(self.outcome)})"
        return self.outcome


class ServiceRestart(Task[None, RestartParams]):
    """Restart a service by its stop command or pidfile, then verify it with a check."""

    name: ClassVar[str] = "service.restart"
    summary: ClassVar[str] = (
        "Stop (command or pidfile), wait, escalate to SIGKILL, start, verify with a check."
    )
    Params: ClassVar[type[StrictModel]] = RestartParams
    target_kinds: ClassVar[tuple[str, ...]] = ()

    def _check(self, params: RestartParams, context: TaskContext) -> None:
        # How to stop is checked by RestartParams itself: params exist only valid.
        context.redactor.extend(params.env.values())

    async def plan(self, target: None, params: RestartParams, context: TaskContext) -> TaskPlan:
        """Given params, return the commands that would run and the pid that would be
        signalled, running and signalling nothing; the plan is unpredictable (what a
        restart does to the service cannot be known in advance).

        Raise TaskFailed if the params have problems or the pidfile cannot be trusted.
        """
        self._check(params, context)
        changes: list[Change] = []
        notes = ["what a restart does to the service cannot be known in advance"]
        stop_for = format_duration(params.stop_timeout)
        state = read_pidfile(params.pidfile) if params.pidfile is not None else None
        if state is not None and state.process is None:
            notes.append(f"{state.reason}; it would only be started")
        else:
            escalate = (
                f"; SIGKILL if still running after {stop_for}"
                if params.kill_after_timeout
                else f"; fail if still running after {stop_for}"
            )
            watched = f"; wait for pid {state.pid} to exit{escalate}" if state else ""
            if params.stop is not None:
                changes.append(
                    Change(
                        "run",
                        f"stop: {shown_command(params.stop, context.redactor)}",
                        f"within {stop_for}{watched}",
                    )
                )
            elif state is not None:
                changes.append(
                    Change(
                        "signal",
                        f"pid {state.pid}",
                        f"{params.signal or DEFAULT_SIGNAL} (from {params.pidfile}); "
                        f"wait up to {stop_for} for it to exit{escalate}",
                    )
                )
        changes.append(
            Change(
                "run",
                f"start: {shown_command(params.start, context.redactor)}",
                f"within {format_duration(params.start_timeout)}",
            )
        )
        if params.verify is not None:
            notes.append(
                f"then check {params.verify} up to {params.verify_retries + 1} time(s), "
                f"{format_duration(params.verify_interval)} apart"
            )
        return TaskPlan(changes=changes, predictable=False, note="; ".join(notes))

    async def run(self, target: None, params: RestartParams, context: TaskContext) -> TaskOutcome:
        """Given params, stop, wait, kill if need be, start and verify, recording each phase;
        return the phases and figures (``stop_wait_ms``, ``killed``, ``verify_attempts``).

        Raise TaskFailed if the pidfile cannot be trusted, a command fails or times out,
        the process outlives its stop (and kill), or the verify check stays critical or
        unknown; the message ends with the phases reached.
        """
        self._check(params, context)
        restart = _Restart(params, context)
        try:
            return await restart.run()
        except TaskFailed as error:
            raise TaskFailed(f"{error} [phases: {_trail(restart.outcome)}]") from error


def shown_command(argv: Sequence[str], redactor: Redactor) -> str:
    """Given argv, return it quoted for people with every secret masked.

    Each argument is redacted before quoting: quoting first can split a secret (a ``'``
    becomes ``'"'"'``) so that the redactor no longer recognises it.
    """
    return shlex.join(redactor.redact(argument) for argument in argv)
