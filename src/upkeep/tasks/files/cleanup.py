"""files.cleanup: delete old files that match a glob inside one root, and nothing else.

What is deleted: regular files under ``root`` whose path matches ``pattern`` and whose
modification time is more than ``older_than`` ago. Nothing else is ever removed:

* Symbolic links are neither followed nor deleted, wherever they point; a link the
  pattern matches is reported as skipped. Directories are descended through
  ``upkeep.io.safefs``, relative to their already-open parent and never through a link,
  and files are unlinked relative to their directory's descriptor, so a directory swapped for a link to ``/etc`` between
  listing and deleting cannot redirect a deletion outside the root (a check of resolved
  paths followed by a delete by path would leave exactly that window open).
* A file is checked again just before it is deleted: it must be the same, untouched file
  that was listed (device, inode and inode change time), still a regular file, still old
  enough. A file that has vanished meanwhile (rotated, removed by someone else) is
  counted, not an error.
* Mount points are not crossed (``cross_mounts: false``, the default): a directory on
  another mount than the root, a bind mount of the same filesystem included (compared by
  mount id, not only by device), is skipped with the reason, so a disk or a bind mount
  someone put under the root is never emptied.
* FIFOs, sockets and devices are skipped.
* The root itself is never removed, and ``/`` is refused as a root. With
  ``remove_empty_dirs`` a subdirectory goes only if the cleanup empties it, or it was
  already empty and is itself older than ``older_than`` (a fresh empty one is probably
  about to be used).
* The walk goes at most ``MAX_WALK_DEPTH`` (32) levels below the root and reports where
  it stopped: a tree someone nests without end costs neither the stack nor one
  descriptor per level beyond that.
* Listing and deleting stop at the step's timeout.
* More than ``max_files`` matches make the task refuse before deleting anything, so a
  wrong root or pattern cannot empty a disk.

Pattern: a glob relative to the root with ``*`` and ``?`` (never across ``/``), ``[...]``
and ``**`` (any number of directories: ``**/*.log``, ``archive/**``), the same
meaning ``Path.glob`` gives a logs target's pattern. Without ``recursive`` only the root's
own files are considered. With ``recursive`` the whole tree is walked and a pattern
without ``/`` matches a file's name at any depth (``*.gz`` finds ``a/b/x.gz``), while a
pattern with ``/`` is matched against the whole relative path.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import stat
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from upkeep.core.durations import Duration, format_duration
from upkeep.core.models import StrictModel
from upkeep.core.text import format_bytes, human_duration
from upkeep.io.safefs import (
    MAX_WALK_DEPTH,
    Directory,
    Identity,
    UnsafeFileError,
    glob_regex,
)
from upkeep.probes.logs import LogsTarget
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan

DEFAULT_MAX_FILES = 10_000
"""Named default: more matching files than this and the task refuses to delete any."""
SKIPPED_NAMED = 5
"""How many skipped entries a message names; the rest are counted."""


class CleanupParams(StrictModel):
    """Params of ``files.cleanup``."""

    root: str | None = Field(
        default=None,
        description="absolute directory to clean; defaults to the logs target's path",
    )
    pattern: str | None = Field(
        default=None,
        description='glob relative to root; defaults to the logs target\'s pattern, else "*"',
    )
    older_than: Duration = Field(description="delete only files last modified longer ago")
    recursive: bool = Field(default=False, description="walk subdirectories too")
    remove_empty_dirs: bool = Field(
        default=False,
        description="also remove subdirectories left empty (needs recursive; never the root)",
    )
    max_files: int = Field(
        default=DEFAULT_MAX_FILES,
        ge=1,
        le=100_000_000,
        description="refuse to delete more files than this",
    )
    cross_mounts: bool = Field(
        default=False,
        description="also descend into directories on other mounts (bind mounts included)",
    )

    @field_validator("pattern")
    @classmethod
    def _pattern_ok(cls, value: str | None) -> str | None:
        if value is not None and (problem := pattern_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("older_than")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("older_than cannot be negative")
        return value


# ---------------------------------------------------------------------------------------
# Patterns (pure functions)


def pattern_problem(pattern: str) -> str | None:
    """Given a glob, return why it cannot name files under a root, or None if it can."""
    if not pattern:
        return "the pattern is empty"
    if pattern.startswith("/"):
        return f"{pattern!r} is absolute; the pattern is a glob relative to root, such as *.log"
    parts = pattern.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return (
            f"{pattern!r} has an empty, '.' or '..' part; "
            "write a plain relative glob such as *.log or archive/**/*.gz"
        )
    return None


@dataclass(frozen=True)
class Matcher:
    """Decides whether a relative path is selected by a pattern, honouring ``recursive``."""

    pattern: str
    recursive: bool
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", glob_regex(self.pattern))

    def matches(self, relative: str) -> bool:
        """Given a ``/``-separated path relative to the root, return True if it is selected."""
        if self.recursive and "/" not in self.pattern:
            return self.regex.fullmatch(relative.rsplit("/", 1)[-1]) is not None
        return self.regex.fullmatch(relative) is not None


# ---------------------------------------------------------------------------------------
# Listing and deleting (blocking; run in a worker thread)


@dataclass(frozen=True)
class Candidate:
    """A file that is old enough and matches, as it was when listed."""

    relative: str
    size: int
    mtime: float
    device: int
    inode: int
    ctime_ns: int
    """Inode change time: any write, rename or utime since listing changes it, and a new
    file that got the freed inode number has a later one, so it tells "the same file,
    untouched" where device and inode alone do not."""


@dataclass
class Listing:
    """What a walk of the root found."""

    root: Path
    files: list[Candidate] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    """Subdirectories that deleting ``files`` would leave empty, deepest first."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Matching entries left alone on purpose, with the reason."""


@dataclass
class Deleted:
    """What a deletion pass did."""

    files: list[Candidate] = field(default_factory=list)
    bytes_freed: int = 0
    vanished: int = 0
    dirs: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    """Everything a walk needs, resolved from the params and the target."""

    root: Path
    matcher: Matcher
    older_than: timedelta
    recursive: bool
    remove_empty_dirs: bool
    max_files: int
    cross_mounts: bool = False

    def is_old(self, mtime: float, now: float) -> bool:
        """Given a modification time and now (epoch seconds), return True if old enough."""
        return now - mtime > self.older_than.total_seconds()


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class _Walk:
    """One listing pass: descends directories through ``upkeep.io.safefs`` (relative to
    the open parent, never through a link, not across a mount unless allowed, at most
    ``MAX_WALK_DEPTH`` levels)."""

    def __init__(self, settings: Settings, now: float, deadline: float) -> None:
        self.settings = settings
        self.now = now
        self.deadline = deadline
        self.listing = Listing(settings.root)

    def _check_clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise TaskFailed(
                f"listing {self.settings.root} did not finish within the step's timeout "
                f"({len(self.listing.files)} file(s) found so far); nothing was deleted"
            )

    def _add_file(self, relative: str, info: os.stat_result) -> None:
        self.listing.files.append(
            Candidate(
                relative, info.st_size, info.st_mtime, info.st_dev, info.st_ino, info.st_ctime_ns
            )
        )
        if len(self.listing.files) > self.settings.max_files:
            raise TaskFailed(
                f"more than {self.settings.max_files} files under {self.settings.root} match "
                f"{self.settings.matcher.pattern!r} and are older than "
                f"{format_duration(self.settings.older_than)} (max_files); refusing to delete "
                "any — narrow the pattern or raise max_files"
            )

    def scan(self, directory: Directory, relative_dir: str, depth: int) -> bool:
        """Given an open directory ``depth`` levels below the root, list it; return True if
        the cleanup would empty it."""
        settings = self.settings
        emptied = True
        for entry in directory.entries():
            self._check_clock()
            relative = _join(relative_dir, entry.name)
            info = entry.info
            matched = settings.matcher.matches(relative)
            if entry.is_file:
                if matched and settings.is_old(info.st_mtime, self.now):
                    self._add_file(relative, info)
                else:
                    emptied = False
            elif entry.is_dir and settings.recursive:
                if not self._scan_child(directory, entry.name, relative, info, depth + 1):
                    emptied = False
            else:
                emptied = False
                if stat.S_ISLNK(info.st_mode) and matched:
                    self.listing.skipped.append((relative, "symbolic link, not followed"))
                elif not entry.is_dir and matched:
                    self.listing.skipped.append((relative, "not a regular file"))
        return emptied

    def _scan_child(
        self, parent: Directory, name: str, relative: str, info: os.stat_result, depth: int
    ) -> bool:
        """Given a subdirectory ``depth`` levels below the root, list it; return True
        unless it will still exist afterwards."""
        if depth > MAX_WALK_DEPTH:
            self.listing.skipped.append((relative, f"deeper than {MAX_WALK_DEPTH} levels"))
            return False
        try:
            child = parent.child(name)
        except FileNotFoundError:
            return True
        except UnsafeFileError as error:
            # EXDEV: another mount; ELOOP: replaced by a link since the entry was read.
            reason = (
                "a mount point, not crossed (cross_mounts)"
                if error.errno == errno.EXDEV
                else f"directory not read: {error.strerror}"
            )
            self.listing.skipped.append((relative, reason))
            return False
        except OSError as error:
            self.listing.skipped.append((relative, f"directory not read: {error.strerror}"))
            return False
        found_before = len(self.listing.files) + len(self.listing.dirs)
        with child:
            try:
                emptied = self.scan(child, relative, depth)
            except PermissionError as error:
                self.listing.skipped.append((relative, f"directory not read: {error.strerror}"))
                return False
        if not emptied or not self.settings.remove_empty_dirs:
            return False
        # An empty directory nobody has touched lately may go; a fresh empty one is
        # probably about to be used (a spool or a new day's log folder), so it stays.
        emptied_by_us = len(self.listing.files) + len(self.listing.dirs) > found_before
        if emptied_by_us or self.settings.is_old(info.st_mtime, self.now):
            self.listing.dirs.append(relative)
            return True
        return False


def _open_root(settings: Settings) -> Directory:
    try:
        return Directory.open(settings.root, cross_mounts=settings.cross_mounts)
    except FileNotFoundError as error:
        raise TaskFailed(f"root {settings.root} does not exist") from error
    except OSError as error:
        raise TaskFailed(f"root {settings.root} cannot be opened: {error.strerror}") from error


def list_candidates(settings: Settings, now: float, deadline: float) -> Listing:
    """Given settings, now (epoch s) and a monotonic deadline, return what would be deleted.

    Raise TaskFailed if the root cannot be listed, more than ``max_files`` files match,
    or the deadline passes.
    """
    walk = _Walk(settings, now, deadline)
    with _open_root(settings) as root:
        try:
            walk.scan(root, "", 0)
        except PermissionError as error:
            raise TaskFailed(f"root {settings.root} cannot be listed: {error.strerror}") from error
    return walk.listing


def _open_dir(root: Directory, relative_dir: str) -> Directory:
    """Given the open root and a relative directory, open it as the listing saw it: never
    through a link, not across a mount unless the root allows it.

    Raise FileNotFoundError if it is gone, another OSError if a part is no longer a
    directory (a link swapped in), is a mount put there since the listing, or cannot be
    opened.
    """
    return root.descend(relative_dir) if relative_dir else root.duplicate()


def _delete_in_dir(
    directory: Directory,
    files: list[Candidate],
    settings: Settings,
    done: Deleted,
    deadline: float,
) -> None:
    now = time.time()
    for candidate in files:
        if time.monotonic() > deadline:
            raise TaskFailed(
                f"deleted {len(done.files)} file(s) ({format_bytes(done.bytes_freed)}) under "
                f"{settings.root} before the step's timeout; the rest were left"
            )
        name = candidate.relative.rsplit("/", 1)[-1]
        info = directory.lstat(name)
        if info is None:
            done.vanished += 1
            continue
        if (
            (info.st_dev, info.st_ino, info.st_ctime_ns)
            != (candidate.device, candidate.inode, candidate.ctime_ns)
            or not stat.S_ISREG(info.st_mode)
            or not settings.is_old(info.st_mtime, now)
        ):
            done.skipped.append((candidate.relative, "changed since it was listed"))
            continue
        try:
            removed = directory.unlink(name, expect=Identity.of(info))
        except OSError as error:
            done.errors.append((candidate.relative, error.strerror or str(error)))
            continue
        if not removed:
            done.vanished += 1
            continue
        done.files.append(candidate)
        done.bytes_freed += info.st_size


def delete_listed(settings: Settings, listing: Listing, deadline: float) -> Deleted:
    """Given settings, a listing and a monotonic deadline, delete the listed files and dirs.

    Each file is deleted only if it is still the listed regular file and still old enough;
    vanished files are counted; files that cannot be deleted are collected in ``errors``.
    Raise TaskFailed if the root cannot be opened or the deadline passes.
    """
    done = Deleted()
    by_dir: dict[str, list[Candidate]] = {}
    for candidate in listing.files:
        folder = candidate.relative.rpartition("/")[0]
        by_dir.setdefault(folder, []).append(candidate)
    with _open_root(settings) as root:
        for relative_dir, files in by_dir.items():
            try:
                directory = _open_dir(root, relative_dir)
            except FileNotFoundError:
                done.vanished += len(files)
                continue
            except OSError as error:
                reason = f"directory changed since it was listed: {error.strerror}"
                done.skipped.extend((candidate.relative, reason) for candidate in files)
                continue
            with directory:
                _delete_in_dir(directory, files, settings, done, deadline)
        for relative in listing.dirs:
            parent_dir, _, name = relative.rpartition("/")
            try:
                parent = _open_dir(root, parent_dir)
            except OSError:
                continue
            with parent:
                try:
                    os.rmdir(name, dir_fd=parent.fd)
                except OSError as error:
                    if error.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
                        done.errors.append((relative, error.strerror or str(error)))
                    continue
            done.dirs.append(relative)
    return done


# ---------------------------------------------------------------------------------------
# Formatting


def _describe_skipped(skipped: list[tuple[str, str]]) -> str:
    named = "; ".join(f"{relative}: {reason}" for relative, reason in skipped[:SKIPPED_NAMED])
    more = f"; and {len(skipped) - SKIPPED_NAMED} more" if len(skipped) > SKIPPED_NAMED else ""
    return f"skipped {len(skipped)} ({named}{more})"


# ---------------------------------------------------------------------------------------
# Resolving the step


def _pattern(target: LogsTarget | None, params: CleanupParams) -> str:
    if params.pattern is not None:
        return params.pattern
    return target.pattern if target is not None else "*"


def settings_for(target: LogsTarget | None, params: CleanupParams) -> Settings:
    """Given the target and params, return the resolved settings.

    Raise TaskFailed if they have problems or the root is missing, not a directory,
    or the filesystem root.
    """
    problems = problems_of(target, params)
    if problems:
        raise TaskFailed("; ".join(problems))
    root_text = params.root if params.root is not None else target.path if target else ""
    try:
        root = Path(root_text).resolve(strict=True)
    except FileNotFoundError as error:
        raise TaskFailed(f"root {root_text} does not exist") from error
    except OSError as error:
        raise TaskFailed(f"root {root_text} cannot be resolved: {error.strerror}") from error
    if not root.is_dir():
        raise TaskFailed(f"root {root_text} is not a directory")
    if root == Path(root.anchor):
        raise TaskFailed("root resolves to the filesystem root; refusing to clean '/'")
    return Settings(
        root=root,
        matcher=Matcher(_pattern(target, params), params.recursive),
        older_than=params.older_than,
        recursive=params.recursive,
        remove_empty_dirs=params.remove_empty_dirs,
        max_files=params.max_files,
        cross_mounts=params.cross_mounts,
    )


def problems_of(target: LogsTarget | None, params: CleanupParams) -> list[str]:
    """Given the target (or None) and params, return what keeps them from naming a cleanup."""
    problems: list[str] = []
    root = params.root if params.root is not None else target.path if target else None
    if root is None:
        problems.append("files.cleanup needs `root`, or a logs target whose path is the root")
    elif not Path(root).is_absolute():
        problems.append(
            f"root {root!r} is relative; give an absolute path (a relative one would "
            "depend on the working directory of whoever runs upkeep)"
        )
    pattern = _pattern(target, params)
    if (problem := pattern_problem(pattern)) is not None:
        problems.append(problem)
    elif "/" in pattern and not params.recursive:
        problems.append(f"pattern {pattern!r} reaches into subdirectories; set recursive: true")
    if params.remove_empty_dirs and not params.recursive:
        problems.append("remove_empty_dirs needs recursive: true")
    return problems


# ---------------------------------------------------------------------------------------
# The task


class FilesCleanup(Task[LogsTarget | None, CleanupParams]):
    """Delete regular files older than a threshold that match a glob inside one root."""

    name: ClassVar[str] = "files.cleanup"
    summary: ClassVar[str] = (
        "Delete old files matching a glob inside a root; never follows or deletes links."
    )
    Params: ClassVar[type[StrictModel]] = CleanupParams
    target_kinds: ClassVar[tuple[str, ...]] = ("logs",)

    def validate(self, target: LogsTarget | None, params: CleanupParams) -> list[str]:
        """Given the target (or None) and params, return problems: no root, a relative
        root, a pattern that reaches into subdirectories without ``recursive``,
        ``remove_empty_dirs`` without ``recursive``."""
        return problems_of(target, params)

    async def plan(
        self, target: LogsTarget | None, params: CleanupParams, context: TaskContext
    ) -> TaskPlan:
        """Given the target, params and context, return each file (size, age) and directory
        that would be deleted, deleting nothing.

        Raise TaskFailed if the root is missing or unusable or more than ``max_files`` match.
        """
        settings = settings_for(target, params)
        now = time.time()
        deadline = time.monotonic() + context.timeout_s
        listing = await asyncio.to_thread(list_candidates, settings, now, deadline)
        changes = [
            Change(
                "delete",
                str(settings.root / candidate.relative),
                f"{format_bytes(candidate.size)}, {human_duration(now - candidate.mtime)} old",
            )
            for candidate in listing.files
        ]
        changes += [
            Change("remove_dir", str(settings.root / relative), "empty after the cleanup")
            for relative in listing.dirs
        ]
        total = sum(candidate.size for candidate in listing.files)
        older = format_duration(settings.older_than)
        if listing.files:
            note = (
                f"{len(listing.files)} file(s), {format_bytes(total)}, under {settings.root} "
                f"match {settings.matcher.pattern!r} and are older than {older}"
            )
        else:
            note = (
                f"nothing under {settings.root} matches {settings.matcher.pattern!r} "
                f"and is older than {older}"
            )
        if listing.skipped:
            note += f"; {_describe_skipped(listing.skipped)}"
        return TaskPlan(changes=changes, predictable=True, note=note)

    async def run(
        self, target: LogsTarget | None, params: CleanupParams, context: TaskContext
    ) -> TaskOutcome:
        """Given the target, params and context, delete the old matching files and return
        each deletion with figures ``files_deleted``, ``bytes_freed``, ``skipped``,
        ``files_vanished`` and ``dirs_removed``.

        Raise TaskFailed if the root is missing or unusable, more than ``max_files`` match
        (nothing is deleted then), the step's timeout passes, or some file could not be
        deleted (after deleting the others).
        """
        settings = settings_for(target, params)
        deadline = time.monotonic() + context.timeout_s
        listing = await asyncio.to_thread(list_candidates, settings, time.time(), deadline)
        done = await asyncio.to_thread(delete_listed, settings, listing, deadline)
        skipped = listing.skipped + done.skipped
        message = (
            f"deleted {len(done.files)} file(s), {format_bytes(done.bytes_freed)} freed, "
            f"under {settings.root}"
        )
        if done.dirs:
            message += f"; removed {len(done.dirs)} empty dir(s)"
        if done.vanished:
            message += f"; {done.vanished} vanished before deletion"
        if skipped:
            message += f"; {_describe_skipped(skipped)}"
        if done.errors:
            failures = "; ".join(f"{relative}: {reason}" for relative, reason in done.errors[:5])
            raise TaskFailed(f"{message}; could not delete {len(done.errors)}: {failures}")
        changes = [
            Change("delete", str(settings.root / item.relative), format_bytes(item.size))
            for item in done.files
        ]
        changes += [
            Change("remove_dir", str(settings.root / relative), "left empty")
            for relative in done.dirs
        ]
        return TaskOutcome(
            changes=changes,
            message=message,
            figures={
                "files_deleted": len(done.files),
                "bytes_freed": done.bytes_freed,
                "skipped": len(skipped),
                "files_vanished": done.vanished,
                "dirs_removed": len(done.dirs),
            },
        )
