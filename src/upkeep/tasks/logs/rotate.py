"""logs.rotate: rotate the logs of a logs target without losing a line, and keep archives
for as long as asked.

For each file of the target (its ``path``, or the files under it matching its
``pattern``; never a link, never an archive): rotate it when it is at least ``min_size``
and its last archive is at least ``every`` old (both optional), in one of two modes:

* ``copytruncate`` (the default, for writers that cannot reopen their file): see
  ``rotation.rotate``: a verified archive, then a collapsed prefix; a copy and truncate
  with a measured loss window only where the filesystem cannot collapse;
* ``rename``: the file is renamed, an empty one with the same mode takes its place, the
  writer is told to reopen (``reopen_signal`` to the pid in ``pidfile``, or
  ``reopen_command``), and the renamed file is then compressed, verified, and removed.

Archives are named ``<log>-YYYYmmdd-HHMMSS[.N].zst`` (or ``.gz``) in ``archive_dir``
(default: beside the log). Retention (``keep`` by age, ``keep_count`` by number) deletes
only files with exactly that name shape for a log of the target, and only regular files.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import signal
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from upkeep.config.durations import Duration, format_duration
from upkeep.io.process import ProcessStartError, run_process
from upkeep.probes.base import StrictModel
from upkeep.probes.logs import LogsTarget
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan
from upkeep.tasks.files.cleanup import format_bytes
from upkeep.tasks.logs import rotation

SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
SIZE_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
REOPEN_WAIT_S = 1.0
"""In ``rename`` mode, how long to wait after the reopen signal before compressing."""


MAX_SIZE = 1024**5
"""The largest size accepted (1 PiB): no log is larger, and the arithmetic stays exact."""


def parse_size(value: str | int) -> int:
    """Given ``10MB``, ``512K``, ``1.5G`` or a number of bytes, return bytes; raise
    ValueError on anything else, a negative size, or one larger than ``MAX_SIZE``."""
    if isinstance(value, int):
        size: float = value
    else:
        match = SIZE.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a size such as 10MB, 512K or 1G")
        size = float(match.group(1)) * SIZE_FACTORS[match.group(2).upper()]
    # Compared as a number first: a float too large (or infinite) has no int.
    if not 0 <= size <= MAX_SIZE:
        raise ValueError("a size is between 0 and 1 PiB (1024T)")
    return int(size)


class RotateParams(StrictModel):
    """Params of ``logs.rotate``."""

    mode: Literal["copytruncate", "rename"] = Field(
        default="copytruncate",
        description="copytruncate: lossless collapse (writers that cannot reopen); "
        "rename: rename, then the writer reopens",
    )
    compress: rotation.Compression = Field(default="zstd", description="zstd, gzip or none")
    min_size: str | int | None = Field(
        default=None, description="rotate only files at least this big (10MB, 512K)"
    )
    every: Duration | None = Field(
        default=None, description="rotate only if the last archive is at least this old"
    )
    keep: Duration | None = Field(default=None, description="delete archives older than this")
    keep_count: int | None = Field(
        default=None, ge=0, le=100_000, description="keep at most this many archives per log"
    )
    archive_dir: str | None = Field(
        default=None, description="where archives go (default: beside each log)"
    )
    reopen_signal: str | None = Field(
        default=None, description="rename mode: signal telling the writer to reopen (HUP, USR1)"
    )
    pidfile: str | None = Field(default=None, description="rename mode: the writer's pid file")
    reopen_command: list[str] | None = Field(
        default=None, description="rename mode: a command that makes the writer reopen"
    )

    @field_validator("min_size")
    @classmethod
    def _size(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_size(value)
        return value

    @field_validator("reopen_signal")
    @classmethod
    def _signal(cls, value: str | None) -> str | None:
        if value is not None:
            name = value.upper() if value.upper().startswith("SIG") else f"SIG{value.upper()}"
            if not hasattr(signal.Signals, name):
                raise ValueError(f"{value!r} is not a signal name such as HUP or USR1")
        return value


@dataclass(frozen=True)
class _Candidate:
    log: Path
    size: int
    reason: str


def _logs(target: LogsTarget) -> list[Path]:
    root = Path(target.path)
    if root.is_file() and not root.is_symlink():
        return [root]
    if not root.is_dir():
        raise TaskFailed(f"{root} does not exist or is not a directory")
    found = []
    for path in sorted(root.glob(target.pattern)):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode) and not _is_archive_name(path.name):
            found.append(path)
    return found


ARCHIVE_NAME = re.compile(r"^(?P<log>.+)-(?P<stamp>\d{8}-\d{6})(?:\.\d+)?(?:\.zst|\.gz)?$")


def _is_archive_name(name: str) -> bool:
    return ARCHIVE_NAME.match(name) is not None


def archives_of(log: Path, directory: Path) -> list[Path]:
    """Given a log and its archive directory, return its archives (regular files only,
    never links), oldest first."""
    found = []
    for path in directory.glob(f"{glob.escape(log.name)}-*"):
        match = ARCHIVE_NAME.match(path.name)
        if match is None or match.group("log") != log.name:
            continue
        if stat.S_ISREG(path.lstat().st_mode):
            found.append(path)
    return sorted(found, key=lambda path: (path.lstat().st_mtime, path.name))


class LogsRotate(Task[LogsTarget, RotateParams]):
    """Rotate logs losslessly into verified, compressed archives and apply retention."""

    name: ClassVar[str] = "logs.rotate"
    summary: ClassVar[str] = (
        "Rotate logs without losing a line (collapse or rename+reopen), compress and verify "
        "archives, keep them by age and count."
    )
    Params: ClassVar[type[StrictModel]] = RotateParams
    target_kinds: ClassVar[tuple[str, ...]] = ("logs",)
    target_required: ClassVar[bool] = True

    def validate(self, target: LogsTarget, params: RotateParams) -> list[str]:
        """Return problems: rename mode without a way to reopen, a reopen signal without a
        pidfile, reopen settings in copytruncate mode."""
        problems = []
        if params.mode == "rename":
            if not params.reopen_command and not params.reopen_signal:
                problems.append("rename mode needs reopen_signal (with pidfile) or reopen_command")
            if params.reopen_signal and not params.pidfile:
                problems.append("reopen_signal needs the writer's pidfile")
        elif params.reopen_signal or params.reopen_command or params.pidfile:
            problems.append("reopen settings apply to mode: rename only")
        return problems

    def _directory(self, log: Path, params: RotateParams) -> Path:
        if params.archive_dir is None:
            return log.parent
        directory = Path(params.archive_dir)
        return directory if directory.is_absolute() else log.parent / directory

    def _candidates(self, target: LogsTarget, params: RotateParams, now: float) -> list[_Candidate]:
        minimum = parse_size(params.min_size) if params.min_size is not None else 1
        chosen = []
        for log in _logs(target):
            size = log.stat().st_size
            if size < minimum:
                continue
            reason = f"{format_bytes(size)}"
            if params.every is not None:
                archives = archives_of(log, self._directory(log, params))
                if archives and now - archives[-1].lstat().st_mtime < params.every.total_seconds():
                    continue
                reason += f", last archive older than {format_duration(params.every)}"
            chosen.append(_Candidate(log, size, reason))
        return chosen

    def _expired(self, log: Path, params: RotateParams, now: float, extra: int = 0) -> list[Path]:
        archives = archives_of(log, self._directory(log, params))
        doomed: list[Path] = []
        if params.keep is not None:
            doomed += [
                path
                for path in archives
                if now - path.lstat().st_mtime > params.keep.total_seconds()
            ]
        if params.keep_count is not None:
            surplus = len(archives) + extra - params.keep_count
            doomed += [path for path in archives[: max(surplus, 0)] if path not in doomed]
        return doomed

    async def plan(
        self, target: LogsTarget, params: RotateParams, context: TaskContext
    ) -> TaskPlan:
        """Return each log that would be rotated and each archive retention would delete."""
        del context
        now = time.time()
        candidates = await asyncio.to_thread(self._candidates, target, params, now)
        changes = [
            Change("rotate", str(candidate.log), f"{params.mode}, {candidate.reason}")
            for candidate in candidates
        ]
        for log in await asyncio.to_thread(_logs, target):
            extra = 1 if any(candidate.log == log for candidate in candidates) else 0
            changes += [
                Change("delete", str(path), "archive past retention")
                for path in self._expired(log, params, now, extra)
            ]
        return TaskPlan(changes=changes, note=f"{len(candidates)} log(s) to rotate")

    async def run(
        self, target: LogsTarget, params: RotateParams, context: TaskContext
    ) -> TaskOutcome:
        """Rotate, then apply retention; raise TaskFailed if an archive does not verify or
        the writer cannot be told to reopen (the log is then left as it was)."""
        outcome = TaskOutcome()
        now = time.time()
        rotated = 0
        lost_window = 0.0
        for candidate in await asyncio.to_thread(self._candidates, target, params, now):
            try:
                result = await self._rotate_one(candidate.log, params, context)
            except rotation.RotationError as error:
                raise TaskFailed(str(error)) from error
            if result is None:
                continue
            rotated += 1
            lost_window = max(lost_window, result.loss_window_s)
            outcome.changes.append(
                Change(
                    "rotate",
                    str(candidate.log),
                    f"{result.method}: {format_bytes(result.bytes_archived)} to {result.archive.name}",
                )
            )
        deleted = 0
        for log in await asyncio.to_thread(_logs, target):
            for path in self._expired(log, params, time.time()):
                path.unlink(missing_ok=True)
                deleted += 1
                outcome.changes.append(Change("delete", str(path), "archive past retention"))
        outcome.figures = {
            "rotated": rotated,
            "archives_deleted": deleted,
            "loss_window_ms": round(lost_window * 1000, 3),
        }
        outcome.message = f"rotated {rotated} log(s), deleted {deleted} old archive(s)"
        return outcome

    async def _rotate_one(
        self, log: Path, params: RotateParams, context: TaskContext
    ) -> rotation.RotationResult | None:
        directory = self._directory(log, params)
        directory.mkdir(parents=True, exist_ok=True)
        moment = datetime.now(UTC)
        if params.mode == "copytruncate":
            return await asyncio.to_thread(
                rotation.rotate,
                log,
                moment=moment,
                archive_dir=directory,
                compression=params.compress,
            )
        return await self._rename(log, params, directory, moment, context)

    async def _rename(
        self,
        log: Path,
        params: RotateParams,
        directory: Path,
        moment: datetime,
        context: TaskContext,
    ) -> rotation.RotationResult:
        info = log.stat()
        raw = rotation.archive_name(log, log.parent, moment, "none")
        raw = raw.with_name(f"{rotation.TEMP_PREFIX}renamed-{raw.name}")
        os.rename(log, raw)
        descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IMODE(info.st_mode))
        os.close(descriptor)
        with_owner = (info.st_uid, info.st_gid)
        if (os.geteuid() == 0) and with_owner != (0, 0):
            os.chown(log, *with_owner)
        await self._reopen(params, context)
        # Writes that were in flight when it reopened still land in the renamed file.
        await asyncio.sleep(REOPEN_WAIT_S)
        final = rotation.archive_name(log, directory, moment, params.compress)
        size = await asyncio.to_thread(rotation.compress_file, raw, final, params.compress)
        raw.unlink()
        return rotation.RotationResult(final, size, "rename")

    async def _reopen(self, params: RotateParams, context: TaskContext) -> None:
        if params.reopen_command:
            try:
                result = await run_process(params.reopen_command, timeout_s=context.timeout_s)
            except ProcessStartError as error:
                raise TaskFailed(f"cannot run the reopen command: {error}") from error
            if result.exit_code != 0:
                raise TaskFailed(
                    f"reopen command exited {result.exit_code}: {result.stderr.strip()[:200]}"
                )
            return
        if params.reopen_signal and params.pidfile:
            name = params.reopen_signal.upper()
            number = getattr(signal.Signals, name if name.startswith("SIG") else f"SIG{name}")
            try:
                pid = int(Path(params.pidfile).read_text().strip())
                os.kill(pid, number)
            except (OSError, ValueError) as error:
                raise TaskFailed(
                    f"cannot signal the writer from {params.pidfile}: {error}"
                ) from error
