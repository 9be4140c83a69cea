"""A pidfile written by someone else never aims upkeep's signals (issue #11, finding 3).

`upkeep run rotate --yes` runs a rename-mode logs.rotate whose writer pidfile holds what
an attacker wrote: 0 (upkeep's own process group), -1 (every process), 1 (init), the pid
of the process that started upkeep, a process of another user. Each is refused before
anything is renamed, the run fails saying why, and every process is still alive.

The CLI runs in a session of its own: were it to signal 0 or -1 after all, the damage
stays in its own group rather than taking the test runner down.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

RUN_TIMEOUT_S = 60.0


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A root-owned process in its own session: what an attacker would like killed."""
    process = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def _setup(tmp_path: Path, pidfile: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_bytes(b"2026-12-01T10:00:00Z INFO served\n" * 3000)
    (tmp_path / "upkeep.yaml").write_text(
        f"""\
targets:
  app-logs: {{kind: logs, path: {logs}}}
runbooks:
  rotate:
    steps:
      - task: logs.rotate
        target: app-logs
        with: {{mode: rename, reopen_signal: HUP, pidfile: {pidfile}}}
"""
    )
    return logs


def _said(done: subprocess.CompletedProcess[str]) -> str:
    """Return what the CLI printed, with the terminal's line wrapping undone."""
    return " ".join((done.stdout + done.stderr).split())


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "UPKEEP_CONFIG"}
    environment.update({"COLUMNS": "200", "NO_COLOR": "1"})
    return subprocess.run(
        [sys.executable, "-m", "upkeep.cli.main", *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
        start_new_session=True,
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("0\n", "not a single process"),
        ("-1\n", "does not hold a pid"),
        ("1\n", "init"),
        ("parent", "upkeep's parent processes"),
        ("  \n", "does not hold a pid"),
        ("12x\n", "does not hold a pid"),
    ],
)
def test_a_pidfile_never_aims_the_reopen_signal_at_anyone_but_its_writer(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], content: str, reason: str
) -> None:
    pidfile = tmp_path / "writer.pid"
    pidfile.write_text(f"{os.getpid()}\n" if content == "parent" else content)
    logs = _setup(tmp_path, pidfile)
    before = (logs / "app.log").read_bytes()
    started = time.time()
    done = _run(tmp_path, "run", "rotate", "--yes")
    assert done.returncode != 0
    assert done.returncode > 0, f"upkeep was killed by signal {-done.returncode}"
    assert reason in _said(done)
    assert "refusing" in _said(done) or "does not hold a pid" in _said(done)
    assert (logs / "app.log").read_bytes() == before  # nothing was renamed
    assert sorted(path.name for path in logs.iterdir()) == ["app.log"]
    assert sleeper.poll() is None
    assert psutil.Process(os.getpid()).is_running()
    assert time.time() - started < RUN_TIMEOUT_S


def test_a_service_user_s_pidfile_cannot_name_a_root_process(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    pidfile = tmp_path / "writer.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    os.chown(pidfile, 65534, 65534)  # written by the service's user (nobody)
    old = time.time() + 5  # written after the sleeper started: not a reused pid
    os.utime(pidfile, (old, old))
    logs = _setup(tmp_path, pidfile)
    done = _run(tmp_path, "run", "rotate", "--yes")
    assert done.returncode != 0
    assert "may only name its own processes" in _said(done)
    assert sleeper.poll() is None
    assert sorted(path.name for path in logs.iterdir()) == ["app.log"]


def test_a_linked_pidfile_is_not_trusted(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    real = tmp_path / "elsewhere.pid"
    real.write_text(f"{sleeper.pid}\n")
    pidfile = tmp_path / "writer.pid"
    pidfile.symlink_to(real)
    logs = _setup(tmp_path, pidfile)
    done = _run(tmp_path, "run", "rotate", "--yes")
    assert done.returncode != 0
    assert "symbolic link" in _said(done)
    assert sleeper.poll() is None
    assert sorted(path.name for path in logs.iterdir()) == ["app.log"]


@pytest.fixture
def victim_pidfile(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> Path:
    """Another service's root-owned pidfile, naming a root process (an sshd's)."""
    run = tmp_path / "run"
    run.mkdir()
    victim = run / "sshd.pid"
    victim.write_text(f"{sleeper.pid}\n")
    return victim


def test_a_hard_link_to_another_service_s_pidfile_is_not_trusted(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], victim_pidfile: Path
) -> None:
    """Where fs.protected_hardlinks is off, a service user who can write its pidfile's
    directory can hard-link root's pidfile of another service there: the link is owned by
    root and names a root process, so the owner check passes. A pidfile with another
    name is refused."""
    pidfile = tmp_path / "writer.pid"
    os.link(victim_pidfile, pidfile)
    logs = _setup(tmp_path, pidfile)
    done = _run(tmp_path, "run", "rotate", "--yes")
    assert done.returncode > 0
    assert "hard link" in _said(done)
    assert sleeper.poll() is None  # not sent the HUP meant for the writer
    assert sorted(path.name for path in logs.iterdir()) == ["app.log"]


THREADED = """\
import sys, threading, time
def worker():
    print(threading.get_native_id(), flush=True)
    time.sleep(120)
threading.Thread(target=worker, daemon=True).start()
time.sleep(120)
"""


def test_a_thread_id_in_a_pidfile_is_refused_before_anything_moves(tmp_path: Path) -> None:
    """A thread's id opens like a pid in /proc but names no process of its own: the
    pidfile is refused before the log is renamed, not failed on halfway."""
    process = subprocess.Popen(
        [sys.executable, "-c", THREADED], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert process.stdout is not None
        thread_id = int(process.stdout.readline())
        assert thread_id != process.pid
        pidfile = tmp_path / "writer.pid"
        pidfile.write_text(f"{thread_id}\n")
        logs = _setup(tmp_path, pidfile)
        before = (logs / "app.log").read_bytes()
        done = _run(tmp_path, "run", "rotate", "--yes")
        assert done.returncode > 0
        assert "thread" in _said(done)
        assert "Traceback" not in _said(done)
        assert sorted(path.name for path in logs.iterdir()) == ["app.log"]
        assert (logs / "app.log").read_bytes() == before
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_a_service_user_s_pidfile_cannot_name_a_root_process_running_with_its_uid(
    tmp_path: Path,
) -> None:
    """A root process that only lends its effective uid to a service user (real and saved
    uid root) cannot be signalled by that user; neither may its pidfile make upkeep do it."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, time; os.setresuid(0, 65534, 0); print('ready', flush=True); "
            "time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"ready"
        pidfile = tmp_path / "writer.pid"
        pidfile.write_text(f"{process.pid}\n")
        os.chown(pidfile, 65534, 65534)  # written by the service's user (nobody)
        logs = _setup(tmp_path, pidfile)
        done = _run(tmp_path, "run", "rotate", "--yes")
        assert done.returncode > 0
        assert "may only name its own processes" in _said(done)
        assert process.poll() is None
        assert sorted(path.name for path in logs.iterdir()) == ["app.log"]
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_a_pidfile_that_is_a_fifo_neither_hangs_nor_is_trusted(tmp_path: Path) -> None:
    pidfile = tmp_path / "writer.pid"
    os.mkfifo(pidfile)  # opening it for reading would wait for a writer that never comes
    logs = _setup(tmp_path, pidfile)
    started = time.monotonic()
    done = _run(tmp_path, "run", "rotate", "--yes")
    assert done.returncode > 0
    assert "not a regular file" in _said(done)
    assert time.monotonic() - started < 30
    assert sorted(path.name for path in logs.iterdir()) == ["app.log"]


def test_a_zombie_named_by_a_pidfile_is_not_running(tmp_path: Path) -> None:
    """A pid that has exited but not been reaped is no writer to signal: the log stays."""
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        pidfile = tmp_path / "writer.pid"
        pidfile.write_text(f"{zombie.pid}\n")
        logs = _setup(tmp_path, pidfile)
        done = _run(tmp_path, "run", "rotate", "--yes")
        assert done.returncode > 0
        assert "has already exited" in _said(done)
        assert sorted(path.name for path in logs.iterdir()) == ["app.log"]
    finally:
        zombie.wait()
