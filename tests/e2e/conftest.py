from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cli_zygote import ZygoteClient

Upkeep = Callable[..., subprocess.CompletedProcess[str]]

EXEC_ENV = "UPKEEP_TEST_EXEC"
"""Set to 1 to start every CLI call as a fresh interpreter instead of a fork of one that has
already imported the CLI (``tests/support/cli_zygote.py``)."""


def _measuring_subprocesses() -> bool:
    """Whether coverage runs in this process: it measures the processes the suite starts
    only when they start a fresh interpreter (``patch = ["subprocess"]``)."""
    if "coverage" not in sys.modules:
        return False
    import coverage

    return coverage.Coverage.current() is not None


@pytest.fixture(scope="session")
def cli_zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZygoteClient | None]:
    """One CLI fork server per test process, or None where calls must start afresh."""
    if os.environ.get(EXEC_ENV) == "1" or _measuring_subprocesses():
        yield None
        return
    client = ZygoteClient(tmp_path_factory.mktemp("zygote"))
    yield client
    client.close()


def _run_exec(
    args: tuple[str, ...], cwd: Path, environment: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "upkeep.cli.main", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key != "UPKEEP_CONFIG"}
    environment.update({"COLUMNS": "200", "NO_COLOR": "1", **(env or {})})
    return environment


@pytest.fixture
def upkeep(tmp_path: Path, cli_zygote: ZygoteClient | None) -> Upkeep:
    """Run the real CLI as a user would, in tmp_path, and return the finished process.

    Each call is a process of its own, forked from one that has imported the CLI already
    (``cli_zygote``), with this argv, directory, environment and standard streams.
    """

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        environment = _environment(env)
        if cli_zygote is None:
            return _run_exec(args, tmp_path, environment, timeout)
        return cli_zygote.run(list(args), cwd=tmp_path, env=environment, timeout=timeout)

    return run


@pytest.fixture
def upkeep_exec(tmp_path: Path) -> Upkeep:
    """Run the real CLI in tmp_path as a fresh interpreter (``python -m upkeep.cli.main``),
    for what only a fresh start shows (what importing the CLI costs and pulls in)."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return _run_exec(args, tmp_path, _environment(env), timeout)

    return run
