"""Backups as ordinary checks: is the newest one fresh, proven, of a plausible size, and
did the last restore drill meet its objectives?

A ``backup`` target names a source of the ``backups:`` section; the probes read its
repository directory (the manifests, ``verified.json``, ``last-attempt.json`` and
``last-drill.json`` the backup operations write), so they work from any process that
sees the repository, and a failed or missing backup is a failing check that alerts
through the routes like any other.

They believe only what the files prove (``Repository.inventory``): a backup whose data
file is missing, a link, or not the manifest's size, or whose manifest fails
authentication with the key, is damaged, never the newest good one; the freshness check
goes by the newest intact backup and turns critical on its own when the newest backup is
damaged (warning when an older one is).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from upkeep.core.models import Reference, StrictModel
from upkeep.core.redaction import SecretMarker
from upkeep.core.results import MetricValue
from upkeep.core.status import Status
from upkeep.core.text import format_bytes, human_duration
from upkeep.io.threads import run_blocking
from upkeep.probes.base import (
    MetricSpec,
    Probe,
    ProbeContext,
    ProbeOutcome,
    TargetBase,
    TargetUnreachable,
    metrics_from,
)


class BackupTarget(TargetBase):
    """The backups of one source in the ``backups:`` section."""

    path_fields: ClassVar[tuple[str, ...]] = ("repository",)

    kind: Literal["backup"] = "backup"
    source: Annotated[
        str,
        Field(min_length=1, description="a source of backups.sources"),
        Reference(("backups", "sources"), "backup source"),
    ]
    repository: str | None = Field(
        default=None, description="the repository directory (default: backups.repository)"
    )
    key: Annotated[str | None, SecretMarker()] = Field(
        default=None,
        description="the key that authenticates the repository's manifests and records "
        "(default: backups.key)",
    )


def _repository(target: BackupTarget) -> Path:
    if target.repository is None:
        raise TargetUnreachable("no repository: set backups.repository or the target's own")
    return Path(target.repository)


def _age(moment: str | None, now: datetime) -> float | None:
    if not moment:
        return None
    return round((now - datetime.fromisoformat(moment)).total_seconds(), 3)


class FreshnessProbe(Probe[BackupTarget, StrictModel]):
    """Age, verification and size of a source's newest backup."""

    target_kind: ClassVar[str] = "backup"
    name: ClassVar[str] = "freshness"
    summary: ClassVar[str] = (
        "The newest intact backup's age and size, its change against the one before, how "
        "long since a backup was last verified, whether the last attempt succeeded, and "
        "damaged backups (data file missing, a link or of the wrong size; manifest not "
        "authentic): critical by itself when the newest backup is damaged, warning when "
        "an older one is."
    )
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("age_s", "number", "seconds since the newest intact backup started"),
        MetricSpec(
            "last_verified_age_s",
            "number",
            "seconds since an intact backup last verified ok, its data unchanged since "
            "(absent: never)",
        ),
        MetricSpec("size_bytes", "number", "stored size of the newest intact backup"),
        MetricSpec(
            "size_change_percent", "number", "dump size against the previous backup's (0 if none)"
        ),
        MetricSpec("backups", "number", "intact backups in the repository"),
        MetricSpec("damaged", "number", "damaged backups in the repository"),
        MetricSpec("newest_intact", "bool", "whether the newest backup is intact"),
        MetricSpec("last_attempt_ok", "bool", "whether the last backup attempt succeeded"),
    )

    async def run(
        self, target: BackupTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a backup target, return the newest backup's figures; raise
        TargetUnreachable if there is no complete backup at all."""
        root = _repository(target)
        try:
            return await run_blocking(
                _freshness, root, target.source, target.key, timeout_s=context.timeout_s
            )
        except TimeoutError as error:
            raise TargetUnreachable(
                f"reading {root} took longer than {context.timeout_s:g}s"
            ) from error


def _freshness(root: Path, source: str, key: str | None) -> ProbeOutcome:
    from upkeep.store.repository import Repository, read_attempt

    now = datetime.now(UTC)
    inventory = Repository(root, key).inventory(source)
    backups = [backup for backup in inventory if backup.intact]
    damaged = [backup for backup in inventory if not backup.intact]
    attempt = read_attempt(root, source, key)
    newest_damaged = bool(inventory) and not inventory[-1].intact
    damage = (
        f"newest backup {inventory[-1].id} is damaged: {inventory[-1].problem}"
        if newest_damaged
        else f"{len(damaged)} damaged backup(s), {damaged[-1].id}: {damaged[-1].problem}"
        if damaged
        else ""
    )
    if not backups:
        reason = f"; last attempt: {attempt['message']}" if attempt else ""
        reason += f"; {damage}" if damage else ""
        raise TargetUnreachable(f"no complete backup of {source} in {root}{reason}")
    newest = backups[-1]
    values: dict[str, MetricValue] = {
        "age_s": round((now - newest.taken_at).total_seconds(), 3),
        "size_bytes": newest.intact_manifest.data.stored_bytes,
        "backups": len(backups),
        "damaged": len(damaged),
        "newest_intact": not newest_damaged,
        "last_attempt_ok": bool(attempt.get("ok")) if attempt else True,
    }
    if len(backups) > 1:
        before = backups[-2].intact_manifest.data.raw_bytes
        now_bytes = newest.intact_manifest.data.raw_bytes
        values["size_change_percent"] = (
            (now_bytes - before) * 100.0 / before if before else (100.0 if now_bytes else 0.0)
        )
    else:
        values["size_change_percent"] = 0.0
    verified = [
        record["at"]
        for backup in backups
        if (record := backup.verification()) is not None and record.get("ok")
    ]
    if verified:
        values["last_verified_age_s"] = _age(max(verified), now) or 0.0
    message = (
        f"newest {'intact ' if damaged else ''}backup {newest.id}, "
        f"{human_duration(now - newest.taken_at)} old, "
        f"{format_bytes(newest.intact_manifest.data.stored_bytes)} "
        f"({values['size_change_percent']:+.1f} %)"
    )
    if not verified:
        message += "; never verified"
    if attempt and not attempt.get("ok"):
        message += f"; last attempt failed: {attempt.get('message')}"
    status = None
    if damage:
        message = f"{damage}; {message}"
        # No condition needs writing for this: a damaged newest backup is a lost restore
        # point now, an older one a warning until retention or an operator removes it.
        status = Status.CRITICAL if newest_damaged else Status.WARNING
    return ProbeOutcome(metrics_from(values), message=message, status=status)


class DrillProbe(Probe[BackupTarget, StrictModel]):
    """The last restore drill of a source: when, whether it passed, its RTO and RPO."""

    target_kind: ClassVar[str] = "backup"
    name: ClassVar[str] = "drill"
    summary: ClassVar[str] = (
        "The last restore drill: its age, whether it passed, measured RTO and RPO, and "
        "whether each met its objective."
    )
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("age_s", "number", "seconds since the last drill finished"),
        MetricSpec("passed", "bool", "restored, matched the manifest, validated, objectives met"),
        MetricSpec("rto_s", "number", "seconds from the start of the restore to a validated copy"),
        MetricSpec("rpo_s", "number", "age of the restored data at drill time"),
        MetricSpec("rto_met", "bool", "RTO within its objective (absent without one)"),
        MetricSpec("rpo_met", "bool", "RPO within its objective (absent without one)"),
    )

    async def run(
        self, target: BackupTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a backup target, return the last drill's figures; raise TargetUnreachable
        if no drill has run."""
        from upkeep.store.repository import read_drill

        root = _repository(target)
        report = await run_blocking(
            read_drill, root, target.source, target.key, timeout_s=context.timeout_s
        )
        if report is None:
            raise TargetUnreachable(
                f"no restore drill of {target.source} has run (or its record fails authentication)"
            )
        return ProbeOutcome(metrics_from(_drill_values(report)), message=_drill_message(report))


def _drill_values(report: dict[str, Any]) -> dict[str, MetricValue]:
    values: dict[str, MetricValue] = {
        "age_s": _age(report.get("finished_at"), datetime.now(UTC)) or 0.0,
        "passed": bool(report.get("passed")),
    }
    for name in ("rto_s", "rpo_s"):
        if report.get(name) is not None:
            values[name] = float(report[name])
    for name in ("rto_met", "rpo_met"):
        if report.get(name) is not None:
            values[name] = bool(report[name])
    return values


def _drill_message(report: dict[str, Any]) -> str:
    verdict = "passed" if report.get("passed") else "failed"
    parts = [f"last drill {verdict}"]
    if report.get("rto_s") is not None:
        parts.append(f"RTO {human_duration(float(report['rto_s']))}")
    if report.get("rpo_s") is not None:
        parts.append(f"RPO {human_duration(float(report['rpo_s']))}")
    problems = report.get("problems") or []
    if problems:
        parts.append("; ".join(str(problem) for problem in problems[:3]))
    return ", ".join(parts)
