"""The logs probes and ``upkeep logs analyze`` as a user who can write the log directory
attacks them (issue #11): a link planted as a log or as a subdirectory, a FIFO named like
a log, and a subdirectory swapped for a link between the listing and the reading. Nothing
outside the target's directory is ever read, and nothing hangs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_probe
from upkeep.probes import logs as logs_module
from upkeep.probes.logs import ErrorsProbe, LevelsProbe, LogFile, LogsTarget


def _line(level: str, text: str) -> str:
    return f"{(datetime.now(UTC) - timedelta(minutes=1)):%Y-%m-%dT%H:%M:%SZ} {level} {text}\n"


@pytest.fixture
def place(tmp_path: Path) -> tuple[Path, Path]:
    """A log directory with one ordinary subdirectory log, and a root-only directory
    outside it holding a file of the same name full of errors (what must never be read)."""
    logs = tmp_path / "logs"
    (logs / "web").mkdir(parents=True)
    (logs / "web" / "app.log").write_text(_line("INFO", "fine"))
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o700)
    (secret / "app.log").write_text(_line("ERROR", "root-only detail") * 50)
    (secret / "app.log").chmod(0o600)
    return logs, secret


def _swapping(logs: Path, secret: Path) -> Callable[[str, str], list[LogFile]]:
    """Return a list_log_files that, once the listing is done, swaps ``web`` for a link to
    the secret directory: what a writer of the log directory can do at any moment."""
    real = logs_module.list_log_files

    def listed_then_swapped(path: str, pattern: str) -> list[LogFile]:
        files = real(path, pattern)
        if (logs / "web").is_dir() and not (logs / "web").is_symlink():
            (logs / "web").rename(logs / "web.old")
            (logs / "web").symlink_to(secret)
        return files

    return listed_then_swapped


@pytest.mark.parametrize("probe", [ErrorsProbe, LevelsProbe])
async def test_a_subdirectory_swapped_for_a_link_after_the_listing_is_not_read(
    place: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, probe: Any
) -> None:
    """``errors`` reads the listed files whole, ``levels`` through its tail: both open each
    file through the target's directory, so the swapped ``web`` is refused, not followed."""
    logs, secret = place
    monkeypatch.setattr(logs_module, "list_log_files", _swapping(logs, secret))
    target = {"path": str(logs), "pattern": "*/*.log"}
    outcome = await run_probe(probe, LogsTarget, target, {"window": "1h"})
    assert outcome.metrics["count" if probe is ErrorsProbe else "errors"] == 0


def test_logs_analyze_of_a_target_never_follows_a_subdirectory_swapped_for_a_link(
    place: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from upkeep.cli.logs import analyze_logs

    logs, secret = place
    config = tmp_path / "upkeep.yaml"
    config.write_text(f"targets:\n  app: {{kind: logs, path: {logs}, pattern: '*/*.log'}}\n")
    monkeypatch.setattr(logs_module, "list_log_files", _swapping(logs, secret))
    code = analyze_logs(
        config,
        [],
        target="app",
        log_format="auto",
        patterns=[],
        since=None,
        top=5,
        json_output=True,
    )
    out = capsys.readouterr()
    assert "root-only detail" not in out.out + out.err
    assert '"ERROR": 50' not in out.out
    assert code == 1
    assert "symbolic link" in " ".join(out.err.split())


async def test_a_link_planted_as_a_log_or_a_subdirectory_is_never_read(
    place: tuple[Path, Path],
) -> None:
    logs, secret = place
    (logs / "evil.log").symlink_to(secret / "app.log")
    (logs / "evil").symlink_to(secret)
    for pattern in ("*.log", "**/*.log"):
        target = {"path": str(logs), "pattern": pattern}
        errors = await run_probe(ErrorsProbe, LogsTarget, target, {"window": "1h"})
        assert errors.metrics["count"] == 0
        levels = await run_probe(LevelsProbe, LogsTarget, target, {"window": "2h"})
        assert levels.metrics["errors"] == 0


async def test_a_fifo_named_like_a_log_neither_hangs_nor_is_read(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text(_line("ERROR", "real"))
    os.mkfifo(logs / "stuck.log")
    started = time.monotonic()
    errors = await run_probe(ErrorsProbe, LogsTarget, {"path": str(logs)}, {"window": "1h"})
    levels = await run_probe(LevelsProbe, LogsTarget, {"path": str(logs)}, {"window": "1h"})
    assert errors.metrics["count"] == 1 and levels.metrics["errors"] == 1
    assert time.monotonic() - started < 5
