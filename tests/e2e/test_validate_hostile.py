"""`upkeep validate` on the hostile files of issue #11: every one ends in exit 2 with the
file and line, in seconds and without growing memory, never "internal error" or a hang.

Each run is the real CLI in its own process; its peak memory is read from the kernel
(``wait4``) and compared with the same CLI validating a small valid config.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

RUN_TIMEOUT_S = 30.0
"""A validate still running then is killed: the test fails on its exit status."""
TIME_LIMIT_S = 20.0
"""What each hostile validate may take, interpreter start included (about 1 s of CPU;
the margin is for a loaded test machine)."""
RSS_ALLOWANCE_MB = 64
"""How much more memory than validating a small valid config a hostile file may cost."""
VALID = "targets:\n  box: {kind: host}\nchecks:\n  disk: {target: box, probe: disk}\n"
DISK_CHECK = "targets:\n  box: {kind: host}\nchecks:\n  disk:\n    target: box\n    probe: disk\n"


@dataclass(frozen=True)
class Finished:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float


def validate(config: Path, cwd: Path) -> Finished:
    """Run ``upkeep validate -c config``; return its exit code, output, time and peak RSS."""
    environment = {key: value for key, value in os.environ.items() if key != "UPKEEP_CONFIG"}
    environment.update({"COLUMNS": "400", "NO_COLOR": "1"})
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "upkeep.cli.main", "validate", "-c", str(config)],
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        watchdog = threading.Timer(RUN_TIMEOUT_S, os.kill, (process.pid, signal.SIGKILL))
        watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Finished(
            process.returncode,
            out.read().decode("utf-8", errors="replace"),
            err.read().decode("utf-8", errors="replace"),
            seconds,
            usage.ru_maxrss / 1024,
        )


@pytest.fixture(scope="module")
def baseline_rss_mb(tmp_path_factory: pytest.TempPathFactory) -> float:
    directory = tmp_path_factory.mktemp("valid")
    config = directory / "upkeep.yaml"
    config.write_text(VALID, encoding="utf-8")
    finished = validate(config, directory)
    assert finished.code == 0, finished.stderr
    return finished.peak_rss_mb


def billion_laughs() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [
        f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]" for level in range(1, 9)
    ]
    return "\n".join(lines) + "\n"


def text_file(text: str, encoding: str = "utf-8") -> Callable[[Path], Path]:
    def make(directory: Path) -> Path:
        path = directory / "upkeep.yaml"
        path.write_bytes(text.encode(encoding))
        return path

    return make


def fifo_secret(directory: Path) -> Path:
    os.mkfifo(directory / "secret")
    return text_file(DISK_CHECK + "    description: '${file:secret}'\n")(directory)


def stretched_value(directory: Path) -> Path:
    """Two secret files of 40 KiB each, well inside their cap, made one 80 KiB value."""
    for name in ("part-a", "part-b"):
        (directory / name).write_text("x" * 40 * 1024, encoding="utf-8")
    return text_file(DISK_CHECK + "    description: '${file:part-a}${file:part-b}'\n")(directory)


def fifo_config(directory: Path) -> Path:
    path = directory / "upkeep.yaml"
    os.mkfifo(path)
    return path


# Each hostile file, the line its error must name (0: the file as a whole) and a phrase.
CASES: dict[str, tuple[Callable[[Path], Path], int, str]] = {
    "not-utf8": (text_file(DISK_CHECK + "    description: caf\xe9\n", "latin-1"), 7, "not UTF-8"),
    "huge-duration": (
        text_file(DISK_CHECK + "    every: 99999999999999y\n"),
        7,
        "checks.disk.every",
    ),
    "recursive-alias": (text_file("a: &a [*a]\n"), 1, "recursive alias"),
    "billion-laughs": (text_file(billion_laughs()), 5, "aliases repeat more than"),
    "nested-parentheses": (
        text_file(
            DISK_CHECK + "    warn: '" + "(" * 5000 + "used_percent > 1" + ")" * 5000 + "'\n"
        ),
        7,
        "checks.disk.warn",
    ),
    "many-nots": (
        text_file(DISK_CHECK + "    warn: '" + "not " * 50000 + "used_percent > 1'\n"),
        7,
        "checks.disk.warn",
    ),
    # libyaml's own bound (1,000) or ours (64), whichever its look-ahead meets first.
    "deep-brackets": (text_file("a: " + "[" * 100_000 + "]" * 100_000 + "\n"), 1, "nest"),
    "file-dev-zero": (
        text_file(DISK_CHECK + "    description: '${file:/dev/zero}'\n"),
        7,
        "a character device, not a regular file",
    ),
    "file-fifo": (fifo_secret, 7, "a FIFO (named pipe), not a regular file"),
    # A single value is at most 64 Ki characters written out, and so once expanded.
    "expanded-value": (stretched_value, 7, "checks.disk.description: the value is longer"),
    "config-fifo": (fifo_config, 0, "cannot read config: a FIFO"),
    "config-dev-zero": (lambda _: Path("/dev/zero"), 0, "cannot read config: a character device"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validate_refuses_a_hostile_file_with_its_line_in_bounded_time_and_memory(
    tmp_path: Path, baseline_rss_mb: float, case: str
) -> None:
    make, line, phrase = CASES[case]
    config = make(tmp_path)
    finished = validate(config, tmp_path)
    assert finished.code == 2, (finished.code, finished.stderr[-2000:])
    assert f"{config}:{line}:" in finished.stderr, finished.stderr[-2000:]
    assert phrase in finished.stderr, finished.stderr[-2000:]
    assert "nothing was applied" in finished.stderr
    assert "internal error" not in finished.stderr and "Traceback" not in finished.stderr
    assert finished.seconds < TIME_LIMIT_S
    assert finished.peak_rss_mb < baseline_rss_mb + RSS_ALLOWANCE_MB, (
        finished.peak_rss_mb,
        baseline_rss_mb,
    )
