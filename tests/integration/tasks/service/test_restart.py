"""service.restart against real processes: a tiny service that writes its pidfile.

The service script below is started the way real daemons are: its ``start`` command
launches the server in a new session with its stdio closed and returns once the pidfile
holds the server's pid. Every process a test starts is killed in the fixture's teardown.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import run_probe
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.probes.base import TargetUnreachable
from upkeep.probes.tcp import ConnectProbe, TcpTarget
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.service.restart import RestartParams, ServiceRestart

SERVICE = r'''
"""A stand-in service: `start` detaches `serve`; `stop` signals the pidfile's pid."""
import os
import signal
import socket
import subprocess
import sys
import time


def read_pid(pidfile):
    with open(pidfile) as handle:
        return int(handle.read().strip())


def gone(pid):
    # Nobody may reap a detached process here, so a zombie counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def option(options, name, default):
    return options[options.index(name) + 1] if name in options else default


def main():
    command, pidfile, *options = sys.argv[1:]
    if command == "start":
        child = subprocess.Popen(
            [sys.executable, __file__, "serve", pidfile, *options],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if read_pid(pidfile) == child.pid:
                    return 0
            except (OSError, ValueError):
                pass
            if child.poll() is not None:
                return 1
            time.sleep(0.01)
        return 1
    if command == "stop":
        pid = read_pid(pidfile)
        os.kill(pid, signal.SIGTERM)
        while "--wait" in options and not gone(pid):
            time.sleep(0.01)
        return 0
    if command == "serve":
        if "--stubborn" in options:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(pidfile + ".tmp", "w") as handle:
            handle.write(f"{os.getpid()}\n")
        os.replace(pidfile + ".tmp", pidfile)
        time.sleep(float(option(options, "--delay", "0")))
        port = int(option(options, "--port", "0"))
        if port:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()
        while True:
            time.sleep(3600)
    return 2


sys.exit(main())
'''


def is_alive(pid: int) -> bool:
    """Given a pid, return True if it runs and is not a zombie (nobody reaps here)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclasses.dataclass
class Service:
    """The stand-in service in one tmp_path, and every process it was seen to run."""

    script: Path
    pidfile: Path
    seen: list[psutil.Process] = dataclasses.field(default_factory=list)

    def argv(self, command: str, *options: str) -> list[str]:
        return [sys.executable, str(self.script), command, str(self.pidfile), *options]

    def start(self, *options: str) -> int:
        """Start the service (as its start command would) and return its pid."""
        subprocess.run(self.argv("start", *options), check=True, timeout=15)
        return self.pid()

    def pid(self) -> int:
        """Return the pid in the pidfile, remembering its process for the teardown."""
        pid = int(self.pidfile.read_text().strip())
        with contextlib.suppress(psutil.NoSuchProcess):
            self.seen.append(psutil.Process(pid))
        return pid

    def kill_all(self) -> None:
        """Kill every stand-in process seen, and the pidfile's if it is one of ours.

        Only processes running this tmp_path's script are killed: some tests put other
        pids (the test process's own, a stranger's) into the pidfile on purpose.
        """
        with contextlib.suppress(OSError, ValueError):
            self.pid()
        for process in self.seen:
            # psutil refuses when the pid has been reused, so no stranger is hit.
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                if str(self.script) in process.cmdline():
                    process.kill()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    running = Service(script, tmp_path / "service.pid")
    try:
        yield running
    finally:
        running.kill_all()


def params(**values: Any) -> RestartParams:
    return RestartParams.model_validate(values)


def phases(outcome_phases: list[Any]) -> list[tuple[str, str]]:
    return [(phase.name, phase.status) for phase in outcome_phases]


def tcp_check(port: int, calls: list[str]) -> Any:
    """Return a run_check that connects to the port with the real tcp probe."""

    async def run_check(name: str) -> CheckResult:
        calls.append(name)
        started = time.perf_counter()
        try:
            outcome = await run_probe(
                ConnectProbe, TcpTarget, {"host": "127.0.0.1", "port": port}, timeout_s=1.0
            )
            status, metrics, message = Status.OK, dict(outcome.metrics), outcome.message
        except TargetUnreachable as error:
            status, metrics, message = Status.CRITICAL, {}, str(error)
        return CheckResult(
            check=name,
            target="svc",
            probe="connect",
            status=status,
            metrics=metrics,
            message=message or status.label,
            duration_ms=(time.perf_counter() - started) * 1000,
            at=datetime.now(UTC),
        )

    return run_check


async def test_restart_by_pidfile_replaces_the_process(
    service: Service, task_context: TaskContext
) -> None:
    old = service.start()
    outcome = await ServiceRestart().run(
        None,
        params(pidfile=str(service.pidfile), start=service.argv("start"), stop_timeout="5s"),
        task_context,
    )
    new = service.pid()
    assert new != old
    assert not is_alive(old)
    assert is_alive(new)
    assert phases(outcome.phases) == [
        ("stop", "ok"),
        ("wait", "ok"),
        ("kill", "skipped"),
        ("start", "ok"),
        ("verify", "skipped"),
    ]
    assert outcome.phases[0].message == f"sent SIGTERM to pid {old}"
    assert outcome.phases[1].message.startswith(f"pid {old} exited after ")
    assert [(change.action, change.subject) for change in outcome.changes] == [
        ("signal", f"pid {old}"),
        ("run", f"start: {' '.join(service.argv('start'))}"),
    ]
    assert outcome.figures["killed"] is False
    assert outcome.message.startswith("restarted (stop ok, wait ok, kill skipped, start ok")


async def test_a_service_ignoring_sigterm_is_killed(
    service: Service, task_context: TaskContext
) -> None:
    old = service.start("--stubborn")
    outcome = await ServiceRestart().run(
        None,
        params(pidfile=str(service.pidfile), start=service.argv("start"), stop_timeout="300ms"),
        task_context,
    )
    assert not is_alive(old)
    assert is_alive(service.pid())
    assert phases(outcome.phases)[:4] == [
        ("stop", "ok"),
        ("wait", "ok"),
        ("kill", "ok"),
        ("start", "ok"),
    ]
    assert outcome.phases[1].message == f"pid {old} still running after 300ms"
    assert outcome.figures["killed"] is True
    assert ("signal", f"pid {old}", "SIGKILL") in [
        (change.action, change.subject, change.detail) for change in outcome.changes
    ]


async def test_without_kill_a_stubborn_service_fails_and_nothing_starts(
    service: Service, task_context: TaskContext
) -> None:
    old = service.start("--stubborn")
    with pytest.raises(TaskFailed) as failure:
        await ServiceRestart().run(
            None,
            params(
                pidfile=str(service.pidfile),
                start=service.argv("start"),
                stop_timeout="200ms",
                kill_after_timeout=False,
            ),
            task_context,
        )
    assert "still running after 200ms and kill_after_timeout is off" in str(failure.value)
    assert str(failure.value).endswith("[phases: stop ok, wait failed]")
    assert is_alive(old)
    assert service.pid() == old


async def test_a_configured_signal_is_sent(service: Service, task_context: TaskContext) -> None:
    old = service.start()
    outcome = await ServiceRestart().run(
        None,
        params(pidfile=str(service.pidfile), signal="int", start=service.argv("start")),
        task_context,
    )
    assert outcome.phases[0].message == f"sent SIGINT to pid {old}"
    assert not is_alive(old)


async def test_stop_command_with_pidfile_waits_for_the_pid(
    service: Service, task_context: TaskContext
) -> None:
    old = service.start()
    outcome = await ServiceRestart().run(
        None,
        params(
            stop=service.argv("stop"),
            pidfile=str(service.pidfile),
            start=service.argv("start"),
        ),
        task_context,
    )
    assert not is_alive(old)
    assert is_alive(service.pid())
    assert phases(outcome.phases)[:4] == [
        ("stop", "ok"),
        ("wait", "ok"),
        ("kill", "skipped"),
        ("start", "ok"),
    ]
    assert outcome.phases[0].message.startswith(f"`{' '.join(service.argv('stop'))}` exited 0")


async def test_stop_command_alone_takes_its_exit_as_stopped(
    service: Service, task_context: TaskContext
) -> None:
    old = service.start()
    outcome = await ServiceRestart().run(
        None,
        params(stop=service.argv("stop", "--wait"), start=service.argv("start")),
        task_context,
    )
    assert not is_alive(old)
    assert is_alive(service.pid())
    assert phases(outcome.phases) == [
        ("stop", "ok"),
        ("wait", "skipped"),
        ("kill", "skipped"),
        ("start", "ok"),
        ("verify", "skipped"),
    ]
    assert outcome.phases[2].message == "no pidfile: escalation needs one"


async def test_a_failing_stop_command_stops_the_restart(
    service: Service, task_context: TaskContext
) -> None:
    old = service.start()
    stop = [sys.executable, "-c", "import sys; sys.stderr.write('cannot stop it'); sys.exit(3)"]
    with pytest.raises(TaskFailed, match=r"exited 3: cannot stop it \[phases: stop failed\]$"):
        await ServiceRestart().run(
            None, params(stop=stop, start=service.argv("start")), task_context
        )
    assert is_alive(old)
    assert service.pid() == old


async def test_a_failing_start_command_fails_after_the_stop(
    service: Service, task_context: TaskContext
) -> None:
    old = service.start()
    start = [sys.executable, "-c", "import sys; print('port in use'); sys.exit(1)"]
    with pytest.raises(TaskFailed) as failure:
        await ServiceRestart().run(
            None, params(pidfile=str(service.pidfile), start=start), task_context
        )
    assert "exited 1: port in use" in str(failure.value)
    assert str(failure.value).endswith("[phases: stop ok, wait ok, kill skipped, start failed]")
    assert not is_alive(old)


async def test_a_stale_pidfile_skips_the_stop_and_starts(
    service: Service, task_context: TaskContext
) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    service.pidfile.write_text(finished.stdout)
    outcome = await ServiceRestart().run(
        None, params(pidfile=str(service.pidfile), start=service.argv("start")), task_context
    )
    assert phases(outcome.phases)[:4] == [
        ("stop", "skipped"),
        ("wait", "skipped"),
        ("kill", "skipped"),
        ("start", "ok"),
    ]
    assert outcome.phases[0].message.startswith("not running: pid ")
    assert is_alive(service.pid())


async def test_a_missing_pidfile_means_not_running(
    service: Service, task_context: TaskContext
) -> None:
    outcome = await ServiceRestart().run(
        None, params(pidfile=str(service.pidfile), start=service.argv("start")), task_context
    )
    assert outcome.phases[0].message == f"not running: no pidfile at {service.pidfile}"
    assert is_alive(service.pid())


async def test_a_reused_pid_is_never_signalled(service: Service, task_context: TaskContext) -> None:
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        service.pidfile.write_text(f"{stranger.pid}\n")
        an_hour_ago = time.time() - 3600
        os.utime(service.pidfile, (an_hour_ago, an_hour_ago))
        outcome = await ServiceRestart().run(
            None, params(pidfile=str(service.pidfile), start=service.argv("start")), task_context
        )
        assert stranger.poll() is None
        assert outcome.phases[0].status == "skipped"
        assert "another process that reused the number" in outcome.phases[0].message
    finally:
        stranger.kill()
        stranger.wait()


async def test_verify_retries_until_the_service_answers(
    service: Service, task_context: TaskContext
) -> None:
    port = free_port()
    service.start("--port", str(port))
    calls: list[str] = []
    context = dataclasses.replace(task_context, run_check=tcp_check(port, calls))
    outcome = await ServiceRestart().run(
        None,
        params(
            pidfile=str(service.pidfile),
            start=service.argv("start", "--port", str(port), "--delay", "0.5"),
            verify="svc-up",
            verify_retries=20,
            verify_interval="100ms",
        ),
        context,
    )
    assert outcome.phases[-1].name == "verify"
    assert outcome.phases[-1].status == "ok"
    assert 1 < len(calls) <= 21
    assert set(calls) == {"svc-up"}
    assert outcome.figures["verify_attempts"] == len(calls)
    assert outcome.phases[-1].message.startswith(f"check svc-up ok on attempt {len(calls)}")


async def test_verify_that_stays_critical_fails_the_restart(
    service: Service, task_context: TaskContext
) -> None:
    service.start()
    calls: list[str] = []
    context = dataclasses.replace(task_context, run_check=tcp_check(free_port(), calls))
    with pytest.raises(TaskFailed) as failure:
        await ServiceRestart().run(
            None,
            params(
                pidfile=str(service.pidfile),
                start=service.argv("start"),
                verify="svc-up",
                verify_retries=2,
                verify_interval="50ms",
            ),
            context,
        )
    message = str(failure.value)
    assert message.startswith("check svc-up still critical after 3 attempt(s): 127.0.0.1:")
    assert message.endswith("[phases: stop ok, wait ok, kill skipped, start ok, verify failed]")
    assert calls == ["svc-up"] * 3


async def test_plan_names_the_pid_and_commands_and_changes_nothing(
    service: Service, task_context: TaskContext
) -> None:
    old = service.start()
    before = service.pidfile.read_text()
    plan = await ServiceRestart().plan(
        None,
        params(pidfile=str(service.pidfile), start=service.argv("start"), verify="svc-up"),
        task_context,
    )
    assert is_alive(old)
    assert service.pidfile.read_text() == before
    assert not plan.predictable
    assert [(change.action, change.subject) for change in plan.changes] == [
        ("signal", f"pid {old}"),
        ("run", f"start: {' '.join(service.argv('start'))}"),
    ]
    assert plan.changes[0].detail == (
        f"SIGTERM (from {service.pidfile}); wait up to 30s for it to exit; "
        "SIGKILL if still running after 30s"
    )
    assert "then check svc-up up to 4 time(s), 2s apart" in plan.note
    assert plan.summary().startswith("effect cannot be predicted")


async def test_plan_with_a_stop_command_and_a_stale_pidfile(
    service: Service, task_context: TaskContext
) -> None:
    stop_plan = await ServiceRestart().plan(
        None, params(stop=service.argv("stop"), start=service.argv("start")), task_context
    )
    assert [change.subject for change in stop_plan.changes] == [
        f"stop: {' '.join(service.argv('stop'))}",
        f"start: {' '.join(service.argv('start'))}",
    ]
    stale_plan = await ServiceRestart().plan(
        None, params(pidfile=str(service.pidfile), start=service.argv("start")), task_context
    )
    assert [change.action for change in stale_plan.changes] == ["run"]
    assert "no pidfile at" in stale_plan.note
    assert "it would only be started" in stale_plan.note


async def test_env_reaches_both_commands_and_stays_secret(
    service: Service, tmp_path: Path, task_context: TaskContext
) -> None:
    seen = tmp_path / "env-seen"
    write = f"import os, sys; open({str(seen)!r}, 'a').write(os.environ['SVC_TOKEN'])"
    record = [sys.executable, "-c", write]
    failing = [sys.executable, "-c", write + "; sys.exit('bad token ' + os.environ['SVC_TOKEN'])"]
    with pytest.raises(TaskFailed) as failure:
        await ServiceRestart().run(
            None,
            params(stop=record, start=failing, env={"SVC_TOKEN": "tok-98765-secret"}),
            task_context,
        )
    assert seen.read_text() == "tok-98765-secret" * 2
    assert "tok-98765-secret" not in str(failure.value)
    assert "bad token ***" in str(failure.value)


async def test_a_pidfile_that_does_not_hold_a_pid_is_refused(
    service: Service, task_context: TaskContext
) -> None:
    service.pidfile.write_text("nginx\n")
    with pytest.raises(TaskFailed, match="does not hold a pid") as failure:
        await ServiceRestart().run(
            None, params(pidfile=str(service.pidfile), start=service.argv("start")), task_context
        )
    assert str(failure.value).endswith("[phases: stop failed]")


@pytest.mark.parametrize("content", ["1", "0", "-5", ""])
async def test_pids_that_would_signal_everything_are_refused(
    service: Service, task_context: TaskContext, content: str
) -> None:
    service.pidfile.write_text(content)
    with pytest.raises(TaskFailed, match="refusing"):
        await ServiceRestart().plan(
            None, params(pidfile=str(service.pidfile), start=service.argv("start")), task_context
        )


async def test_upkeeps_own_pid_is_refused(service: Service, task_context: TaskContext) -> None:
    service.pidfile.write_text(str(os.getpid()))
    with pytest.raises(TaskFailed, match="upkeep's own pid"):
        await ServiceRestart().run(
            None, params(pidfile=str(service.pidfile), start=service.argv("start")), task_context
        )
    assert is_alive(os.getpid())


async def test_start_command_timeout_is_enforced(
    service: Service, task_context: TaskContext
) -> None:
    start = [sys.executable, "-c", "import time; time.sleep(30)"]
    started = time.monotonic()
    with pytest.raises(TaskFailed, match="did not finish within 300ms"):
        await ServiceRestart().run(
            None,
            params(pidfile=str(service.pidfile), start=start, start_timeout="300ms"),
            task_context,
        )
    assert time.monotonic() - started < 5


async def test_a_pidfile_that_is_a_link_or_names_someone_else_s_process_is_refused(
    service: Service, task_context: TaskContext, tmp_path: Path
) -> None:
    """Issue #11: the pidfile checks are shared with logs.rotate (upkeep.io.signals)."""
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        elsewhere = tmp_path / "elsewhere.pid"
        elsewhere.write_text(f"{stranger.pid}\n")
        service.pidfile.symlink_to(elsewhere)
        run = params(pidfile=str(service.pidfile), start=service.argv("start"))
        with pytest.raises(TaskFailed, match="symbolic link"):
            await ServiceRestart().run(None, run, task_context)
        service.pidfile.unlink()
        service.pidfile.write_text(f"{stranger.pid}\n")
        os.chown(service.pidfile, 65534, 65534)  # the service user wrote it; the pid is root's
        with pytest.raises(TaskFailed, match="may only name its own processes"):
            await ServiceRestart().run(None, run, task_context)
        os.chown(service.pidfile, 0, 0)
        service.pidfile.write_text(f"{os.getppid()}\n")
        with pytest.raises(TaskFailed, match=r"parent processes|own process group"):
            await ServiceRestart().run(None, run, task_context)
        assert stranger.poll() is None and is_alive(os.getppid())
    finally:
        stranger.kill()
        stranger.wait()
