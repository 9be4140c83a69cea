from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Upkeep = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def upkeep(tmp_path: Path) -> Upkeep:
    """Run the real CLI as a user would, in tmp_path, and return the finished process."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        environment = {key: value for key, value in os.environ.items() if key != "UPKEEP_CONFIG"}
        environment.update({"COLUMNS": "200", "NO_COLOR": "1", **(env or {})})
        return subprocess.run(
            [sys.executable, "-m", "upkeep.cli.main", *args],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
