"""Real file systems for fault tests: a small tmpfs that fills up, a read-only mount.

Both need root (CI runs as root). Where mounting is not allowed the test is skipped, but
under ``CI=true`` it fails: a fault test that silently does not run proves nothing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILL_CHUNK = 64 * 1024


def _mount(*argv: str) -> None:
    done = subprocess.run(["mount", *argv], capture_output=True, check=False)
    if done.returncode != 0:
        message = f"cannot mount ({' '.join(argv)}): {done.stderr.decode().strip()}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: a fault test that cannot run is a failure)")
        pytest.skip(message)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``4m``) on ``path`` (created) for the block's duration."""
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    try:
        yield path
    finally:
        _umount(path)


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
    _mount("--bind", str(source), str(view))
    try:
        yield BindView(view)
    finally:
        _umount(view)


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
