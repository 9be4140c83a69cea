"""logs.retain: keep rotated archives per log class, copy them to a second store, and
delete them locally only once the copy is proven.

The seeds keep application logs 30 days, error logs 90, security logs a year and audit
logs seven years. ``classes`` say that per log name (the first class whose ``match`` glob
matches the log an archive came from wins); each class has ``keep`` (age) and/or
``keep_count`` (the newest N).

With ``archive_to`` (a local directory), every archive is first copied there (under a
temporary name, fsynced, renamed) and the copy's sha256 compared with the original's; an
archive past retention is deleted locally only if its copy is there and its checksum
matches at that moment. Without ``archive_to``, past retention means deleted.

Only files with the archive name shape ``<log>-YYYYmmdd-HHMMSS[.N][.zst|.gz]`` directly in
the target's directory are considered; links are never followed or deleted, and nothing
outside the directory is touched. The dry run lists every copy and deletion.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from upkeep.config.durations import Duration, format_duration
from upkeep.probes.base import StrictModel
from upkeep.probes.logs import LogsTarget
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan
from upkeep.tasks.logs.rotate import ARCHIVE_NAME
from upkeep.tasks.logs.rotation import CHUNK_BYTES, TEMP_PREFIX, fsync_dir


class LogClass(StrictModel):
    """Retention of the archives of the logs whose name matches ``match``."""

    match: str = Field(description="glob on the log's name: error*.log, audit*, *")
    keep: Duration | None = Field(default=None, description="delete archives older than this")
    keep_count: int | None = Field(default=None, ge=0, description="keep the newest N")

    @model_validator(mode="after")
    def _some_rule(self) -> LogClass:
        if self.keep is None and self.keep_count is None:
            raise ValueError("a log class needs keep, keep_count or both")
        return self


class RetainParams(StrictModel):
    """Params of ``logs.retain``."""

    classes: list[LogClass] = Field(min_length=1, description="first match wins")
    archive_to: str | None = Field(
        default=None, description="a directory that gets a verified copy of every archive"
    )


@dataclass(frozen=True)
class _Archive:
    path: Path
    log: str
    mtime: float
    size: int


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file, read in bounded chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _root(target: LogsTarget) -> Path:
    root = Path(target.path)
    if root.is_file():
        root = root.parent
    if not root.is_dir() or root.is_symlink():
        raise TaskFailed(f"{root} is not a directory")
    if root.resolve() == Path("/"):
        raise TaskFailed("refusing / as a log root")
    return root


def _archives(root: Path) -> list[_Archive]:
    found = []
    with os.scandir(root) as entries:
        for entry in entries:
            match = ARCHIVE_NAME.match(entry.name)
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            info = entry.stat(follow_symlinks=False)
            found.append(
                _Archive(Path(entry.path), match.group("log"), info.st_mtime, info.st_size)
            )
    return sorted(found, key=lambda archive: (archive.mtime, archive.path.name))


def _class_of(log: str, classes: list[LogClass]) -> LogClass | None:
    return next((item for item in classes if fnmatch.fnmatchcase(log, item.match)), None)


def _reason(rule: LogClass | None) -> str:
    """Return why a class expires an archive, for the dry run."""
    if rule is None:
        return ""
    if rule.keep is not None:
        return f"class {rule.match!r}: keep {format_duration(rule.keep)}"
    return f"class {rule.match!r}: keep the newest {rule.keep_count}"


def _expired(archives: list[_Archive], classes: list[LogClass], now: float) -> list[_Archive]:
    by_log: dict[str, list[_Archive]] = {}
    for archive in archives:
        by_log.setdefault(archive.log, []).append(archive)
    doomed: list[_Archive] = []
    for log, own in by_log.items():
        rule = _class_of(log, classes)
        if rule is None:
            continue
        chosen = {
            archive.path
            for archive in own
            if rule.keep is not None and now - archive.mtime > rule.keep.total_seconds()
        }
        if rule.keep_count is not None and len(own) > rule.keep_count:
            chosen |= {archive.path for archive in own[: len(own) - rule.keep_count]}
        doomed += [archive for archive in own if archive.path in chosen]
    return doomed


def _copy_verified(source: Path, directory: Path) -> str:
    """Copy ``source`` into ``directory`` (temporary name, fsync, rename) unless an equal
    copy is there; return the checksum. Raise TaskFailed if the copy does not match."""
    expected = sha256_of(source)
    final = directory / source.name
    if final.exists() and sha256_of(final) == expected:
        return expected
    temporary = directory / f"{TEMP_PREFIX}{source.name}"
    with open(source, "rb") as reader, open(temporary, "wb") as writer:
        shutil.copyfileobj(reader, writer, CHUNK_BYTES)
        writer.flush()
        os.fsync(writer.fileno())
    if sha256_of(temporary) != expected:
        temporary.unlink(missing_ok=True)
        raise TaskFailed(f"the copy of {source.name} in {directory} does not match; kept locally")
    temporary.replace(final)
    fsync_dir(directory)
    return expected


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

    def validate(self, target: LogsTarget, params: RetainParams) -> list[str]:
        """Return problems: a relative ``archive_to``, or one inside the log directory."""
        problems = []
        if params.archive_to is not None:
            destination = Path(params.archive_to)
            if not destination.is_absolute():
                problems.append("archive_to must be an absolute directory")
            elif destination.resolve() == Path(target.path).resolve():
                problems.append("archive_to must not be the log directory itself")
        return problems

    async def plan(
        self, target: LogsTarget, params: RetainParams, context: TaskContext
    ) -> TaskPlan:
        """Return every copy and deletion the run would make, making none."""
        del context
        root = await asyncio.to_thread(_root, target)
        archives = await asyncio.to_thread(_archives, root)
        changes = []
        if params.archive_to is not None:
            destination = Path(params.archive_to)
            changes += [
                Change("copy", str(archive.path), f"to {destination}")
                for archive in archives
                if not (destination / archive.path.name).exists()
            ]
        for archive in _expired(archives, params.classes, time.time()):
            changes.append(
                Change("delete", str(archive.path), _reason(_class_of(archive.log, params.classes)))
            )
        return TaskPlan(changes=changes, note=f"{len(archives)} archive(s) under {root}")

    async def run(
        self, target: LogsTarget, params: RetainParams, context: TaskContext
    ) -> TaskOutcome:
        """Copy and verify (with ``archive_to``), then delete what retention expires;
        raise TaskFailed if a copy cannot be made or proven (nothing of it is deleted)."""
        del context
        return await asyncio.to_thread(self._run, target, params)

    def _run(self, target: LogsTarget, params: RetainParams) -> TaskOutcome:
        outcome = TaskOutcome()
        root = _root(target)
        archives = _archives(root)
        verified: dict[Path, str] = {}
        if params.archive_to is not None:
            destination = Path(params.archive_to)
            destination.mkdir(parents=True, exist_ok=True)
            for archive in archives:
                existed = (destination / archive.path.name).exists()
                verified[archive.path] = _copy_verified(archive.path, destination)
                if not existed:
                    outcome.changes.append(
                        Change("copy", str(archive.path), f"to {destination}, sha256 verified")
                    )
        deleted = kept = 0
        for archive in _expired(archives, params.classes, time.time()):
            info = archive.path.lstat()
            if not stat.S_ISREG(info.st_mode):
                continue
            if params.archive_to is not None:
                copy = Path(params.archive_to) / archive.path.name
                # Proven now, not only when copied: the second store may have lost it since.
                if not copy.exists() or sha256_of(copy) != verified.get(archive.path):
                    kept += 1
                    continue
            archive.path.unlink()
            deleted += 1
            outcome.changes.append(Change("delete", str(archive.path), "past retention"))
        outcome.figures = {
            "archives": len(archives),
            "copied": sum(1 for change in outcome.changes if change.action == "copy"),
            "deleted": deleted,
            "kept_unproven": kept,
        }
        outcome.message = (
            f"{len(archives)} archive(s): copied {outcome.figures['copied']}, deleted {deleted}"
        )
        return outcome
