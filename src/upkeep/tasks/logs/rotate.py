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

The log directory may be writable by others, so every file is handled through
``upkeep.io.safefs``: logs are listed and opened relative to directory descriptors, never
through a link (a linked log or a linked subdirectory is skipped and reported), never on
another mount, only as the inode listed and only without other hard links; archives keep
the log's mode and owner. A log refused that way fails the step after the others are
rotated. The writer's pid comes from its pidfile through ``upkeep.io.signals``: never pid
0, 1 or -1, never upkeep or its process group, only the process the pidfile was written
for, checked before anything is renamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from upkeep.analysis import rotated
from upkeep.core.durations import Duration, format_duration
from upkeep.core.models import StrictModel
from upkeep.core.text import format_bytes
from upkeep.io import signals as signals_io
from upkeep.io.process import ProcessStartError, run_process
from upkeep.io.safefs import Directory, Entry, FoundFile, UnsafeFileError, glob_walk
from upkeep.probes.logs import LogsTarget
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan
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
            signals_io.parse_signal(value)
        return value


ARCHIVE_NAME = re.compile(r"^(?P<log>.+)-(?P<stamp>\d{8}-\d{6})(?:\.\d+)?(?:\.zst|\.gz)?$")


def _is_archive_name(name: str) -> bool:
    return ARCHIVE_NAME.match(name) is not None


def open_target(target: LogsTarget) -> tuple[Directory, str | None]:
    """Given a logs target, return its directory, open, and for a one-file target the
    file's name. The target's path is the operator's and is followed as written; nothing
    below it is. Raise TaskFailed if it is missing, a link to a file, or neither a
    directory nor a regular file."""
    root = Path(target.path)
    try:
        info = os.stat(root)
        if stat.S_ISDIR(info.st_mode):
            return Directory.open(root), None
        if stat.S_ISREG(info.st_mode) and not root.is_symlink():
            return Directory.open(root.parent), root.name
    except FileNotFoundError:
        raise TaskFailed(f"{root} does not exist") from None
    except OSError as error:
        raise TaskFailed(f"{root} cannot be opened: {error.strerror}") from None
    raise TaskFailed(f"{root} is neither a directory nor a regular file (a link?)")


def list_logs(root: Directory, only: str | None, pattern: str) -> tuple[list[FoundFile], list[str]]:
    """Given a target's open directory (and its one file, if it names one) and its glob,
    return the live logs to rotate (regular files, never archives, never through a link
    or across a mount) and, for the record, what matched but was left alone and why."""
    if only is not None:
        info = root.lstat(only)
        if info is None:
            return [], []
        if not stat.S_ISREG(info.st_mode):
            return [], [f"{only}: not a regular file"]
        return [FoundFile(only, info, only)], []
    walk = glob_walk(root, pattern, skip_dirs=frozenset({rotated.STATE_DIR}))
    logs = [found for found in walk.files if not _is_archive_name(found.name)]
    return logs, [f"{relative}: {reason}" for relative, reason in walk.skipped]


def archive_entries(log_name: str, directory: Directory) -> list[Entry]:
    """Given a log's name and its archive directory, return its archives (regular files
    only, never links), oldest first."""
    found = []
    for entry in directory.entries():
        match = ARCHIVE_NAME.match(entry.name)
        if match is None or match.group("log") != log_name or not entry.is_file:
            continue
        found.append(entry)
    return sorted(found, key=lambda entry: (entry.info.st_mtime, entry.name))


def archives_of(log: Path, directory: Path) -> list[Path]:
    """Given a log and its archive directory, return its archives' paths (regular files
    only, never links), oldest first."""
    with Directory.open(directory) as opened:
        return [directory / entry.name for entry in archive_entries(log.name, opened)]


class _Places:
    """The directories one run works in: the target's root, each log's own directory and
    each log's archive directory, opened once, closed together."""

    def __init__(self, target: LogsTarget, params: RotateParams) -> None:
        self.params = params
        self.pattern = target.pattern
        self.root, self.only = open_target(target)
        self._stack = contextlib.ExitStack()
        self._stack.callback(self.root.close)
        self._parents: dict[str, Directory] = {}
        self._archives: dict[str, Directory] = {}

    def parent(self, log: FoundFile) -> Directory:
        """Return the open directory a log is in. Raise UnsafeFileError if it was swapped
        for a link (or a mount) since the walk."""
        if not log.parent:
            return self.root
        if log.parent not in self._parents:
            directory = self.root.descend(log.parent)
            self._stack.callback(directory.close)
            self._parents[log.parent] = directory
        return self._parents[log.parent]

    def existing_archives(self, log: FoundFile) -> Directory | None:
        """Return the log's archive directory if it exists, None if it does not or the
        log's own directory was swapped for a link since the walk (nothing to look at)."""
        try:
            return self.archives(log, create=False)
        except UnsafeFileError:
            return None

    def archives(self, log: FoundFile, *, create: bool) -> Directory | None:
        """Return the open archive directory of a log (None if it does not exist and
        ``create`` is off): beside the log, a path below its directory, or an absolute
        directory of the operator's. Raise TaskFailed if it cannot be opened safely (a
        link or another mount on the way)."""
        parent = self.parent(log)
        setting = self.params.archive_dir
        if setting is None:
            return parent
        key = f"{log.parent}\0{setting}"
        if key not in self._archives:
            mode = stat.S_IMODE(os.fstat(parent.fd).st_mode)
            try:
                if Path(setting).is_absolute():
                    directory = Directory.open(setting, create=create, mode=mode)
                elif create:
                    directory = parent.make_path(setting, mode=mode)
                else:
                    directory = parent.descend(setting)
            except FileNotFoundError:
                return None
            except OSError as error:
                # A relative archive_dir lies in the log directory: its writer can make it
                # a link or a mount point. Nothing is archived to, or deleted from, there.
                raise TaskFailed(
                    f"archive_dir {setting!r} of {parent.path}: {error.strerror}; refusing to "
                    "use it"
                ) from None
            self._stack.callback(directory.close)
            self._archives[key] = directory
        return self._archives[key]

    def close(self) -> None:
        """Close every directory opened."""
        self._stack.close()


@contextlib.contextmanager
def _places(target: LogsTarget, params: RotateParams) -> Iterator[_Places]:
    places = _Places(target, params)
    try:
        yield places
    finally:
        places.close()


def _expired(
    archives: list[Entry], params: RotateParams, now: float, extra: int = 0
) -> list[Entry]:
    doomed: list[Entry] = []
    if params.keep is not None:
        doomed += [
            entry for entry in archives if now - entry.info.st_mtime > params.keep.total_seconds()
        ]
    if params.keep_count is not None:
        surplus = len(archives) + extra - params.keep_count
        doomed += [entry for entry in archives[: max(surplus, 0)] if entry not in doomed]
    return doomed


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

    def validate(self, target: LogsTarget | None, params: RotateParams) -> list[str]:
        """Return problems: rename mode without a way to reopen, a reopen signal without a
        pidfile, a relative pidfile, reopen settings in copytruncate mode, an archive_dir
        that climbs out of the log directory."""
        problems = []
        if params.mode == "rename":
            if not params.reopen_command and not params.reopen_signal:
                problems.append("rename mode needs reopen_signal (with pidfile) or reopen_command")
            if params.reopen_signal and not params.pidfile:
                problems.append("reopen_signal needs the writer's pidfile")
            if params.pidfile is not None and not Path(params.pidfile).is_absolute():
                problems.append(f"pidfile {params.pidfile!r} must be an absolute path")
        elif params.reopen_signal or params.reopen_command or params.pidfile:
            problems.append("reopen settings apply to mode: rename only")
        if params.archive_dir is not None and not Path(params.archive_dir).is_absolute():
            parts = Path(params.archive_dir).parts
            if ".." in parts:
                problems.append(
                    f"archive_dir {params.archive_dir!r} climbs out of the log directory; "
                    "give a path below it or an absolute one"
                )
        return problems

    def _candidates(
        self, places: _Places, params: RotateParams, now: float
    ) -> tuple[list[tuple[FoundFile, str]], list[str]]:
        """Return the logs to rotate (with why) and, for the record, what was left alone and
        why: what matched but is no log to rotate, and in copytruncate mode each log with
        less than one filesystem block of whole lines (a collapse cuts whole blocks; the dry
        run and the run apply this one rule, so they agree)."""
        minimum = parse_size(params.min_size) if params.min_size is not None else 1
        chosen = []
        logs, refused = list_logs(places.root, places.only, places.pattern)
        for log in logs:
            if log.info.st_size < minimum:
                continue
            waiting = self._too_little(places, log) if params.mode == "copytruncate" else None
            if waiting is not None:
                refused.append(f"{log.relative}: {waiting}")
                continue
            reason = f"{format_bytes(log.info.st_size)}"
            if params.every is not None:
                directory = places.existing_archives(log)
                archives = archive_entries(log.name, directory) if directory else []
                if archives and now - archives[-1].info.st_mtime < params.every.total_seconds():
                    continue
                reason += f", last archive older than {format_duration(params.every)}"
            chosen.append((log, reason))
        return chosen, refused

    @staticmethod
    def _too_little(places: _Places, log: FoundFile) -> str | None:
        """Return why a copytruncate rotation would leave the log as it is (too little to
        cut), or None: also when it cannot be opened safely, which its rotation reports."""
        try:
            return rotation.readiness(places.parent(log), log.name, log.identity)
        except (rotated.RotationError, OSError):
            return None

    def _plan(self, target: LogsTarget, params: RotateParams) -> TaskPlan:
        now = time.time()
        with _places(target, params) as places:
            candidates, refused = self._candidates(places, params, now)
            changes = [
                Change("rotate", str(places.root.path / log.relative), f"{params.mode}, {reason}")
                for log, reason in candidates
            ]
            chosen = {log.relative for log, _ in candidates}
            for log in list_logs(places.root, places.only, places.pattern)[0]:
                directory = places.existing_archives(log)
                if directory is None:
                    continue
                extra = 1 if log.relative in chosen else 0
                changes += [
                    Change("delete", str(directory.path / entry.name), "archive past retention")
                    for entry in _expired(archive_entries(log.name, directory), params, now, extra)
                ]
            note = f"{len(candidates)} log(s) to rotate"
            if params.mode == "rename" and params.reopen_signal and params.pidfile:
                note += f"; {_pid_note(params)}"
            if refused:
                note += f"; left alone: {'; '.join(refused[:5])}"
        return TaskPlan(changes=changes, note=note)

    async def plan(
        self, target: LogsTarget, params: RotateParams, context: TaskContext
    ) -> TaskPlan:
        """Return each log that would be rotated and each archive retention would delete."""
        del context
        return await asyncio.to_thread(self._plan, target, params)

    async def run(
        self, target: LogsTarget, params: RotateParams, context: TaskContext
    ) -> TaskOutcome:
        """Rotate, then apply retention; raise TaskFailed if an archive does not verify,
        the writer cannot be told to reopen (a pidfile that cannot be trusted leaves the
        log as it was; a reopen that fails after the rename leaves the renamed file, which
        the next rename rotation archives first), or a log could not be rotated safely (a
        link, another inode, hard-linked; after the others)."""
        outcome = TaskOutcome()
        now = time.time()
        rotated_count = 0
        lost_window = 0.0
        failures: list[str] = []
        with _places(target, params) as places:
            candidates, refused = await asyncio.to_thread(self._candidates, places, params, now)
            for log, _reason in candidates:
                try:
                    result = await self._rotate_one(places, log, params, context)
                except rotated.RotationError as error:
                    if params.mode == "rename":
                        raise TaskFailed(str(error)) from error
                    failures.append(str(error))
                    continue
                except UnsafeFileError as error:
                    failures.append(
                        f"refusing to rotate {places.root.path / log.relative}: {error.strerror}"
                    )
                    continue
                if result is None:
                    # Shrunk (or replaced) since it was chosen: say so, never a silent 0.
                    why = await asyncio.to_thread(self._too_little, places, log)
                    refused.append(f"{log.relative}: {why or 'nothing to cut any more'}")
                    continue
                rotated_count += 1
                lost_window = max(lost_window, result.loss_window_s)
                outcome.changes.append(
                    Change(
                        "rotate",
                        str(places.root.path / log.relative),
                        f"{result.method}: {format_bytes(result.bytes_archived)} to {result.archive.name}",
                    )
                )
            deleted = await asyncio.to_thread(self._retain, places, params, outcome)
        outcome.figures = {
            "rotated": rotated_count,
            "archives_deleted": deleted,
            "loss_window_ms": round(lost_window * 1000, 3),
            "refused": len(failures),
        }
        outcome.message = f"rotated {rotated_count} log(s), deleted {deleted} old archive(s)"
        if refused:
            outcome.message += f"; left alone: {'; '.join(refused[:5])}"
        if failures:
            raise TaskFailed(f"{outcome.message}; " + "; ".join(failures[:5]))
        return outcome

    def _retain(self, places: _Places, params: RotateParams, outcome: TaskOutcome) -> int:
        deleted = 0
        logs, _ = list_logs(places.root, places.only, places.pattern)
        for log in logs:
            directory = places.existing_archives(log)
            if directory is None:
                continue
            for entry in _expired(archive_entries(log.name, directory), params, time.time()):
                if directory.unlink(entry.name, expect=entry.identity):
                    deleted += 1
                    outcome.changes.append(
                        Change("delete", str(directory.path / entry.name), "archive past retention")
                    )
        return deleted

    async def _rotate_one(
        self, places: _Places, log: FoundFile, params: RotateParams, context: TaskContext
    ) -> rotation.RotationResult | None:
        parent = await asyncio.to_thread(places.parent, log)
        archives = await asyncio.to_thread(places.archives, log, create=True)
        assert archives is not None  # noqa: S101 - created when missing
        moment = datetime.now(UTC)
        if params.mode == "copytruncate":
            return await asyncio.to_thread(
                rotation.rotate_in,
                parent,
                log.name,
                moment=moment,
                expect=log.identity,
                archive_dir=archives,
                compression=params.compress,
            )
        return await self._rename(parent, log, params, archives, moment, context)

    async def _rename(
        self,
        parent: Directory,
        log: FoundFile,
        params: RotateParams,
        archives: Directory,
        moment: datetime,
        context: TaskContext,
    ) -> rotation.RotationResult:
        # Whom to signal is settled before anything moves: a pidfile that cannot be
        # trusted leaves the log exactly as it was.
        writer = self._writer(params)
        stamp = moment.strftime("%Y%m%d-%H%M%S")
        renamed = f"{rotated.RENAMED_PREFIX}{log.name}-{stamp}.{secrets.randbelow(10**12):012d}"
        try:
            parent.rename(log.name, renamed, expect=log.identity)
        except (UnsafeFileError, FileExistsError, FileNotFoundError) as error:
            raise rotated.RotationError(
                f"refusing to rotate {parent.path / log.name}: {error.strerror}"
            ) from None
        try:
            fd = parent.open_file(renamed, expect=log.identity, single_link=True)
        except (UnsafeFileError, FileNotFoundError) as error:
            # Something was swapped in at the last instant: put it back untouched.
            with contextlib.suppress(OSError):
                parent.rename(renamed, log.name)
            raise rotated.RotationError(
                f"refusing to rotate {parent.path / log.name}: {error.strerror}"
            ) from None
        try:
            info = os.fstat(fd)
            parent.create_file(log.name, like=info)
            await self._reopen(params, context, writer)
            # Writes that were in flight when it reopened still land in the renamed file.
            await asyncio.sleep(REOPEN_WAIT_S)
            # What an interrupted rotation left holds older lines: archived first, so
            # archives follow the log in name and time order.
            await asyncio.to_thread(
                self._finish_renamed, parent, log.name, archives, params, renamed
            )
            archive, size = await asyncio.to_thread(
                rotation.compress_descriptor, fd, archives, log.name, moment, params.compress, info
            )
        finally:
            os.close(fd)
        parent.unlink(renamed, expect=log.identity)
        return rotation.RotationResult(archive, size, "rename")

    @staticmethod
    def _finish_renamed(
        parent: Directory, name: str, archives: Directory, params: RotateParams, current: str
    ) -> None:
        """Archive what interrupted rename rotations left (renamed, never compressed),
        oldest first, each under the time it was renamed at; ``current`` is this run's and
        is left to the caller. Called after the writer has reopened, so nothing writes
        there any more."""
        prefix = f"{rotated.RENAMED_PREFIX}{name}-"
        for entry in parent.entries():  # sorted by name: by the time in it
            if not entry.name.startswith(prefix) or entry.name == current or not entry.is_file:
                continue
            try:
                moment = datetime.strptime(
                    entry.name[len(prefix) : len(prefix) + 15], "%Y%m%d-%H%M%S"
                ).replace(tzinfo=UTC)
                fd = parent.open_file(entry.name, expect=entry.identity, single_link=True)
            except (ValueError, UnsafeFileError, FileNotFoundError):
                continue  # not a name of ours, or swapped: left alone
            try:
                rotation.compress_descriptor(
                    fd, archives, name, moment, params.compress, os.fstat(fd)
                )
            finally:
                os.close(fd)
            parent.unlink(entry.name, expect=entry.identity)

    @staticmethod
    def _writer(params: RotateParams) -> signals_io.PidfileProcess | None:
        """Return the writer to signal (checked now), or None when a command reopens."""
        if params.reopen_command or not (params.reopen_signal and params.pidfile):
            return None
        try:
            writer = signals_io.read_pidfile(params.pidfile)
        except signals_io.PidfileError as error:
            raise TaskFailed(f"cannot tell the writer to reopen: {error}") from None
        if not writer.running:
            raise TaskFailed(f"cannot tell the writer to reopen: {writer.reason}")
        return writer

    async def _reopen(
        self,
        params: RotateParams,
        context: TaskContext,
        writer: signals_io.PidfileProcess | None,
    ) -> None:
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
        if writer is None or params.reopen_signal is None:
            return
        number = signals_io.parse_signal(params.reopen_signal)
        try:
            sent = signals_io.send_signal(writer.process, number)
        except (signals_io.PidfileError, PermissionError) as error:
            raise TaskFailed(f"cannot signal the writer from {params.pidfile}: {error}") from error
        if not sent:
            raise TaskFailed(
                f"the writer (pid {writer.pid} from {params.pidfile}) exited before it was "
                "told to reopen"
            )


def _pid_note(params: RotateParams) -> str:
    """Return whom the rename would signal, for the dry run."""
    try:
        writer = signals_io.read_pidfile(params.pidfile or "")
    except signals_io.PidfileError as error:
        return f"would refuse to signal: {error}"
    if not writer.running:
        return f"would fail: {writer.reason}"
    return f"would send {params.reopen_signal} to pid {writer.pid} (from {params.pidfile})"
