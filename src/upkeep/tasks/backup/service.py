"""Backup operations shared by the tasks (``backup.create``, ``backup.verify``,
``backup.prune``, ``backup.drill``) and ``upkeep backup`` / ``upkeep drill``.

Everything here blocks (dumps, hashing, compression): callers on an event loop run it in a
worker thread. Every operation leaves a record: the repository (complete backups only),
``<repository>/<source>/last-attempt.json`` and ``last-drill.json`` (read by the ``backup``
target's probes, so a failure is an ordinary failing check that alerts through the routes;
authenticated with the key when there is one), and the store's catalog when there is a
store. Only intact backups (``Repository.backups``) are copied, drilled, counted by
retention or restored. The repository is the record of what was backed up; the catalog is
the store's history of it, so a store that fails is logged (and, for a backup, reported)
but never undoes an operation that worked nor hides one that failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zstandard

from upkeep.core.durations import format_duration
from upkeep.core.text import human_duration, one_line
from upkeep.store import crypto
from upkeep.store.backups import BackupEventKind, BackupEventStatus, BackupStatus
from upkeep.store.repository import (
    LAST_ATTEMPT,
    LAST_DRILL,
    REMOVED,
    Backup,
    Repository,
    RepositoryError,
    new_id,
    read_raw,
    scratch_directory,
    stored_sha256,
)
from upkeep.store.store import DEFAULT_SCHEMA
from upkeep.tasks.backup.archive import ArchiveError
from upkeep.tasks.backup.config import BackupsConfig, BackupSourceConfig
from upkeep.tasks.backup.registry import BACKUP_TARGET_KINDS, SOURCE_KINDS, kind_for
from upkeep.tasks.backup.retention import Candidate, Decision, decide
from upkeep.tasks.backup.sources import (
    Source,
    SourceError,
    SourcePlace,
    compare,
    compared,
)

if TYPE_CHECKING:
    from upkeep.probes.base import TargetBase
    from upkeep.store.backups import BackupCatalog

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]


class BackupFailed(Exception):  # noqa: N818 - reads as an outcome, like TaskFailed
    """A backup operation failed; the message says which step and why."""


@dataclass
class BackupEnv:
    """What the operations need: the section, the targets, the catalog and the zone."""

    config: BackupsConfig
    targets: Mapping[str, TargetBase]
    catalog: BackupCatalog | None = None
    zone: tzinfo = UTC
    config_path: Path | None = None
    """upkeep's own config file (for an ``upkeep: true`` source; a Redis restore writes its
    snapshot beside it)."""
    store_url: str | None = None
    """upkeep's own store, as a full URL (for an ``upkeep: true`` source)."""
    store_schema: str = DEFAULT_SCHEMA
    """The schema of upkeep's own store, if it is a PostgreSQL one."""

    @property
    def repository(self) -> Repository:
        """Return the local repository (with the key that authenticates it, if any)."""
        return Repository(Path(self.config.repository), self.config.key)

    def scratch_base(self) -> Path:
        """Return where scratch restores go."""
        return Path(self.config.scratch or Path(self.config.repository) / ".scratch")

    def source_config(self, name: str) -> BackupSourceConfig:
        """Return a source's config: a configured one, else the defaults for a database
        target of that name (``task: backup.drill, target: db`` works without a
        ``backups.sources`` entry); raise BackupFailed naming the known ones."""
        found = self.config.sources.get(name)
        if found is None and getattr(self.targets.get(name), "kind", None) in BACKUP_TARGET_KINDS:
            return BackupSourceConfig(target=name)
        if found is None:
            known = ", ".join(sorted(self.config.sources)) or "none configured"
            raise BackupFailed(f"no backup source named {name!r} (sources: {known})")
        return found

    def source_for(self, name_or_target: str) -> str:
        """Given a source name, or a target some source backs up, return the source name."""
        if name_or_target in self.config.sources:
            return name_or_target
        for name, source in self.config.sources.items():
            if source.target == name_or_target:
                return name
        if getattr(self.targets.get(name_or_target), "kind", None) in BACKUP_TARGET_KINDS:
            return name_or_target
        raise BackupFailed(f"no backup source named or backing up {name_or_target!r}")

    def source(self, name: str, *, target: str | None = None) -> Source:
        """Return the dumper/restorer of a source (``target`` overrides the target of a
        source that backs one up); raise BackupFailed if it cannot be backed up."""
        config = self.source_config(name)
        found: TargetBase | None = None
        if config.target is not None:
            target_name = target or config.target
            found = self.targets.get(target_name)
            if found is None:
                raise BackupFailed(f"no target named {target_name!r}")
        kind = kind_for(config, found)
        if kind is None:
            raise BackupFailed(f"a {getattr(found, 'kind', '?')} target cannot be backed up")
        place = SourcePlace(found, self.config_path, self.store_url, self.store_schema)
        try:
            return kind.from_config(config, place)
        except SourceError as error:
            raise BackupFailed(str(error)) from None


@dataclass
class CreateReport:
    """What ``create`` did."""

    backup: Backup
    copied: list[str] = field(default_factory=list)
    copy_error: str | None = None
    pruned: list[Decision] = field(default_factory=list)
    copy_retention: CopyRetention | None = None
    """What retention did in the second destination (None: none, or nothing pruned)."""
    catalog_error: str | None = None
    """Why the store did not record the backup (it stands in the repository all the same)."""

    def to_json(self) -> dict[str, Any]:
        """Return what was done as ``upkeep backup create --json`` and the API show it: the
        backup's row, how long it took, where it was copied and what retention removed."""
        return {
            **backup_row(self.backup),
            "duration_s": self.backup.intact_manifest.duration_s,
            "copied": self.copied,
            "removed": [decision.candidate.id for decision in self.pruned if not decision.keep],
            "copy_removed": self.copy_retention.removed if self.copy_retention else [],
            "copy_problem": self.copy_retention.problem if self.copy_retention else None,
            "catalog_error": self.catalog_error,
        }


def create(
    env: BackupEnv,
    name: str,
    *,
    progress: Progress | None = None,
    prune_after: bool = True,
    label: str | None = None,
) -> CreateReport:
    """Back up source ``name`` into the repository, copy what the second destination lacks,
    then apply retention; return what was done. Raise BackupFailed if the backup could not
    be made (nothing partial is left, and the failure is recorded) or could not be copied
    (the local backup stands)."""
    config = env.source_config(name)
    source = env.source(name)
    started_at = datetime.now(UTC)
    details = (
        {"source_details": source.details(), "label": label}
        if label
        else {"source_details": source.details()}
    )
    try:
        env.repository.ensure()
        with (
            scratch_directory(env.scratch_base(), f"dump-{name}") as work,
            source.dump(work) as dump,
        ):
            backup = env.repository.write(
                name,
                dump.chunks,
                details=details,
                secret=env.config.key,
                progress=progress,
                started_at=started_at,
                finish=dump.finish,
            )
    except (SourceError, ArchiveError, RepositoryError, OSError, zstandard.ZstdError) as error:
        message = one_line(error)
        _attempt(env, name, ok=False, at=started_at, message=message)
        _catalogue(
            env,
            f"the failed backup of {name}",
            lambda catalog: catalog.add(
                _failed_record(name, started_at, message, env.repository.root)
            ),
        )
        raise BackupFailed(f"backup of {name} failed: {message}") from None
    del config
    _attempt(env, name, ok=True, at=started_at, message=f"backup {backup.id}", backup=backup)
    report = CreateReport(
        backup,
        catalog_error=_catalogue(env, f"backup {backup.id}", lambda c: c.add(_record(backup))),
    )
    if env.config.copy_to is not None:
        try:
            report.copied = copy_out(env, name)
        except BackupFailed as error:
            report.copy_error = str(error)
    if prune_after and not env.config.retention.is_empty():
        retention = prune(env, name, dry_run=False, copy=report.copy_error is None)
        report.pruned, report.copy_retention = retention.decisions, retention.copy
    if report.copy_error is not None:
        _attempt(env, name, ok=False, at=started_at, message=report.copy_error, backup=backup)
        raise BackupFailed(
            f"backup {backup.id} is complete here, but {report.copy_error}; the next run copies it"
        )
    return report


def copy_out(env: BackupEnv, name: str) -> list[str]:
    """Copy every local backup of ``name`` the second destination lacks (data, then the
    manifest, each verified by sha256 there); return the ids copied."""
    from upkeep.tasks.base import TaskFailed
    from upkeep.tasks.copies import CopySource, open_store

    destination = env.config.copy_to
    if destination is None:
        return []
    copied = []
    with open_store(destination, env.config.sftp) as store:
        try:
            for backup in env.repository.backups(name):
                files = [backup.data_path, backup.path / "manifest.json"]
                remote_names = [f"{backup.source}--{backup.id}--{path.name}" for path in files]
                if all(store.has(remote) for remote in remote_names):
                    continue
                for path, remote in zip(files, remote_names, strict=True):
                    with CopySource.from_path(path, as_name=remote) as source:
                        store.put(source)
                copied.append(backup.id)
                copies = [{"destination": store.description, "status": BackupStatus.OK}]
                _catalogue(env, f"the copy of backup {backup.id}", _mark(backup.id, copies=copies))
        except TaskFailed as error:
            raise BackupFailed(f"copy to {store.description} failed: {error}") from None
    return copied


@dataclass
class CopyRetention:
    """What retention did (or would do) in the second destination."""

    destination: str
    decisions: list[Decision] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    problem: str | None = None
    """Why the second destination was not pruned (then nothing there was removed)."""
    foreign: list[str] = field(default_factory=list)
    """Ids of copies there this repository never had (another host's backups of a source
    of the same name): never judged, never removed."""


@dataclass
class RetentionReport:
    """What retention decided for one source: in the repository and in the second
    destination (None when there is none)."""

    decisions: list[Decision]
    copy: CopyRetention | None = None

    @property
    def removed(self) -> list[str]:
        """Return the ids removed (or, in a dry run, to be removed) from the repository."""
        return [decision.candidate.id for decision in self.decisions if not decision.keep]


def prune(env: BackupEnv, name: str, *, dry_run: bool, copy: bool = True) -> RetentionReport:
    """Apply the retention rules to ``name``'s backups in the repository and then in the
    second destination (``copy_to``), each by the same rules; return every decision (newest
    first). Refuse (BackupFailed) when the newest attempt failed: retention runs only after
    a successful backup.

    The second destination loses what the rules do not keep among the backups it holds,
    and everything the repository just lost, but only while it holds every backup the
    repository keeps: a destination that missed copies (unreachable, failing) keeps all it
    has until a copy catches it up. Only copies of backups this repository holds or removed
    (``repository.REMOVED``) are judged there: a copy of an id it never had (another host
    backing up a source of the same name to the same place) is never counted or removed.
    Its failure is reported in the result, never raised:
    the repository's retention stands. ``copy=False`` leaves the second destination alone
    (a run whose copy just failed does not reach for it again)."""
    last = env.repository.read_record(name, LAST_ATTEMPT)
    if last is not None and not last.get("ok") and not dry_run:
        raise BackupFailed(
            f"the last backup of {name} failed ({last.get('message')}); nothing is pruned "
            "until a backup succeeds"
        )
    backups = env.repository.inventory(name)
    decisions = _retention(env, backups)
    report = RetentionReport(decisions)
    if not dry_run:
        by_id = {backup.id: backup for backup in backups}
        started = datetime.now(UTC)
        removed = []
        doomed = {decision.candidate.id for decision in decisions if not decision.keep}
        if doomed and env.config.copy_to is not None:
            # Before the removal: a crash after it still knows those copies are ours.
            _record_removed(env, name, _removed_ids(env, name) | doomed)
        for decision in decisions:
            if not decision.keep:
                env.repository.remove(by_id[decision.candidate.id])
                removed.append(decision.candidate.id)
                gone = decision.candidate.id
                _catalogue(
                    env, f"the removal of backup {gone}", _mark(gone, status=BackupStatus.REMOVED)
                )
        if removed:
            _event(
                env,
                BackupEventKind.PRUNE,
                name,
                None,
                True,
                started,
                f"removed {len(removed)} backup(s)",
                {"removed": removed},
            )
    if env.config.copy_to is not None and copy:
        report.copy = _prune_copy(env, name, backups, decisions, dry_run=dry_run)
    return report


COPY_FILES = ("data.zst", "data.zst.enc", "manifest.json")
"""The files a backup has in the second destination (``<source>--<id>--<file>``)."""


def _prune_copy(
    env: BackupEnv, name: str, backups: list[Backup], decisions: list[Decision], *, dry_run: bool
) -> CopyRetention:
    """Apply the rules to the backups of ``name`` in the second destination, and remove
    there what the repository removed (see ``prune``); return what was (or would be) done."""
    from upkeep.store.repository import id_time
    from upkeep.tasks.base import TaskFailed
    from upkeep.tasks.copies import open_store

    destination = env.config.copy_to
    assert destination is not None  # noqa: S101 - the caller checked
    with open_store(destination, env.config.sftp) as store:
        outcome = CopyRetention(store.description)
        try:
            removed = {decision.candidate.id for decision in decisions if not decision.keep}
            recorded = _removed_ids(env, name)
            ours = {backup.id for backup in backups} | recorded | removed
            files, outcome.foreign = _copies_there(store.names(), name, ours)
            missing = [
                decision.candidate.id
                for decision in decisions
                if decision.keep
                and decision.candidate.id in {backup.id for backup in backups if backup.intact}
                and decision.candidate.id not in files
            ]
            if missing:
                outcome.problem = (
                    f"{store.description} lacks {', '.join(missing)}: nothing is removed there "
                    "until it holds every backup the repository keeps"
                )
                return outcome
            here = {backup.id: backup for backup in backups if backup.intact}
            outcome.decisions = decide(
                [
                    Candidate(i, here[i].taken_at, _verified_ok(here[i]))
                    if i in here
                    else Candidate(i, id_time(i))
                    for i in files
                ],
                env.config.retention,
                now=datetime.now(UTC),
                zone=env.zone,
            )
            kept = {d.candidate.id for d in decisions if d.keep}
            # What the repository keeps stays here; what it removed goes here too.
            doomed = ({d.candidate.id for d in outcome.decisions if not d.keep} - kept) | (
                removed & set(files)
            )
            for decision in outcome.decisions:
                if decision.candidate.id in doomed:
                    decision.reasons = []  # removed from the repository: gone here too
                elif not decision.keep:
                    decision.reasons = ["kept in the repository"]
            for backup_id in sorted(doomed):
                if not dry_run:
                    # The manifest first: a backup whose data is left without one is not a
                    # backup anyone restores; the data last.
                    for file_name in sorted(files[backup_id], key=lambda f: "data" in f):
                        store.remove(file_name)
                outcome.removed.append(backup_id)
            if not dry_run:
                # Ids whose copies are gone need no remembering: the record stays short.
                still_there = recorded & (set(files) - doomed)
                if still_there != recorded:
                    _record_removed(env, name, still_there)
        except TaskFailed as error:
            outcome.problem = f"pruning {store.description} failed: {error}"
    if outcome.problem is not None:
        logger.warning("%s", outcome.problem)
    return outcome


def _copies_there(
    names: Iterable[str], source: str, ours: set[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """Given the file names in the second destination, a source and the ids of the backups
    this repository holds or removed, return the files of each of those ids there, and the
    ids of the source's copies there this repository never had (not ours to judge)."""
    from upkeep.store.repository import id_time

    prefix = f"{source}--"
    files: dict[str, list[str]] = {}
    foreign: set[str] = set()
    for file_name in names:
        parts = file_name[len(prefix) :].split("--")
        if not file_name.startswith(prefix) or len(parts) != 2 or parts[1] not in COPY_FILES:
            continue
        try:
            id_time(parts[0])
        except ValueError:
            continue  # not a backup id: not ours to judge
        if parts[0] in ours:
            files.setdefault(parts[0], []).append(file_name)
        else:
            foreign.add(parts[0])
    return files, sorted(foreign)


def _removed_ids(env: BackupEnv, name: str) -> set[str]:
    """Return the ids retention removed from the repository whose copies may remain
    (``repository.REMOVED``; none if the record is missing or not authentic)."""
    record = env.repository.read_record(name, REMOVED) or {}
    ids = record.get("ids")
    return {i for i in ids if isinstance(i, str)} if isinstance(ids, list) else set()


def _record_removed(env: BackupEnv, name: str, ids: set[str]) -> None:
    env.repository.write_record(name, REMOVED, {"ids": sorted(ids)})


def _retention(env: BackupEnv, backups: list[Backup]) -> list[Decision]:
    """Decide which backups stay, newest first. The rules count intact backups only, so a
    damaged one never takes an intact one's place (as a day's newest, one of the last N,
    or the newest verified); a damaged backup stays while the rules would keep it were it
    intact (for inspection), then goes like any other."""
    now = datetime.now(UTC)
    rules = env.config.retention

    def candidate(backup: Backup) -> Candidate:
        return Candidate(backup.id, backup.taken_at, _verified_ok(backup))

    intact = decide(
        [candidate(backup) for backup in backups if backup.intact], rules, now=now, zone=env.zone
    )
    problems = {backup.id: backup.problem for backup in backups if not backup.intact}
    if not problems:
        return intact
    damaged = [
        decision
        for decision in decide([candidate(b) for b in backups], rules, now=now, zone=env.zone)
        if decision.candidate.id in problems
    ]
    for decision in damaged:
        if decision.keep:
            decision.reasons = [
                f"damaged ({problems[decision.candidate.id]}), kept for inspection while "
                f"{', '.join(decision.reasons)}"
            ]
    return sorted(
        intact + damaged,
        key=lambda decision: (decision.candidate.taken_at, decision.candidate.id),
        reverse=True,
    )


@dataclass
class VerifyReport:
    """What verifying one backup found."""

    backup: Backup
    ok: bool
    problems: list[str]
    restored: bool
    figures: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the verdict as ``upkeep backup verify --json`` and the API show it."""
        return {
            "id": self.backup.id,
            "ok": self.ok,
            "restored": self.restored,
            "problems": self.problems,
            **self.figures,
        }


def verify(
    env: BackupEnv, backup_id: str, *, restore: bool, progress: Progress | None = None
) -> VerifyReport:
    """Re-hash a backup's stored file and its decoded dump against the manifest and, with
    ``restore``, restore it into a scratch copy and compare what it holds; record and
    return the result (a failed verification is a report, not an exception)."""
    backup = _get(env, backup_id)
    started = datetime.now(UTC)
    began = time.monotonic()
    problems: list[str] = []
    figures: dict[str, Any] = {}
    if not backup.intact:
        # Not a backup: say why, and record nothing inside a directory that is not ours.
        problems.append(f"backup {backup.id} is damaged: {backup.problem}")
        figures["duration_s"] = round(time.monotonic() - began, 3)
        _event(
            env, BackupEventKind.VERIFY, backup.source, backup.id, False, started, problems[0], {}
        )
        return VerifyReport(backup, False, problems, restore, figures)
    data = backup.intact_manifest.data
    data_info = None
    try:
        found, data_info = stored_sha256(env.repository, backup)
    except (OSError, RepositoryError) as error:
        problems.append(f"the data file cannot be read: {one_line(error)}")
        found = ""
    if found and found != data.stored_sha256:
        problems.append(
            f"the stored file changed: sha256 {found[:16]}…, manifest {data.stored_sha256[:16]}…"
        )
    if not problems:
        problems += _decoded_problems(
            env, backup, restore=restore, progress=progress, figures=figures
        )
    figures["duration_s"] = round(time.monotonic() - began, 3)
    ok = not problems
    result = {
        "at": datetime.now(UTC).isoformat(),
        "ok": ok,
        "restored": restore,
        "problems": problems,
        **figures,
    }
    if data_info is not None:
        env.repository.record_verification(backup, result, data_info)
    if env.catalog is not None:
        with contextlib.suppress(Exception):  # a catalog row may predate the store
            env.catalog.mark(backup.id, verified_at=datetime.now(UTC), verified_ok=ok)
    _event(
        env,
        BackupEventKind.VERIFY,
        backup.source,
        backup.id,
        ok,
        started,
        "verified" if ok else "; ".join(problems),
        result,
    )
    return VerifyReport(backup, ok, problems, restore, figures)


def _decoded_problems(
    env: BackupEnv,
    backup: Backup,
    *,
    restore: bool,
    progress: Progress | None,
    figures: dict[str, Any],
) -> list[str]:
    """Decode the backup (decrypt, decompress) and, with ``restore``, restore it into a
    scratch copy; return how it differs from the manifest."""
    manifest = backup.intact_manifest
    data = manifest.data
    problems: list[str] = []
    digest = hashlib.sha256()
    size = 0

    def hashed() -> Iterator[bytes]:
        nonlocal size
        for piece in read_raw(env.repository, backup, env.config.key):
            digest.update(piece)
            size += len(piece)
            if progress is not None:
                progress(len(piece))
            yield piece

    try:
        if restore:
            source = env.source(backup.source)
            with (
                scratch_directory(env.scratch_base(), f"verify-{backup.source}") as work,
                source.scratch_restore(_drained(hashed()), work, manifest) as restored,
            ):
                problems += compare(manifest, restored)
                figures["restored_into"] = restored.location
                figures["compared"] = compared(manifest, restored)
        else:
            for _ in hashed():
                pass
    except (crypto.DecryptionError, zstandard.ZstdError, RepositoryError) as error:
        problems.append(f"the data does not decode: {one_line(error)}")
    except (SourceError, ArchiveError) as error:
        problems.append(f"the restore failed: {one_line(error)}")
    else:
        if digest.hexdigest() != data.raw_sha256 or size != data.raw_bytes:
            problems.append(
                f"the decoded dump differs from the manifest ({size} bytes, sha256 "
                f"{digest.hexdigest()[:16]}…)"
            )
    return problems


@dataclass
class DrillReport:
    """What a restore drill measured."""

    source: str
    backup_id: str | None
    passed: bool
    restored: bool
    rto_s: float | None
    rpo_s: float | None
    rto_objective_s: float | None
    rpo_objective_s: float | None
    problems: list[str]
    validations: list[dict[str, Any]]
    took_backup: bool
    backup_s: float | None
    started_at: datetime
    finished_at: datetime
    notes: list[str] = field(default_factory=list)
    """What the drill passed over (newer damaged backups), without failing for it: the
    freshness check is what alerts on a damaged backup."""

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "source": self.source,
            "backup_id": self.backup_id,
            "passed": self.passed,
            "restored": self.restored,
            "rto_s": self.rto_s,
            "rpo_s": self.rpo_s,
            "rto_objective_s": self.rto_objective_s,
            "rpo_objective_s": self.rpo_objective_s,
            "rto_met": _met(self.rto_s, self.rto_objective_s),
            "rpo_met": _met(self.rpo_s, self.rpo_objective_s),
            "problems": self.problems,
            "validations": self.validations,
            "took_backup": self.took_backup,
            "backup_s": self.backup_s,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "notes": self.notes,
        }


def drill(
    env: BackupEnv,
    name: str,
    *,
    rto: timedelta | None = None,
    rpo: timedelta | None = None,
    take_backup: bool = False,
    progress: Progress | None = None,
) -> DrillReport:
    """Restore ``name``'s newest backup (a new one first with ``take_backup``) into a
    scratch copy, compare it with its manifest, run the source's validation queries, and
    measure RTO (from the start of the restore to a validated copy) and RPO (the restored
    data's age at drill time) against the objectives (params, else the source's). Record
    the report and return it; the scratch copy is always removed."""
    config = env.source_config(name)
    started_at = datetime.now(UTC)
    rto = rto or config.rto
    rpo = rpo or config.rpo
    problems: list[str] = []
    validations: list[dict[str, Any]] = []
    backup: Backup | None = None
    backup_s = None
    if take_backup:
        began = time.monotonic()
        try:
            backup = create(env, name, progress=progress, prune_after=False).backup
        except BackupFailed as error:
            problems.append(str(error))
        backup_s = round(time.monotonic() - began, 3)
    notes: list[str] = []
    if backup is None and not problems:
        backup, notes = _newest_intact(env, name)
        if backup is None:
            problems.append(f"there is no intact backup of {name} to restore")
    rto_s = rpo_s = None
    restored = False
    if backup is not None:
        drill_time = datetime.now(UTC)
        rpo_s = round((drill_time - backup.taken_at).total_seconds(), 3)
        began = time.monotonic()
        try:
            source = env.source(name)
            with scratch_directory(env.scratch_base(), f"drill-{name}") as work:
                raw = read_raw(env.repository, backup, env.config.key)
                with source.scratch_restore(raw, work, backup.intact_manifest) as copy:
                    restored = True
                    problems += compare(backup.intact_manifest, copy)
                    for query in config.validate_queries:
                        validations.append(_validate(copy.run_query, query))
                    problems += [
                        f"validation {item['query']!r}: {item['problem']}"
                        for item in validations
                        if not item["ok"]
                    ]
                    rto_s = round(time.monotonic() - began, 3)
        except (
            SourceError,
            ArchiveError,
            RepositoryError,
            crypto.DecryptionError,
            zstandard.ZstdError,
        ) as error:
            problems.append(f"the restore failed: {one_line(error)}")
    rto_objective = rto.total_seconds() if rto else None
    rpo_objective = rpo.total_seconds() if rpo else None
    if _met(rto_s, rto_objective) is False:
        problems.append(
            f"RTO {human_duration(rto_s or 0.0)} exceeds the objective of "
            f"{format_duration(timedelta(seconds=rto_objective or 0.0))}"
        )
    if _met(rpo_s, rpo_objective) is False:
        problems.append(
            f"RPO {human_duration(rpo_s or 0.0)} exceeds the objective of "
            f"{format_duration(timedelta(seconds=rpo_objective or 0.0))}"
        )
    if take_backup and backup is not None and not env.config.retention.is_empty():
        # The drill's own backup counts like any other: retention runs once it is restored
        # (never before, so the drill cannot lose what it restores).
        notes += _retention_notes(env, name)
    report = DrillReport(
        source=name,
        backup_id=backup.id if backup else None,
        passed=not problems and restored,
        restored=restored,
        rto_s=rto_s,
        rpo_s=rpo_s,
        rto_objective_s=rto_objective,
        rpo_objective_s=rpo_objective,
        problems=problems,
        validations=validations,
        took_backup=take_backup,
        backup_s=backup_s,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        notes=notes,
    )
    env.repository.write_record(name, LAST_DRILL, report.to_json())
    _event(
        env,
        BackupEventKind.DRILL,
        name,
        report.backup_id,
        report.passed,
        started_at,
        "passed" if report.passed else "; ".join(problems),
        report.to_json(),
    )
    return report


def _retention_notes(env: BackupEnv, name: str) -> list[str]:
    """Apply retention to ``name`` after a backup a drill took; return what it did, as
    notes (a refusal or a failure is a note too: the drill's verdict is about the restore)."""
    try:
        retention = prune(env, name, dry_run=False)
    except (BackupFailed, RepositoryError, OSError) as error:
        return [f"retention not applied: {one_line(error)}"]
    notes = [f"retention removed {', '.join(retention.removed)}"] if retention.removed else []
    if retention.copy is not None and retention.copy.removed:
        notes.append(
            f"retention removed {', '.join(retention.copy.removed)} from "
            f"{retention.copy.destination}"
        )
    if retention.copy is not None and retention.copy.problem:
        notes.append(retention.copy.problem)
    return notes


def _newest_intact(env: BackupEnv, name: str) -> tuple[Backup | None, list[str]]:
    """Return the newest intact backup of ``name`` (None if there is none) and a note for
    each newer one passed over as damaged."""
    existing = env.repository.inventory(name)
    intact = [candidate for candidate in existing if candidate.intact]
    if not intact:
        return None, []
    newest = intact[-1]
    return newest, [
        f"newer backup {newer.id} is damaged ({newer.problem}): not restored"
        for newer in existing
        if not newer.intact and newer.taken_at > newest.taken_at
    ]


@dataclass
class RestoreReport:
    """What a restore did: loaded the backup into its destination, or (``loaded`` False)
    wrote it to ``written_to`` for loading by hand, changing nothing at the destination."""

    backup: Backup
    destination: str
    safety_backup: str | None
    message: str
    duration_s: float
    loaded: bool = True
    written_to: str | None = None


def loads_in_place(backup: Backup) -> bool:
    """Given a backup, return whether restoring it changes its source (False: the restore
    writes it out for loading by hand, so there is nothing to confirm and nothing to take a
    safety backup of). True for a damaged backup: the restore refuses it anyway."""
    if not backup.intact:
        return True
    kind = SOURCE_KINDS.get(backup.intact_manifest.source_details.kind)
    return kind is None or kind.loads_in_place


def restore(
    env: BackupEnv,
    backup_id: str,
    *,
    to: str | None,
    safety: bool = True,
    progress: Progress | None = None,
) -> RestoreReport:
    """Restore a backup over its source (or over ``to``, a target of the same kind),
    after taking a safety backup of what is there now; record and return what was done.

    A kind that cannot load a backup into its source (``Source.loads_in_place`` False:
    Redis, upkeep itself) writes it into a new private directory instead: no safety backup
    is taken (nothing at the destination changes), the report says ``loaded`` False and
    where it was written, and the catalog records the restore as ``written``.

    Refused (BackupFailed, nothing touched) if the backup is damaged, if it is not
    authenticated and the repository is writable by anyone but upkeep, or if the source
    refuses it (a files backup holding a path outside the source's configured paths, or
    one that would be written through a link); the safety backup is taken only after those
    checks. Raise BackupFailed if the safety backup or the restore fails (a failed safety
    backup stops the restore before anything is touched).
    """
    backup = _get(env, backup_id)
    if not backup.intact:
        raise BackupFailed(f"backup {backup_id} is damaged ({backup.problem}); not restored")
    if not backup.authenticated:
        exposed = env.repository.exposure(backup)
        if exposed:
            raise BackupFailed(
                f"backup {backup_id} is not authenticated (no backups.key) and "
                f"{'; '.join(exposed)}: anyone who can write there could have forged it; "
                "not restored (make the repository root's own, 0700)"
            )
    name = backup.source
    target = None
    if to is not None and to != name:
        if to in env.config.sources:
            name = to
        else:
            target = to
    source = env.source(name, target=target)
    expected = backup.intact_manifest.source_details.kind
    if source.kind != expected:
        raise BackupFailed(f"backup {backup_id} is a {expected} dump; {to} is {source.kind}")
    # Nothing to keep safe where nothing is overwritten.
    safety = safety and source.loads_in_place
    safety_name = name if target is None else None
    if safety and safety_name is None:
        raise BackupFailed(
            f"a safety backup needs {to!r} to be a configured backup source; "
            "add it to backups.sources, or pass --no-safety-backup"
        )
    started = datetime.now(UTC)
    began = time.monotonic()
    safety_id = None
    failures = (
        SourceError,
        ArchiveError,
        RepositoryError,
        crypto.DecryptionError,
        zstandard.ZstdError,
    )
    with scratch_directory(env.scratch_base(), f"restore-{name}") as work:
        try:
            raw = read_raw(env.repository, backup, env.config.key)
            apply = source.prepare_restore(_progressed(raw, progress), work, backup.intact_manifest)
        except failures as error:
            failure = one_line(error)
            _event(
                env,
                BackupEventKind.RESTORE,
                name,
                backup_id,
                False,
                started,
                failure,
                {"to": to or name},
            )
            raise BackupFailed(f"restore of {backup_id} refused: {failure}") from None
        if safety:
            assert safety_name is not None  # noqa: S101 - checked above
            # After the checks, before the first write: it holds everything the restore
            # can overwrite, since a restore writes only where this source backs up.
            safety_id = create(
                env,
                safety_name,
                progress=None,
                prune_after=False,
                label=f"before restoring {backup_id}",
            ).backup.id
        try:
            restoration = apply()
        except (*failures, OSError) as error:
            failure = one_line(error)
            _event(
                env,
                BackupEventKind.RESTORE,
                name,
                backup_id,
                False,
                started,
                failure,
                {"safety_backup": safety_id, "to": to or name},
            )
            raise BackupFailed(
                f"restore of {backup_id} failed: {failure}"
                + (
                    f"; the safety backup {safety_id} holds what was there before"
                    if safety_id
                    else ""
                )
            ) from None
    duration = round(time.monotonic() - began, 3)
    written_to = str(restoration.written_to) if restoration.written_to is not None else None
    message = restoration.message
    if written_to is not None:
        message = f"written to {written_to}; not loaded: {message}"
    _event(
        env,
        BackupEventKind.RESTORE,
        name,
        backup_id,
        True,
        started,
        message,
        {
            "safety_backup": safety_id,
            "to": to or name,
            "duration_s": duration,
            "loaded": restoration.loaded,
            "written_to": written_to,
        },
        status=None if restoration.loaded else BackupEventStatus.WRITTEN,
    )
    return RestoreReport(
        backup, to or name, safety_id, message, duration, restoration.loaded, written_to
    )


# --- records read by the backup target's probes ------------------------------------------


def _attempt(
    env: BackupEnv,
    name: str,
    *,
    ok: bool,
    at: datetime,
    message: str,
    backup: Backup | None = None,
) -> None:
    env.repository.write_record(
        name,
        LAST_ATTEMPT,
        {
            "ok": ok,
            "at": at.isoformat(),
            "message": message,
            "backup_id": backup.id if backup else None,
        },
    )


# --- helpers ------------------------------------------------------------------------------


def _event(
    env: BackupEnv,
    kind: BackupEventKind,
    source: str,
    backup_id: str | None,
    ok: bool,
    started_at: datetime,
    message: str,
    detail: dict[str, Any],
    *,
    status: BackupEventStatus | None = None,
) -> None:
    """Record a verification, restore, drill or prune in the catalog (if there is one), as
    ok or failed by ``ok`` unless ``status`` says otherwise."""
    finished_at = datetime.now(UTC)
    if status is None:
        status = BackupEventStatus.OK if ok else BackupEventStatus.FAILED
    _catalogue(
        env,
        f"the {kind} of {source}",
        lambda catalog: catalog.add_event(
            kind=kind,
            source=source,
            backup_id=backup_id,
            status=status,
            started_at=started_at,
            finished_at=finished_at,
            message=message,
            detail=detail,
        ),
    )


def _mark(backup_id: str, **changes: Any) -> Callable[[BackupCatalog], object]:
    """Return the catalog write that marks a backup with ``changes``."""
    return lambda catalog: catalog.mark(backup_id, **changes)


def _catalogue(env: BackupEnv, what: str, write: Callable[[BackupCatalog], object]) -> str | None:
    """Given what is recorded and how, write it to the store's catalog (if there is one);
    return why that failed, logged as a warning, else None. Never raises: see the module's
    docstring."""
    if env.catalog is None:
        return None
    from upkeep.store.store import error_reason

    try:
        write(env.catalog)
    except Exception as error:  # noqa: BLE001 - the operation's outcome stands; said instead
        problem = f"the store did not record {what}: {error_reason(error)}"
        logger.warning("%s", problem)
        return problem
    return None


def _get(env: BackupEnv, backup_id: str) -> Backup:
    try:
        return env.repository.get(backup_id)
    except RepositoryError as error:
        raise BackupFailed(str(error)) from None


def _verified_ok(backup: Backup) -> bool:
    verification = backup.verification()
    return bool(verification and verification.get("ok"))


def _met(measured: float | None, objective: float | None) -> bool | None:
    if measured is None or objective is None:
        return None
    return measured <= objective


def _validate(
    run_query: Callable[[str], list[tuple[Any, ...]]] | None, query: str
) -> dict[str, Any]:
    if run_query is None:
        return {"query": query, "ok": False, "problem": "this kind of source takes no queries"}
    try:
        rows = run_query(query)
    except Exception as error:  # noqa: BLE001 - any driver error fails the validation, named
        return {"query": query, "ok": False, "problem": one_line(error)}
    if not rows or not rows[0]:
        return {"query": query, "ok": False, "problem": "returned no rows"}
    value = rows[0][0]
    if not value:
        return {"query": query, "ok": False, "problem": f"returned {value!r}"}
    return {"query": query, "ok": True, "value": str(value)}


def _drained(data: Iterable[bytes]) -> Iterator[bytes]:
    """Yield ``data``, then read whatever the consumer left, so the hash covers it all."""
    iterator = iter(data)
    yield from iterator
    for _ in iterator:
        pass


def _progressed(data: Iterable[bytes], progress: Progress | None) -> Iterator[bytes]:
    for piece in data:
        if progress is not None:
            progress(len(piece))
        yield piece


def _record(backup: Backup) -> Any:
    from upkeep.store.backups import BackupRecord

    manifest = backup.intact_manifest
    return BackupRecord(
        id=backup.id,
        source=backup.source,
        status=BackupStatus.OK,
        started_at=backup.taken_at,
        finished_at=manifest.finished_at,
        raw_bytes=manifest.data.raw_bytes,
        stored_bytes=manifest.data.stored_bytes,
        location=str(backup.path),
        detail=manifest.model_dump(
            mode="json",
            include={"duration_s", "dump_s", "tool_versions", "row_counts", "source_details"},
        ),
    )


def _failed_record(name: str, started_at: datetime, message: str, root: Path) -> Any:
    from upkeep.store.backups import BackupRecord

    return BackupRecord(
        id=f"failed-{new_id(started_at)}",
        source=name,
        status=BackupStatus.FAILED,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        location=str(root),
        message=message,
    )


def backup_row(backup: Backup) -> dict[str, Any]:
    """Given a backup of the repository, return it as ``upkeep backup list --json`` and
    ``GET /api/backups`` show it: what the manifest says only when it is intact (a
    damaged backup's manifest may be forged or another backup's)."""
    verification = backup.verification()
    if verification is None:
        verified = "never"
    else:
        verdict = "ok" if verification.get("ok") else "FAILED"
        how = "restore" if verification.get("restored") else "hash"
        verified = f"{verdict} ({how}) {str(verification.get('at', ''))[:16].replace('T', ' ')}"
    manifest = backup.intact_manifest if backup.intact else None
    return {
        "id": backup.id,
        "source": backup.source,
        "started_at": backup.taken_at.isoformat(),
        "intact": backup.intact,
        "problem": backup.problem,
        "raw_bytes": manifest.data.raw_bytes if manifest else None,
        "stored_bytes": manifest.data.stored_bytes if manifest else None,
        "encrypted": manifest.data.encrypted if manifest else False,
        "verified": verified,
        "label": manifest.label if manifest else None,
        "path": str(backup.path),
    }
