"""Process trees as a user meets them: ``upkeep run``/``check`` interrupted by a signal,
and ``upkeep serve`` running a plugin that leaves a detached grandchild behind.

The grandchild in each case does what leaks on a plain process-group kill: it calls
``setsid`` (new session and group), its parent exits (double fork), and it sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

STARTUP_S = 60.0
"""How long the CLI may take to reach its command on a loaded machine."""


def sleeper_script(pidfile: Path, marker: str) -> str:
    """Shell text: start a setsid'd, re-parented ``sleep MARKER`` that writes its pid to
    ``pidfile``, wait until it has, then sleep in the foreground too."""
    inner = f"echo \\$\\$ >> {pidfile}; exec sleep {marker}"
    return (
        f"sh -c 'setsid sh -c \"{inner}\" &'; "
        f"while [ ! -s {pidfile} ]; do sleep 0.01; done; sleep {marker}"
    )


def marker_processes(marker: str) -> list[psutil.Process]:
    """Return the living (not zombie) processes whose argv ends with ``marker``."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if cmdline[-1:] == [marker] and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def kill_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def wait_for_file(path: Path, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"upkeep exited {process.returncode} early:\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} never appeared")
        time.sleep(0.05)


def start_cli(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    environment = {key: value for key, value in os.environ.items() if key != "UPKEEP_CONFIG"}
    environment.update({"COLUMNS": "200", "NO_COLOR": "1"})
    return subprocess.Popen(
        [sys.executable, "-m", "upkeep.cli.main", *args],
        cwd=tmp_path,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def unique_marker() -> str:
    """A sleep duration no other process on the machine uses: it names our sleepers."""
    return f"{3000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signalled_upkeep_run_ends_its_step_tree_and_records_the_run_cancelled(
    tmp_path: Path, signum: int, code: int
) -> None:
    marker = unique_marker()
    pidfile = tmp_path / "sleeper.pid"
    (tmp_path / "upkeep.yaml").write_text(
        f"""\
store: sqlite:///{tmp_path / "upkeep.db"}
runbooks:
  spawn:
    steps:
      - name: leave a detached sleeper
        command: [sh, -c, {json.dumps(sleeper_script(pidfile, marker))}]
      - name: never reached
        command: [echo, unreachable]
""",
        encoding="utf-8",
    )
    cli = start_cli(tmp_path, "run", "spawn", "--yes")
    try:
        wait_for_file(pidfile, cli, STARTUP_S)
        assert marker_processes(marker), "the step's sleepers should be running"
        cli.send_signal(signum)
        out, err = cli.communicate(timeout=30)
        assert cli.returncode == code, (out, err)
        name = signal.Signals(signum).name
        assert f"interrupted by {name}" in err
        assert not marker_processes(marker), "a step's process outlived the interrupted CLI"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate(timeout=10)
        kill_all(marker_processes(marker))
    shown = subprocess.run(
        [sys.executable, "-m", "upkeep.cli.main", "runs", "show", "1", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    run = json.loads(shown.stdout)
    assert run["status"] == "cancelled"
    assert run["message"] == f"cancelled: interrupted by {name}"
    assert [step["status"] for step in run["steps"]] == ["cancelled", "not_run"]


def test_a_signalled_upkeep_check_ends_its_plugins_trees(tmp_path: Path) -> None:
    marker = unique_marker()
    pidfile = tmp_path / "sleeper.pid"
    (tmp_path / "upkeep.yaml").write_text(
        f"""\
store: sqlite:///{tmp_path / "upkeep.db"}
targets:
  plugin: {{kind: command, command: [sh, -c, {json.dumps(sleeper_script(pidfile, marker))}]}}
checks:
  slow: {{target: plugin, probe: run, timeout: 10m}}
""",
        encoding="utf-8",
    )
    cli = start_cli(tmp_path, "check")
    try:
        wait_for_file(pidfile, cli, STARTUP_S)
        cli.send_signal(signal.SIGTERM)
        out, err = cli.communicate(timeout=30)
        assert cli.returncode == 143, (out, err)
        assert not marker_processes(marker), "a plugin's process outlived the interrupted CLI"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate(timeout=10)
        kill_all(marker_processes(marker))


def test_a_killed_upkeep_run_leaves_no_step_tree(tmp_path: Path) -> None:
    """SIGKILL cannot be handled; the step's supervisor sees upkeep go and ends the tree."""
    marker = unique_marker()
    pidfile = tmp_path / "sleeper.pid"
    (tmp_path / "upkeep.yaml").write_text(
        f"""\
store: sqlite:///{tmp_path / "upkeep.db"}
runbooks:
  spawn:
    steps:
      - command: [sh, -c, {json.dumps(sleeper_script(pidfile, marker))}]
""",
        encoding="utf-8",
    )
    cli = start_cli(tmp_path, "run", "spawn", "--yes")
    try:
        wait_for_file(pidfile, cli, STARTUP_S)
        cli.kill()
        cli.communicate(timeout=10)
        _, alive = psutil.wait_procs(marker_processes(marker), timeout=10)
        assert not alive, "a step's process outlived a SIGKILLed CLI"
    finally:
        kill_all(marker_processes(marker))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_daemon_running_a_double_forking_plugin_leaks_no_fd_and_no_process(
    tmp_path: Path,
) -> None:
    """The issue's case: a plugin that leaves a setsid'd grandchild and outlives its timeout,
    run by ``upkeep serve`` again and again (40 launches; benchmarks/process_trees.py runs
    it for 10 minutes)."""
    marker = unique_marker()
    launches = tmp_path / "launches.log"
    plugin = f"echo x >> {launches}; sh -c 'setsid sleep {marker} &'; sleep {marker}"
    (tmp_path / "upkeep.yaml").write_text(
        f"""\
store: sqlite:///{tmp_path / "upkeep.db"}
engine: {{listen: "127.0.0.1:{free_port()}", write_interval: 200ms}}
targets:
  plugin: {{kind: command, command: [sh, -c, {json.dumps(plugin)}]}}
checks:
  leaky: {{target: plugin, probe: run, every: 100ms, timeout: 200ms}}
""",
        encoding="utf-8",
    )
    daemon = start_cli(tmp_path, "serve")

    def launched() -> int:
        return len(launches.read_text().splitlines()) if launches.exists() else 0

    def wait_launches(count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while launched() < count:
            if daemon.poll() is not None:
                pytest.fail(f"upkeep serve exited {daemon.returncode}: {daemon.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail(f"only {launched()} launches in {timeout}s")
            time.sleep(0.05)

    def fds() -> int:
        """The fewest descriptors the daemon held over a second: launches in flight hold a
        few each (more overlap on a loaded machine); a leak raises even the fewest."""
        counts = []
        for _ in range(20):
            counts.append(len(os.listdir(f"/proc/{daemon.pid}/fd")))
            time.sleep(0.05)
        return min(counts)

    try:
        wait_launches(10, STARTUP_S)  # warm up: pools, store connections, the server
        baseline = fds()
        wait_launches(40, 60)
        # At most the current launch's two sleepers exist at any moment.
        assert len(marker_processes(marker)) <= 2
        grown = fds()
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
        assert daemon.returncode == 0
        assert not marker_processes(marker), "plugin processes outlived the daemon"
        # One launch may be in flight at either count: its pipes and control socket.
        assert grown <= baseline + 4, f"the daemon's fds grew from {baseline} to {grown}"
        children = [
            child for child in psutil.Process().children(recursive=True) if child.pid != daemon.pid
        ]
        assert not [child for child in children if marker in " ".join(child.cmdline())]
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate(timeout=10)
        kill_all(marker_processes(marker))
