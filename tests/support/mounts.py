"""Real mounts for tests: a bind mount or a small tmpfs, undone afterwards.

Mounting needs root (CAP_SYS_ADMIN), which the test machines and CI have. Outside CI a
machine that cannot mount skips those tests; under ``CI=true`` it fails them, like a
missing service, so a silent skip never hides an untested guarantee.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

MOUNT_TIMEOUT_S = 10.0
"""Named timeout for mount and umount."""


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"cannot mount here ({why}); CI=true: a missing capability is a failure")
    pytest.skip(f"cannot mount here: {why}")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S, check=False
    )


@contextlib.contextmanager
def mounted(*options: str, source: str, target: Path) -> Iterator[Path]:
    """Mount ``source`` on ``target`` with ``mount`` options, yield it, unmount after.

    Skip (fail under CI) if this machine cannot mount.
    """
    if os.geteuid() != 0:
        _unavailable("not root")
    done = _run("mount", *options, source, str(target))
    if done.returncode != 0:
        _unavailable(done.stderr.strip() or f"mount exited {done.returncode}")
    try:
        yield target
    finally:
        # Lazily, so a descriptor a failing test left open cannot keep the mount.
        _run("umount", "-l", str(target))


@contextlib.contextmanager
def bind_mount(source: Path, target: Path) -> Iterator[Path]:
    """Bind-mount directory ``source`` on directory ``target`` for the block."""
    with mounted("--bind", source=str(source), target=target) as where:
        yield where


@contextlib.contextmanager
def tmpfs(target: Path, *, size: str = "4m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on directory ``target`` for the block."""
    with mounted("-t", "tmpfs", "-o", f"size={size}", source="tmpfs", target=target) as where:
        yield where
