"""Real mounts for tests: a bind mount, a small tmpfs that fills up, a read-only view.

Mounting needs root (CAP_SYS_ADMIN), which the test machines and CI have. Outside CI a
machine that cannot mount skips those tests; under ``CI=true`` it fails them, like a
missing service: a fault test that silently does not run proves nothing.
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
FILL_CHUNK = 64 * 1024


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"cannot mount here ({why}); CI=true: a missing capability is a failure")
    pytest.skip(f"cannot mount here: {why}")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S, check=False
    )


def _mount(*argv: str) -> None:
    """Run ``mount`` with argv; skip (fail under CI) if this machine cannot mount."""
    if os.geteuid() != 0:
        _unavailable("not root")
    done = _run("mount", *argv)
    if done.returncode != 0:
        _unavailable(f"mount {' '.join(argv)}: {done.stderr.strip() or done.returncode}")


def _umount(path: Path) -> None:
    # Lazily, so a descriptor a failing test left open cannot keep the mount.
    _run("umount", "-l", str(path))


@contextlib.contextmanager
def mounted(*options: str, source: str, target: Path) -> Iterator[Path]:
    """Mount ``source`` on ``target`` with ``mount`` options, yield it, unmount after."""
    _mount(*options, source, str(target))
    try:
        yield target
    finally:
        _umount(target)


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


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``4m``) on ``path`` (created) for the block's duration."""
    path.mkdir(parents=True, exist_ok=True)
    with mounted("-t", "tmpfs", "-o", f"size={size},mode=0755", source="tmpfs", target=path):
        yield path


class BindView:
    """A bind mount of a directory elsewhere, read-only or writable by turns."""

    def __init__(self, view: Path) -> None:
        self.path = view

    def read_only(self) -> None:
        """Make the view read-only: nobody, root included, can write through it."""
        _mount("-o", "remount,bind,ro", str(self.path))

    def writable(self) -> None:
        """Make the view writable again."""
        _mount("-o", "remount,bind,rw", str(self.path))


@contextlib.contextmanager
def bind_view(source: Path, view: Path) -> Iterator[BindView]:
    """Show the directory ``source`` at ``view`` (a bind mount, writable until told
    otherwise) for the block's duration."""
    view.mkdir(parents=True, exist_ok=True)
    with bind_mount(source, view):
        yield BindView(view)


def fill(directory: Path, name: str = "filler") -> Path:
    """Write zeros into ``directory/name`` until its file system is full; return the file."""
    path = directory / name
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (FILL_CHUNK, 4096, 512):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    os.write(descriptor, chunk)
    finally:
        os.close(descriptor)
    return path
