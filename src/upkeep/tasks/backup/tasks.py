"""The backup tasks: ``backup.create``, ``backup.verify``, ``backup.prune``, ``backup.drill``.

Each names its source with ``with: {source: NAME}`` or by its target (``target: db``
finds the source that backs up ``db``). After a create, a verification or a drill, every
configured check on a ``backup`` target of that source runs at once (``checks.py``), so a
failed backup or a missed objective alerts through the routes now, not at the check's next
interval; what goes wrong there is logged and told in the step's output, and never changes
the task's own outcome.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import Field

from upkeep.core.durations import Duration, format_duration
from upkeep.core.models import Reference, StrictModel
from upkeep.core.text import format_bytes, human_duration
from upkeep.probes.base import TargetBase
from upkeep.tasks.backup import service
from upkeep.tasks.backup.checks import SourceChecks, check_source, drill_result
from upkeep.tasks.backup.registry import BACKUP_TARGET_KINDS
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan


class SourceParams(StrictModel):
    """Which source: by name, or the one backing up the step's target."""

    source: Annotated[str, Reference(("backups", "sources"), "backup source")] | None = Field(
        default=None, description="a source of backups.sources"
    )


class VerifyParams(SourceParams):
    """Params of ``backup.verify``."""

    restore: bool = Field(default=True, description="restore into a scratch copy and compare")
    backup: str | None = Field(default=None, description="a backup id (default: the newest)")


class DrillParams(SourceParams):
    """Params of ``backup.drill``."""

    rto: Duration | None = Field(default=None, description="objective (default: the source's)")
    rpo: Duration | None = Field(default=None, description="objective (default: the source's)")
    take_backup: bool = Field(
        default=False, description="take a new backup first instead of the newest one"
    )


def env_of(context: TaskContext) -> service.BackupEnv:
    """Return the backup environment of a task's context; raise TaskFailed without one."""
    config = context.config
    if config is None:
        raise TaskFailed("backup tasks need the whole config (run them from a runbook)")
    from upkeep.store.store import normalise_url

    catalog = context.store.backups if context.store is not None else None
    base = context.config_path.parent if context.config_path is not None else None
    return service.BackupEnv(
        config.backups,
        config.targets,
        catalog,
        ZoneInfo(config.timezone),
        config_path=context.config_path,
        store_url=normalise_url(config.store.url, base) if base is not None else None,
        store_schema=config.store.schema_name,
    )


def source_name(context: TaskContext, target: TargetBase | None, params: SourceParams) -> str:
    """Return the source a step means; raise TaskFailed if it names none or an unknown one."""
    env = env_of(context)
    if params.source is not None:
        try:
            env.source_config(params.source)
        except service.BackupFailed as error:
            raise TaskFailed(str(error)) from None
        return params.source
    if target is None:
        raise TaskFailed("name a source (with: {source: NAME}) or a target it backs up")
    assert context.config is not None  # noqa: S101 - env_of checked it
    for name, source in env.config.sources.items():
        if source.target is not None and context.config.targets.get(source.target) == target:
            return name
    # No configured source: the target itself, with the defaults (its own name).
    for name, candidate in context.config.targets.items():
        if candidate == target:
            return name
    raise TaskFailed("no backup source backs up this target; add one to backups.sources")


async def _check_source(context: TaskContext, source: str) -> SourceChecks:
    """Run the source's checks through the step's runbook (never raises)."""
    if context.config is None:
        return SourceChecks({}, [])
    return await check_source(context.config, source, context.run_check)


async def _record_drill(context: TaskContext, report: service.DrillReport) -> list[str]:
    """Record the drill's verdict as upkeep's own drill check of the source (it alerts
    through the routes); return why it could not be recorded, if it could not."""
    if context.config is None or context.record_results is None:
        return []
    result = drill_result(context.config, report, context.redactor)
    if result is None:
        return []
    try:
        await context.record_results([result])
    except Exception as error:  # noqa: BLE001 - the drill's own outcome must stand
        from upkeep.store.store import error_reason

        return [f"check {result.check} not recorded: {error_reason(error)}"]
    return []


def _with_checks(text: str, checks: SourceChecks) -> str:
    """Given a step's message, return it with what the source's checks found."""
    summary = checks.summary()
    return f"{text}; {summary}" if summary else text


class _BackupTask(Task[TargetBase | None, Any]):
    target_kinds: ClassVar[tuple[str, ...]] = BACKUP_TARGET_KINDS
    target_required: ClassVar[bool] = False

    def validate(self, target: TargetBase | None, params: Any) -> list[str]:
        """Return problems: neither a source nor a target."""
        if target is None and getattr(params, "source", None) is None:
            return ["name a source (with: {source: NAME}) or a target it backs up"]
        return []


class BackupCreate(_BackupTask):
    """Take a backup of a source, copy it off-site, apply retention."""

    name: ClassVar[str] = "backup.create"
    summary: ClassVar[str] = (
        "Back up a source (PostgreSQL, MySQL/MariaDB, Redis, SQLite, files) into the "
        "repository: streamed, zstd, optionally encrypted, with a manifest; copy it to the "
        "second destination; then apply retention."
    )
    Params: ClassVar[type[StrictModel]] = SourceParams

    async def plan(
        self, target: TargetBase | None, params: SourceParams, context: TaskContext
    ) -> TaskPlan:
        """Say what would be backed up and what retention would remove after it."""
        name = source_name(context, target, params)
        env = env_of(context)
        changes = [Change("backup", name, f"into {env.config.repository}")]
        if env.config.copy_to:
            changes.append(Change("copy", name, "to the second destination"))
        if not env.config.retention.is_empty():
            retention = await asyncio.to_thread(service.prune, env, name, dry_run=True)
            changes += _removals(retention)
        return TaskPlan(changes=changes, note="the new backup itself may change what is kept")

    async def run(
        self, target: TargetBase | None, params: SourceParams, context: TaskContext
    ) -> TaskOutcome:
        """Back up; raise TaskFailed if the backup or its copy failed (recorded either way)."""
        name = source_name(context, target, params)
        env = env_of(context)
        try:
            report = await asyncio.to_thread(service.create, env, name)
        except service.BackupFailed as error:
            checks = await _check_source(context, name)
            raise TaskFailed(_with_checks(str(error), checks)) from None
        checks = await _check_source(context, name)
        manifest = report.backup.intact_manifest
        outcome = TaskOutcome(
            message=(
                f"backup {report.backup.id} of {name}: "
                f"{format_bytes(manifest.data.raw_bytes)} dumped, "
                f"{format_bytes(manifest.data.stored_bytes)} stored"
                + (f"; {report.catalog_error}" if report.catalog_error else "")
            ),
            figures={
                "raw_bytes": manifest.data.raw_bytes,
                "stored_bytes": manifest.data.stored_bytes,
                "duration_s": manifest.duration_s,
                "removed": sum(1 for decision in report.pruned if not decision.keep),
            },
        )
        outcome.changes.append(Change("backup", report.backup.id, str(report.backup.path)))
        outcome.changes += [
            Change("copy", backup_id, "to the second destination") for backup_id in report.copied
        ]
        outcome.changes += _removals(service.RetentionReport(report.pruned, report.copy_retention))
        if report.copy_retention is not None and report.copy_retention.problem:
            outcome.message += f"; {report.copy_retention.problem}"
        outcome.message = _with_checks(outcome.message, checks)
        return outcome


class BackupVerify(_BackupTask):
    """Verify a backup by re-hashing it and, by default, restoring it into a scratch copy."""

    name: ClassVar[str] = "backup.verify"
    summary: ClassVar[str] = (
        "Re-hash a backup against its manifest and restore it into a scratch database or "
        "directory to compare row counts and file hashes; the scratch copy is dropped."
    )
    Params: ClassVar[type[StrictModel]] = VerifyParams

    async def plan(
        self, target: TargetBase | None, params: VerifyParams, context: TaskContext
    ) -> TaskPlan:
        """Say which backup would be verified; a verification changes nothing it keeps."""
        name = source_name(context, target, params)
        return TaskPlan(
            changes=[Change("verify", params.backup or f"the newest backup of {name}")],
            note="restores into a scratch copy that is dropped afterwards"
            if params.restore
            else "",
        )

    async def run(
        self, target: TargetBase | None, params: VerifyParams, context: TaskContext
    ) -> TaskOutcome:
        """Verify; raise TaskFailed listing what does not match."""
        name = source_name(context, target, params)
        env = env_of(context)
        backup_id = params.backup
        if backup_id is None:
            # The newest backup, damaged or not: a damaged newest one fails verification.
            backups = env.repository.inventory(name)
            if not backups:
                raise TaskFailed(f"there is no backup of {name} to verify")
            backup_id = backups[-1].id
        report = await asyncio.to_thread(service.verify, env, backup_id, restore=params.restore)
        checks = await _check_source(context, name)
        if not report.ok:
            problems = "; ".join(report.problems)
            raise TaskFailed(
                _with_checks(f"backup {backup_id} fails verification: {problems}", checks)
            )
        how = "restored and compared" if params.restore else "re-hashed"
        return TaskOutcome(
            message=_with_checks(f"backup {backup_id} verified ({how})", checks),
            figures={"duration_s": report.figures.get("duration_s", 0.0)},
        )


class BackupPrune(_BackupTask):
    """Apply retention to a source's backups."""

    name: ClassVar[str] = "backup.prune"
    summary: ClassVar[str] = (
        "Remove backups no retention rule keeps (keep_last/hourly/daily/weekly/monthly/"
        "yearly/within, as restic forget); never the newest verified one, and only after a "
        "successful backup."
    )
    Params: ClassVar[type[StrictModel]] = SourceParams

    async def plan(
        self, target: TargetBase | None, params: SourceParams, context: TaskContext
    ) -> TaskPlan:
        """List every backup that would go, and why the others stay."""
        name = source_name(context, target, params)
        retention = await asyncio.to_thread(service.prune, env_of(context), name, dry_run=True)
        notes = [
            f"keep {decision.candidate.id} ({', '.join(decision.reasons)})"
            for decision in retention.decisions
            if decision.keep
        ]
        if retention.copy is not None and retention.copy.problem:
            notes.append(retention.copy.problem)
        return TaskPlan(changes=_removals(retention), note="; ".join(notes))

    async def run(
        self, target: TargetBase | None, params: SourceParams, context: TaskContext
    ) -> TaskOutcome:
        """Remove what the rules do not keep; raise TaskFailed after a failed backup."""
        name = source_name(context, target, params)
        try:
            retention = await asyncio.to_thread(service.prune, env_of(context), name, dry_run=False)
        except service.BackupFailed as error:
            raise TaskFailed(str(error)) from None
        decisions = retention.decisions
        removed = retention.removed
        copy = retention.copy
        outcome = TaskOutcome(
            message=f"{len(removed)} of {len(decisions)} backup(s) of {name} removed"
            + (f", {len(copy.removed)} from {copy.destination}" if copy is not None else ""),
            figures={
                "removed": len(removed),
                "kept": len(decisions) - len(removed),
                **({"copy_removed": len(copy.removed)} if copy is not None else {}),
            },
        )
        outcome.changes += _removals(retention)
        if copy is not None and copy.problem:
            raise TaskFailed(f"{outcome.message}; {copy.problem}")
        return outcome


class BackupDrill(_BackupTask):
    """Restore drill: restore the newest backup into a scratch copy, validate, measure."""

    name: ClassVar[str] = "backup.drill"
    summary: ClassVar[str] = (
        "Restore drill: restore the newest (or a new) backup into a scratch copy, compare "
        "it with the manifest, run the source's validation queries, measure RTO and RPO "
        "against the objectives, record the report, clean up."
    )
    Params: ClassVar[type[StrictModel]] = DrillParams

    async def plan(
        self, target: TargetBase | None, params: DrillParams, context: TaskContext
    ) -> TaskPlan:
        """Say what the drill would restore; it changes nothing it keeps."""
        name = source_name(context, target, params)
        which = "a new backup" if params.take_backup else f"the newest backup of {name}"
        return TaskPlan(
            changes=[Change("drill", name, f"restore {which} into a scratch copy")],
            note="the scratch copy is dropped afterwards",
        )

    async def run(
        self, target: TargetBase | None, params: DrillParams, context: TaskContext
    ) -> TaskOutcome:
        """Drill; raise TaskFailed (with the report's figures) if it did not pass."""
        name = source_name(context, target, params)
        report = await asyncio.to_thread(
            service.drill,
            env_of(context),
            name,
            rto=params.rto,
            rpo=params.rpo,
            take_backup=params.take_backup,
        )
        checks = await _check_source(context, name)
        checks.problems.extend(await _record_drill(context, report))
        summary = drill_summary(report)
        if not report.passed:
            problems = "; ".join(report.problems)
            raise TaskFailed(_with_checks(f"drill of {name} failed: {summary}; {problems}", checks))
        return TaskOutcome(
            message=_with_checks(f"drill of {name} passed: {summary}", checks),
            figures={
                key: value for key, value in report.to_json().items() if key in ("rto_s", "rpo_s")
            },
        )


def _removals(retention: service.RetentionReport) -> list[Change]:
    """Return the removals retention made (or would make) in each destination."""
    changes = [
        Change("remove", backup_id, "no retention rule keeps it") for backup_id in retention.removed
    ]
    if retention.copy is not None:
        changes += [
            Change("remove", backup_id, f"from {retention.copy.destination}")
            for backup_id in retention.copy.removed
        ]
    return changes


def drill_summary(report: service.DrillReport) -> str:
    """Return RTO and RPO against their objectives, for people."""

    def part(label: str, measured: float | None, objective: float | None) -> str:
        if measured is None:
            return f"{label} not measured"
        text = f"{label} {human_duration(measured)}"
        if objective is not None:
            verdict = "within" if measured <= objective else "over"
            text += f" ({verdict} {format_duration(timedelta(seconds=objective))})"
        return text

    return ", ".join(
        [
            part("RTO", report.rto_s, report.rto_objective_s),
            part("RPO", report.rpo_s, report.rpo_objective_s),
        ]
    )
