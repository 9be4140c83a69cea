"""The subprocess seam against real process trees: every descendant ends with its command.

Each tree below hides a grandchild the way real plugins do: it calls ``setsid`` (a new
session and process group, out of reach of a group kill), its parent exits (a double
fork: it is re-parented), and in some cases it clears its environment or ignores SIGTERM.
The grandchild writes its pid to a file and sleeps; the tests assert that no such pid is
left once the seam returns, under every way a command can end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from upkeep.io import process as seam
from upkeep.io import supervisor
from upkeep.io.process import ProcessFailed, ProcessStartError, StreamedProcess, run_process

SLEEPER_S = 300


def hidden_sleeper(
    pidfile: Path, *, clear_env: bool = False, ignore_term: bool = False, daemon: bool = False
) -> str:
    """Return shell text that starts a detached grandchild (setsid, parent exits) which
    writes its pid to ``pidfile`` and sleeps, and waits until the pid is written.
    ``daemon`` closes the grandchild's stdio, as a well-behaved daemon does."""
    trap = "trap '' TERM; " if ignore_term else ""
    # "\\$\\$": the innermost shell's own pid, the one that becomes the sleeper.
    inner = f"{trap}echo \\$\\$ > {pidfile}; exec sleep {SLEEPER_S}"
    setsid = "env -i /usr/bin/setsid" if clear_env else "setsid"
    stdio = " </dev/null >/dev/null 2>&1" if daemon else ""
    return (
        f"sh -c '{setsid} sh -c \"{inner}\"{stdio} &'; "
        f"while [ ! -s {pidfile} ]; do sleep 0.01; done"
    )


def read_pid(pidfile: Path, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{pidfile} was never written")


def gone(pid: int, within: float = 5.0) -> bool:
    """Return whether ``pid`` has ended and been reaped (not even a zombie) within time."""
    deadline = time.monotonic() + within
    while supervisor.read_entry(pid) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- the tree ends, whatever ends the command ------------------------------------------------


def test_the_hidden_sleeper_escapes_a_process_group_kill(tmp_path: Path) -> None:
    """The trees below are real escapes: a group kill (what the seam used to do) misses
    the grandchild, which lives on as ``sleep`` re-parented away from its command."""
    pidfile = tmp_path / "sleeper.pid"
    command = subprocess.Popen(
        ["sh", "-c", f"{hidden_sleeper(pidfile)}; sleep {SLEEPER_S}"], start_new_session=True
    )
    sleeper = read_pid(pidfile)
    try:
        os.killpg(command.pid, signal.SIGKILL)
        command.wait(10)
        assert not gone(sleeper, within=0.3)
        assert psutil.Process(sleeper).cmdline() == ["sleep", str(SLEEPER_S)]
    finally:
        kill_quietly(sleeper)


async def test_a_setsid_grandchild_ends_with_a_timed_out_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    started = time.perf_counter()
    result = await run_process(
        ["sh", "-c", f"{hidden_sleeper(pidfile)}; echo ready; sleep {SLEEPER_S}"], timeout_s=1
    )
    took = time.perf_counter() - started
    sleeper = read_pid(pidfile)
    try:
        assert result.timed_out and result.exit_code is None
        assert result.stdout == "ready\n"
        assert gone(sleeper, within=0.5), "the setsid grandchild outlived the timeout"
        # The pipes it held did not keep the seam waiting past the kill.
        assert took < 1 + seam.KILL_GRACE_S, took
    finally:
        kill_quietly(sleeper)


@pytest.mark.parametrize(
    ("clear_env", "ignore_term"),
    [(False, False), (True, False), (True, True)],
    ids=["setsid", "setsid-cleared-environment", "setsid-cleared-environment-ignores-term"],
)
async def test_descendants_end_when_the_command_exits_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clear_env: bool, ignore_term: bool
) -> None:
    monkeypatch.setattr(seam, "KILL_GRACE_S", 0.3)
    pidfile = tmp_path / "sleeper.pid"
    script = hidden_sleeper(pidfile, clear_env=clear_env, ignore_term=ignore_term)
    result = await run_process(["sh", "-c", f"{script}; echo done"], timeout_s=10)
    sleeper = read_pid(pidfile)
    try:
        assert (result.exit_code, result.stdout, result.timed_out) == (0, "done\n", False)
        # Already ended and reaped when the seam returned: no waiting here.
        assert gone(sleeper, within=0), "a descendant outlived its command"
    finally:
        kill_quietly(sleeper)


async def test_a_tree_that_keeps_forking_while_it_is_killed_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(seam, "KILL_GRACE_S", 0.2)
    marker = f"{SLEEPER_S}.{uuid.uuid4().int % 10**6:06d}"
    script = (
        "trap '' TERM; "
        f"while :; do setsid sh -c \"trap '' TERM; exec sleep {marker}\" & sleep 0.01; done"
    )
    result = await run_process(["sh", "-c", script], timeout_s=0.5)
    assert result.timed_out
    left = [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
    for leftover in left:
        leftover.kill()
    assert not left, f"{len(left)} forked processes survived"


async def test_cancelling_the_caller_ends_the_tree(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    task = asyncio.create_task(
        run_process(["sh", "-c", f"{hidden_sleeper(pidfile)}; sleep {SLEEPER_S}"], timeout_s=60)
    )
    sleeper = await asyncio.to_thread(read_pid, pidfile)
    try:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gone(sleeper, within=0), "the tree outlived the cancelled caller"
        assert seam.live_launches() == 0
    finally:
        kill_quietly(sleeper)


async def test_end_all_launches_ends_every_running_tree(tmp_path: Path) -> None:
    pidfiles = [tmp_path / f"sleeper-{index}.pid" for index in range(3)]
    tasks = [
        asyncio.create_task(
            run_process(["sh", "-c", f"{hidden_sleeper(pidfile)}; sleep {SLEEPER_S}"], timeout_s=60)
        )
        for pidfile in pidfiles
    ]
    sleepers = [await asyncio.to_thread(read_pid, pidfile) for pidfile in pidfiles]
    try:
        assert seam.end_all_launches() == 3
        results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
        # Ended from outside: each command reports the signal that ended it.
        assert [result.exit_code for result in results] == [-signal.SIGTERM] * 3
        assert all(gone(sleeper, within=0) for sleeper in sleepers)
    finally:
        for sleeper in sleepers:
            kill_quietly(sleeper)


def test_a_killed_upkeep_leaves_no_tree_behind(tmp_path: Path) -> None:
    """Whatever kills upkeep (SIGKILL, OOM), its commands' supervisors see it go."""
    pidfile = tmp_path / "sleeper.pid"
    program = (
        "import asyncio, sys\n"
        "from upkeep.io.process import run_process\n"
        "asyncio.run(run_process(['sh', '-c', sys.argv[1]], timeout_s=600))\n"
    )
    upkeep = subprocess.Popen(
        [sys.executable, "-c", program, f"{hidden_sleeper(pidfile)}; sleep {SLEEPER_S}"]
    )
    try:
        sleeper = read_pid(pidfile)
        upkeep.kill()
        upkeep.wait(10)
        assert gone(sleeper), "the tree outlived a SIGKILLed upkeep"
    finally:
        upkeep.kill()
        upkeep.wait(10)
        if pidfile.exists():
            kill_quietly(read_pid(pidfile))


async def test_a_supervisor_killed_from_inside_the_tree_is_swept_by_launch_id(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "sleeper.pid"
    # The command kills its own supervisor (its parent): the fallback sweep by the launch
    # id in the environment still finds the grandchild.
    script = f"{hidden_sleeper(pidfile)}; kill -9 $PPID; sleep {SLEEPER_S}"
    result = await run_process(["sh", "-c", script], timeout_s=30)
    sleeper = read_pid(pidfile)
    try:
        assert result.exit_code == -signal.SIGKILL
        assert gone(sleeper), "the tree outlived its killed supervisor"
    finally:
        kill_quietly(sleeper)


@pytest.mark.parametrize("signal_name", ["USR1", "USR2", "ALRM", "QUIT", "TSTP", "RTMIN"])
async def test_a_stray_signal_to_the_supervisor_does_not_let_the_tree_escape(
    tmp_path: Path, signal_name: str
) -> None:
    """A command signalling its parent (``kill -USR1 $PPID``, a readiness notice some
    daemons send) killed the supervisor by the signal's default action; a grandchild that
    had cleared its environment then escaped the sweep by launch id and ran on for good.
    The supervisor ignores every such signal (the command gets them at their defaults)."""
    pidfile = tmp_path / "sleeper.pid"
    script = (
        f"{hidden_sleeper(pidfile, clear_env=True)}; kill -{signal_name} $PPID; sleep 0.3; "
        "kill -0 $PPID && exit 7"
    )
    result = await run_process(["sh", "-c", script], timeout_s=30)
    sleeper = read_pid(pidfile)
    try:
        assert result.exit_code == 7, result
        assert gone(sleeper), f"the tree outlived a supervisor sent SIG{signal_name}"
    finally:
        kill_quietly(sleeper)


async def test_the_command_gets_the_signals_the_supervisor_ignores_at_their_defaults() -> None:
    script = "kill -USR1 $$; sleep 5"
    result = await run_process(["sh", "-c", script], timeout_s=30)
    assert result.exit_code == -signal.SIGUSR1


async def test_leave_detached_keeps_a_daemon_after_a_normal_exit_only(tmp_path: Path) -> None:
    kept = tmp_path / "kept.pid"
    result = await run_process(
        ["sh", "-c", hidden_sleeper(kept, daemon=True)], timeout_s=10, leave_detached=True
    )
    daemon = read_pid(kept)
    try:
        assert result.exit_code == 0
        assert not gone(daemon, within=0.3), "a start command's daemon was killed"
    finally:
        kill_quietly(daemon)
    ended = tmp_path / "ended.pid"
    result = await run_process(
        ["sh", "-c", f"{hidden_sleeper(ended)}; sleep {SLEEPER_S}"],
        timeout_s=0.5,
        leave_detached=True,
    )
    sleeper = read_pid(ended)
    try:
        assert result.timed_out
        assert gone(sleeper), "a timed-out start command's tree outlived it"
    finally:
        kill_quietly(sleeper)


# --- results and errors ------------------------------------------------------------------------


async def test_exit_codes_output_and_signals_come_through() -> None:
    result = await run_process(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout_s=10)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    killed = await run_process(["sh", "-c", "kill -TERM $$"], timeout_s=10)
    assert killed.exit_code == -signal.SIGTERM
    # SIGPIPE is the command's default again (Python ignores it; the command must not).
    piped = await run_process(["sh", "-c", "yes | head -c 10 >/dev/null; echo ok"], timeout_s=10)
    assert piped.stdout == "ok\n"
    environment = await run_process(["sh", "-c", "echo $EXTRA"], timeout_s=10, env={"EXTRA": "x"})
    assert environment.stdout == "x\n"


async def test_output_is_capped() -> None:
    result = await run_process(
        ["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a"], timeout_s=10, max_output_bytes=1000
    )
    assert len(result.stdout) == 1000 and result.truncated


async def test_a_command_that_cannot_start_raises_start_error(tmp_path: Path) -> None:
    with pytest.raises(ProcessStartError, match="No such file or directory"):
        await run_process([str(tmp_path / "missing")], timeout_s=10)
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ProcessStartError, match="Permission denied"):
        await run_process([str(script)], timeout_s=10)
    with pytest.raises(ProcessStartError):
        await run_process(["true"], timeout_s=10, cwd=str(tmp_path / "no-such-dir"))
    with pytest.raises(ProcessStartError):
        StreamedProcess([str(tmp_path / "missing")], timeout_s=10)
    assert seam.live_launches() == 0


async def test_other_children_of_upkeep_keep_their_exit_status(tmp_path: Path) -> None:
    """upkeep never reaps a pid it did not start through the seam."""
    plain = subprocess.Popen(["sh", "-c", "sleep 0.5; exit 7"])
    direct = await asyncio.create_subprocess_exec("sh", "-c", "sleep 0.5; exit 5")
    launches = [
        run_process(
            ["sh", "-c", f"{hidden_sleeper(tmp_path / f'{index}.pid')}; exit {index}"], timeout_s=10
        )
        for index in range(4)
    ]
    results = await asyncio.gather(*launches)
    assert [result.exit_code for result in results] == [0, 1, 2, 3]
    assert await direct.wait() == 5
    assert plain.wait(10) == 7


# --- StreamedProcess ------------------------------------------------------------------------


def test_a_streamed_command_ends_its_tree_when_it_exits_and_when_left(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    with StreamedProcess(
        ["sh", "-c", f"{hidden_sleeper(pidfile)}; printf data"], timeout_s=10
    ) as streamed:
        assert b"".join(streamed.chunks()) == b"data"
        streamed.check()
    sleeper = read_pid(pidfile)
    assert gone(sleeper, within=0)
    left = tmp_path / "left.pid"
    with StreamedProcess(
        ["sh", "-c", f"{hidden_sleeper(left)}; sleep {SLEEPER_S}"], timeout_s=60, stdout=False
    ):
        sleeper = read_pid(left)
    try:
        assert gone(sleeper, within=0), "leaving the block did not end the tree"
    finally:
        kill_quietly(sleeper)


def test_a_streamed_command_past_its_deadline_fails_and_ends(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    with (
        StreamedProcess(
            ["sh", "-c", f"{hidden_sleeper(pidfile)}; echo x >&2; sleep {SLEEPER_S}"],
            timeout_s=0.5,
            stdout=False,
        ) as streamed,
        pytest.raises(ProcessFailed, match=r"did not finish within 0\.5s"),
    ):
        streamed.check()
    sleeper = read_pid(pidfile)
    try:
        assert gone(sleeper, within=0)
    finally:
        kill_quietly(sleeper)


def test_end_all_launches_reaches_a_stream_in_a_worker_thread(tmp_path: Path) -> None:
    """The CLI's signal handler ends a backup dump that a worker thread is streaming."""
    pidfile = tmp_path / "sleeper.pid"
    failures: list[BaseException] = []

    def dump() -> None:
        with StreamedProcess(
            ["sh", "-c", f"{hidden_sleeper(pidfile)}; sleep {SLEEPER_S}"], timeout_s=600
        ) as streamed:
            try:
                b"".join(streamed.chunks())
                streamed.check()
            except ProcessFailed as error:
                failures.append(error)

    worker = threading.Thread(target=dump)
    worker.start()
    sleeper = read_pid(pidfile)
    try:
        assert seam.end_all_launches() == 1
        worker.join(10)
        assert not worker.is_alive(), "the streaming thread is still waiting"
        assert [str(error) for error in failures] == [f"sh exited -{signal.SIGTERM}: "]
        assert gone(sleeper, within=0)
    finally:
        kill_quietly(sleeper)


# --- pid safety and leaks -------------------------------------------------------------------


def test_signals_go_only_to_the_process_that_was_seen(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", str(SLEEPER_S)])
    try:
        seen = supervisor.read_entry(sleeper.pid)
        assert seen is not None
        # Same pid, another start time: a reused pid is never signalled.
        reused = supervisor.ProcessEntry(seen.pid, seen.parent, seen.state, seen.start_ticks + 1)
        assert not supervisor.signal_entry(reused, signal.SIGKILL)
        for protected in (1, os.getpid(), os.getppid()):
            entry = supervisor.read_entry(protected)
            assert entry is not None
            assert not supervisor.signal_entry(entry, 0)
        assert not supervisor.signal_entry(seen, 0, protected=(sleeper.pid,))
        assert sleeper.poll() is None
        assert supervisor.signal_entry(seen, signal.SIGKILL)
        assert sleeper.wait(10) == -signal.SIGKILL
    finally:
        sleeper.kill()
        sleeper.wait(10)


async def test_many_timed_out_launches_leak_no_fd_and_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A double-forking plugin run again and again with a short timeout, as a daemon does."""
    monkeypatch.setattr(seam, "KILL_GRACE_S", 0.2)

    async def launch(index: int) -> int:
        pidfile = tmp_path / f"{index}.pid"
        await run_process(
            ["sh", "-c", f"{hidden_sleeper(pidfile)}; sleep {SLEEPER_S}"], timeout_s=0.3
        )
        return read_pid(pidfile)

    sleepers = [await launch(index) for index in range(4)]  # warm up: loop, watcher, pools
    baseline = open_fds()
    for batch in range(8):
        sleepers += await asyncio.gather(*(launch(100 + batch * 5 + n) for n in range(5)))
    try:
        assert len(sleepers) == 44
        survivors = [pid for pid in sleepers if not gone(pid, within=0)]
        assert not survivors, f"{len(survivors)} of {len(sleepers)} grandchildren survived"
        assert open_fds() <= baseline, f"fds grew from {baseline} to {open_fds()}"
        assert seam.live_launches() == 0
    finally:
        for pid in sleepers:
            kill_quietly(pid)


async def test_keep_tail_keeps_the_end_of_each_stream() -> None:
    script = (
        "import sys\n"
        "for n in range(5000): print(f'line {n}')\n"
        "sys.stderr.write('e' * 300 + 'last error')\n"
    )
    head = await run_process([sys.executable, "-c", script], timeout_s=30, max_output_bytes=100)
    tail = await run_process(
        [sys.executable, "-c", script], timeout_s=30, max_output_bytes=100, keep_tail=True
    )
    assert head.stdout.startswith("line 0\n") and head.truncated
    assert tail.stdout.endswith("line 4999\n") and len(tail.stdout) == 100 and tail.truncated
    assert tail.stderr.endswith("last error") and len(tail.stderr) == 100
    whole = await run_process(
        [sys.executable, "-c", "print('short')"], timeout_s=30, keep_tail=True
    )
    assert (whole.stdout, whole.truncated) == ("short\n", False)
