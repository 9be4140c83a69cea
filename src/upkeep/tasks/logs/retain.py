"""logs.retain: keep rotated archives per log class, copy them to a second store, and
delete them locally only once the copy is proven.

The seeds keep application logs 30 days, error logs 90, security logs a year and audit
logs seven years. ``classes`` say that per log name (the first class whose ``match`` glob
matches the log an archive came from wins); each class has ``keep`` (age) and/or
``keep_count`` (the newest N).

With ``archive_to`` (an absolute local directory, or ``sftp://user@host[:port]/dir`` with
``sftp:`` login options), every archive is first copied there (under a temporary name,
made durable, renamed) and the copy read back and its sha256 compared with the original's;
an archive past retention is deleted locally only if its copy reads back with a matching
checksum at that moment. A different file already under an archive's name there (damaged,
or another log's archive of the same name) is never overwritten: that archive stays, the
others go on, and the run fails naming it. Without ``archive_to``, past retention means
deleted.

The second store is kept by the same classes: a copy is kept as long as its class's
``archive_keep`` says (dated by the stamp in its name), or, without one, as long as
``keep`` and no longer than the archive here, so nothing outlives its class anywhere. An
archive whose copy would be past retention too is deleted without being copied first;
one whose copy outlives it (``archive_keep`` longer than ``keep``) is deleted here only
once its copy is proven. ``keep_count`` counts this directory's archives only, and only copies
of this target's logs (the log its path names, logs its pattern matches, logs it has
archives of) are judged at all: a second store shared with other targets or hosts keeps
their copies by their own classes.

Only files with the archive name shape ``<log>-YYYYmmdd-HHMMSS[.N][.zst|.gz]`` directly in
the target's directory are considered; links are never followed or deleted, and nothing
outside the directory is touched: archives are listed, opened, copied and deleted relative
to the directory's descriptor (``upkeep.io.safefs``), each only as the inode listed, and a
copy keeps the archive's mode and owner. The dry run lists every copy and deletion.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar

from pydantic import Field, ValidatorFunctionWrapHandler, model_validator

from upkeep.core.durations import Duration, format_duration
from upkeep.core.models import StrictModel, some_of, validate_with_key_rule
from upkeep.core.redaction import SecretMarker
from upkeep.io.safefs import Directory, Identity, UnsafeFileError
from upkeep.probes.logs import LogsTarget
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan
from upkeep.tasks.copies import (
    CopyConflict,
    CopySource,
    CopyStore,
    SftpOptions,
    location_problems,
    open_store,
)
from upkeep.tasks.logs.rotate import ARCHIVE_NAME


class LogClass(StrictModel):
    """Retention of the archives of the logs whose name matches ``match``."""

    match: str = Field(description="glob on the log's name: error*.log, audit*, *")
    keep: Duration | None = Field(default=None, description="delete archives older than this")
    keep_count: int | None = Field(default=None, ge=0, le=100_000, description="keep the newest N")
    archive_keep: Duration | None = Field(
        default=None,
        description="how long the copy in archive_to is kept (default: as long as keep, and a "
        "copy goes with an archive keep_count deletes); longer keeps the copy after the "
        "archive here is deleted",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _some_rule(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> LogClass:
        rule = some_of(("keep", "keep_count"), "a log class needs keep, keep_count or both")
        return validate_with_key_rule(cls, data, handler, rule)


class RetainParams(StrictModel):
    """Params of ``logs.retain``."""

    classes: list[LogClass] = Field(min_length=1, description="first match wins")
    # A password may sit in an sftp:// URL: it is masked like a DSN's.
    archive_to: Annotated[str | None, SecretMarker(part="password")] = Field(
        default=None,
        description="an absolute directory or sftp://user@host[:port]/dir that gets a "
        "verified copy of every archive not yet past its class's archive_keep (else keep); "
        "copies are pruned by the same classes, only this target's logs' copies",
    )
    sftp: SftpOptions | None = Field(default=None, description="login for an sftp:// archive_to")


@dataclass(frozen=True)
class _Archive:
    path: Path
    log: str
    mtime: float
    size: int
    identity: Identity

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class _Copy:
    """An archive's copy in the second store, dated by the stamp in its name."""

    name: str
    log: str
    mtime: float


def _copy_named(name: str) -> _Copy | None:
    """Return the copy an archive name stands for, dated by its stamp (UTC, as the
    rotation writes it); None if the name is not an archive's."""
    match = ARCHIVE_NAME.match(name)
    if match is None:
        return None
    try:
        stamp = datetime.strptime(match.group("stamp"), "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None  # digits that are no date: not an archive of ours
    return _Copy(name, match.group("log"), stamp.timestamp())


def _copies(store: CopyStore, owned: Callable[[str], bool]) -> list[_Copy]:
    """Return the copies in the second store of the logs ``owned`` accepts, oldest first
    (raise TaskFailed if it cannot be listed). Other hosts' or targets' copies in a shared
    store are never this target's to judge."""
    found = [
        copy
        for name in store.names()
        if (copy := _copy_named(name)) is not None and owned(copy.log)
    ]
    return sorted(found, key=lambda copy: (copy.mtime, copy.name))


def _owner(target: LogsTarget, archives: list[_Archive]) -> Callable[[str], bool]:
    """Given a logs target and its archives, return a test of whether a log name is this
    target's: the log its path names, a log its pattern matches, or one it has archives of."""
    root = Path(target.path)
    if root.is_file():
        names = {root.name}
        return lambda log: log in names
    pattern = PurePosixPath(target.pattern).name
    known = {archive.log for archive in archives}
    return lambda log: log in known or fnmatch.fnmatchcase(log, pattern)


def _root(target: LogsTarget) -> Directory:
    """Open the target's directory (its path is the operator's, followed as written);
    raise TaskFailed if it is not a directory, is a link, or is ``/``."""
    root = Path(target.path)
    if root.is_file():
        root = root.parent
    if not root.is_dir() or root.is_symlink():
        raise TaskFailed(f"{root} is not a directory")
    if root.resolve() == Path("/"):
        raise TaskFailed("refusing / as a log root")
    try:
        return Directory.open(root)
    except OSError as error:
        raise TaskFailed(f"{root} cannot be opened: {error.strerror}") from None


def _archives(root: Directory) -> list[_Archive]:
    found = []
    for entry in root.entries():
        match = ARCHIVE_NAME.match(entry.name)
        if match is None or not entry.is_file:
            continue
        found.append(
            _Archive(
                root.path / entry.name,
                match.group("log"),
                entry.info.st_mtime,
                entry.info.st_size,
                entry.identity,
            )
        )
    return sorted(found, key=lambda archive: (archive.mtime, archive.name))


def _class_of(log: str, classes: list[LogClass]) -> LogClass | None:
    return next((item for item in classes if fnmatch.fnmatchcase(log, item.match)), None)


def _reason(rule: LogClass | None) -> str:
    """Return why a class expires an archive, for the dry run."""
    if rule is None:
        return ""
    if rule.keep is not None:
        return f"class {rule.match!r}: keep {format_duration(rule.keep)}"
    return f"class {rule.match!r}: keep the newest {rule.keep_count}"


def _outlives(archive: _Archive, classes: list[LogClass], now: float) -> bool:
    """Return whether an archive's copy in the second store is still to be kept by its
    class's ``archive_keep`` (so the archive is copied before it is deleted here)."""
    rule = _class_of(archive.log, classes)
    return (
        rule is not None
        and rule.archive_keep is not None
        and now - archive.mtime <= rule.archive_keep.total_seconds()
    )


def _expired_copies(copies: list[_Copy], classes: list[LogClass], now: float) -> list[_Copy]:
    """Given the copies in the second store, return those past their class's
    ``archive_keep`` (else its ``keep``); ``keep_count`` never judges a shared store."""
    doomed = []
    for copy in copies:
        rule = _class_of(copy.log, classes)
        keep = (rule.archive_keep or rule.keep) if rule is not None else None
        if keep is not None and now - copy.mtime > keep.total_seconds():
            doomed.append(copy)
    return doomed


def _gone_everywhere(archives: list[_Archive], classes: list[LogClass], now: float) -> set[str]:
    """Return the names of the archives past retention here whose copies would be past
    retention in the second store too (so they are deleted without being copied)."""
    return {
        archive.name
        for archive in _expired(archives, classes, now)
        if not _outlives(archive, classes, now)
    }


def _prune_copies(
    store: CopyStore,
    outcome: TaskOutcome,
    gone: set[str],
    classes: list[LogClass],
    owned: Callable[[str], bool],
) -> int:
    """Delete from the second store the copies of archives deleted here past retention
    everywhere, and every copy older than its class keeps copies; note each in
    ``outcome`` and return how many were deleted."""
    there = _copies(store, owned)
    present = {copy.name for copy in there}
    deleted_here = {
        Path(change.subject).name for change in outcome.changes if change.action == "delete"
    }
    names = sorted(deleted_here & gone & present)
    names += [
        copy.name for copy in _expired_copies(there, classes, time.time()) if copy.name not in names
    ]
    pruned = 0
    for name in names:
        if store.remove(name):
            pruned += 1
            outcome.changes.append(
                Change("delete", name, f"from {store.description}: past retention")
            )
    return pruned


def _expired(archives: list[_Archive], classes: list[LogClass], now: float) -> list[_Archive]:
    """Given archives oldest first, return those past their class's retention here: older
    than ``keep``, or beyond the newest ``keep_count`` of their log."""
    by_log: dict[str, list[_Archive]] = {}
    for archive in archives:
        by_log.setdefault(archive.log, []).append(archive)
    doomed: list[_Archive] = []
    for log, own in by_log.items():
        rule = _class_of(log, classes)
        if rule is None:
            continue
        chosen = {
            archive.name
            for archive in own
            if rule.keep is not None and now - archive.mtime > rule.keep.total_seconds()
        }
        if rule.keep_count is not None and len(own) > rule.keep_count:
            chosen |= {archive.name for archive in own[: len(own) - rule.keep_count]}
        doomed += [archive for archive in own if archive.name in chosen]
    return doomed


class LogsRetain(Task[LogsTarget, RetainParams]):
    """Apply per-class retention to rotated archives, copying them to a second store first."""

    name: ClassVar[str] = "logs.retain"
    summary: ClassVar[str] = (
        "Keep rotated log archives per class (age, count); copy them to a second store and "
        "delete locally only once the copy's checksum matches."
    )
    Params: ClassVar[type[StrictModel]] = RetainParams
    target_kinds: ClassVar[tuple[str, ...]] = ("logs",)
    target_required: ClassVar[bool] = True

    def validate(self, target: LogsTarget | None, params: RetainParams) -> list[str]:
        """Return problems: a relative ``archive_to``, or one inside the log directory
        (judged only with the target); an ``archive_keep`` without ``archive_to``, or
        shorter than its class's ``keep``."""
        problems = []
        for index, rule in enumerate(params.classes or []):
            if rule.archive_keep is None:
                continue
            if params.archive_to is None:
                problems.append(f"classes[{index}].archive_keep needs archive_to")
            elif rule.keep is not None and rule.archive_keep < rule.keep:
                problems.append(
                    f"classes[{index}].archive_keep ({format_duration(rule.archive_keep)}) is "
                    f"shorter than keep ({format_duration(rule.keep)}): the copy would go first"
                )
        if params.archive_to is not None:
            location = location_problems(params.archive_to, params.sftp)
            problems += location
            if not location and "://" not in params.archive_to and target is not None:
                root = Path(target.path)
                root = root.parent if root.is_file() else root
                if Path(params.archive_to).resolve() == root.resolve():
                    problems.append("archive_to must not be the log directory itself")
        elif params.sftp is not None:
            problems.append("sftp options are given but archive_to is not an sftp:// URL")
        return problems

    async def plan(
        self, target: LogsTarget, params: RetainParams, context: TaskContext
    ) -> TaskPlan:
        """Return every copy and deletion the run would make, making none."""
        del context
        return await asyncio.to_thread(self._plan, target, params)

    def _plan(self, target: LogsTarget, params: RetainParams) -> TaskPlan:
        with contextlib.closing(_root(target)) as root:
            archives = _archives(root)
        changes = []
        note = f"{len(archives)} archive(s) under {root.path}"
        if params.archive_to is not None:
            copies, problem = _planned_copies(archives, params, _owner(target, archives))
            changes += copies
            if problem:
                note += f"; {problem}"
        for archive in _expired(archives, params.classes, time.time()):
            changes.append(
                Change("delete", str(archive.path), _reason(_class_of(archive.log, params.classes)))
            )
        return TaskPlan(changes=changes, note=note)

    async def run(
        self, target: LogsTarget, params: RetainParams, context: TaskContext
    ) -> TaskOutcome:
        """Copy and verify (with ``archive_to``), then delete what retention expires;
        raise TaskFailed if a copy cannot be made or proven (nothing of it is deleted)."""
        del context
        return await asyncio.to_thread(self._run, target, params)

    def _run(self, target: LogsTarget, params: RetainParams) -> TaskOutcome:
        with contextlib.closing(_root(target)) as root:
            archives = _archives(root)
            if params.archive_to is None:
                return _apply(root, archives, params, None, _owner(target, archives))
            with open_store(params.archive_to, params.sftp) as store:
                return _apply(root, archives, params, store, _owner(target, archives))


def _planned_copies(
    archives: list[_Archive], params: RetainParams, owned: Callable[[str], bool]
) -> tuple[list[Change], str]:
    """Return the copies a run would make and the copies it would delete there, and, if
    the second store could not be looked at, why (every archive is then listed as a copy)."""
    assert params.archive_to is not None  # noqa: S101 - the caller checked
    problem = ""
    with open_store(params.archive_to, params.sftp) as store:
        try:
            missing = [archive for archive in archives if not store.has(archive.name)]
            there = _copies(store, owned)
        except TaskFailed as error:
            missing, problem = archives, f"could not list the second store: {error}"
            there = []
        now = time.time()
        # An archive past retention everywhere is not copied; its copy (if any) goes too.
        gone = _gone_everywhere(archives, params.classes, now)
        changes = [
            Change("copy", str(archive.path), f"to {store.description}")
            for archive in missing
            if archive.name not in gone
        ]
        if problem:
            return changes, problem
        present = {copy.name for copy in there}
        doomed = (gone & present) | {c.name for c in _expired_copies(there, params.classes, now)}
        changes += [
            Change("delete", name, f"from {store.description}: past retention")
            for name in sorted(doomed)
        ]
        return changes, problem


def _apply(
    root: Directory,
    archives: list[_Archive],
    params: RetainParams,
    store: CopyStore | None,
    owned: Callable[[str], bool],
) -> TaskOutcome:
    """Copy every archive to ``store`` (if any) and prove it, then delete what retention
    expires and whose copy still reads back intact; raise TaskFailed if a copy fails."""
    outcome = TaskOutcome()
    checksums: dict[str, str] = {}
    conflicts: list[str] = []
    copied = 0
    now = time.time()
    doomed_here = _expired(archives, params.classes, now)
    # Past retention here and, by its class, in the second store too: never copied.
    gone = _gone_everywhere(archives, params.classes, now)
    if store is not None:
        for archive in archives:
            if archive.name in gone:
                continue
            try:
                source = CopySource.open(root, archive.name, expect=archive.identity)
            except FileNotFoundError:
                continue  # removed since it was listed: nothing to keep or copy
            except UnsafeFileError as error:
                conflicts.append(f"{archive.name}: {error.strerror}")
                continue
            with source:
                try:
                    written = store.put(source)
                except CopyConflict as error:
                    conflicts.append(str(error))
                    continue  # no proven copy: this archive stays, the others go on
            checksums[archive.name] = source.sha256
            if written:
                copied += 1
                outcome.changes.append(
                    Change("copy", str(archive.path), f"to {store.description}, sha256 verified")
                )
    deleted = kept = 0
    for archive in doomed_here:
        # Proven now, not only when copied: the second store may have lost it since.
        if (
            store is not None
            and archive.name not in gone
            and (
                archive.name not in checksums
                or not store.proven(archive.name, checksums[archive.name])
            )
        ):
            kept += 1
            continue
        if not root.unlink(archive.name, expect=archive.identity):
            continue  # gone or replaced since it was listed: not ours to delete
        deleted += 1
        outcome.changes.append(Change("delete", str(archive.path), "past retention"))
    pruned = 0
    if store is not None and not conflicts:
        # Only after a run without conflicts: a name that conflicted is not known to be ours.
        pruned = _prune_copies(store, outcome, gone, params.classes, owned)
    outcome.figures = {
        "archives": len(archives),
        "copied": copied,
        "deleted": deleted,
        "kept_unproven": kept,
        "deleted_copies": pruned,
    }
    outcome.message = f"{len(archives)} archive(s): copied {copied}, deleted {deleted}"
    if store is not None:
        outcome.message += f"; {pruned} copies past retention deleted from {store.description}"
    if kept:
        outcome.message += f", kept {kept} whose copy could not be proven"
    if conflicts:
        raise TaskFailed(f"{outcome.message}; " + "; ".join(conflicts) + " (kept locally)")
    return outcome
