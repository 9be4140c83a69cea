"""Backups, verifications and drills, from the store's backup catalog (what ``upkeep
backup list`` and ``upkeep drill`` record): per source, the backups taken and failed in
the period, their size, verifications, and each drill's RTO and RPO against its
objectives."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from upkeep.core.text import format_bytes
from upkeep.reports.model import SectionData, SectionKind, Table
from upkeep.reports.sections.common import seconds

if TYPE_CHECKING:
    from upkeep.reports.model import ReportContext

MAX_RECORDS = 10_000
"""At most this many backups and events of one period are read (a backup a minute for a
week); the figures say so when a period holds more."""


def _met(value: float | None, objective: float | None) -> bool | None:
    if value is None or objective is None:
        return None
    return value <= objective


def _verdict(met: bool | None) -> str:
    return "-" if met is None else "met" if met else "MISSED"


def collect(context: ReportContext) -> SectionData | None:
    """Given the report's context, return the period's backups and drills, or None when
    the config backs nothing up and the catalog holds nothing of the period."""
    from upkeep.store.backups import BackupEventKind, BackupEventStatus, BackupStatus

    period = context.period
    catalog = context.store.backups
    records = catalog.records(since=period.start, until=period.end, limit=MAX_RECORDS)
    events = catalog.events(since=period.start, until=period.end, limit=MAX_RECORDS)
    sources = sorted(
        set(context.loaded.config.backups.sources)
        | {record.source for record in records}
        | {event.source for event in events}
    )
    if not sources:
        return None
    rows: list[tuple[str, ...]] = []
    per_source: list[dict[str, Any]] = []
    for source in sources:
        mine = [record for record in records if record.source == source]
        taken = [record for record in mine if record.status != BackupStatus.FAILED]
        failed = [record for record in mine if record.status == BackupStatus.FAILED]
        verifies = [e for e in events if e.source == source and e.kind == BackupEventKind.VERIFY]
        drills = [e for e in events if e.source == source and e.kind == BackupEventKind.DRILL]
        stored = sum(record.stored_bytes or 0 for record in taken)
        verified_ok = sum(1 for e in verifies if e.status == BackupEventStatus.OK)
        drills_passed = sum(1 for e in drills if e.status == BackupEventStatus.OK)
        rows.append(
            (
                source,
                str(len(taken)),
                str(len(failed)),
                format_bytes(stored),
                f"{verified_ok}/{len(verifies)}",
                f"{drills_passed}/{len(drills)}",
                context.local(max((r.started_at for r in taken), default=None)),
            )
        )
        per_source.append(
            {
                "source": source,
                "backups": len(taken),
                "failed": len(failed),
                "stored_bytes": stored,
                "verifications": len(verifies),
                "verifications_ok": verified_ok,
                "drills": len(drills),
                "drills_passed": drills_passed,
            }
        )
    drill_events = [e for e in events if e.kind == BackupEventKind.DRILL]
    drill_rows: list[tuple[str, ...]] = []
    drill_json: list[dict[str, Any]] = []
    for event in sorted(drill_events, key=lambda e: e.started_at, reverse=True):
        detail = event.detail
        rto, rpo = detail.get("rto_s"), detail.get("rpo_s")
        rto_objective, rpo_objective = detail.get("rto_objective_s"), detail.get("rpo_objective_s")
        drill_rows.append(
            (
                context.local(event.started_at),
                event.source,
                event.backup_id or "-",
                "passed" if event.status == BackupEventStatus.OK else "FAILED",
                seconds(rto),
                seconds(rto_objective),
                _verdict(_met(rto, rto_objective)),
                seconds(rpo),
                seconds(rpo_objective),
                _verdict(_met(rpo, rpo_objective)),
            )
        )
        drill_json.append(
            {
                "source": event.source,
                "backup_id": event.backup_id,
                "passed": event.status == BackupEventStatus.OK,
                "rto_s": rto,
                "rto_objective_s": rto_objective,
                "rto_met": _met(rto, rto_objective),
                "rpo_s": rpo,
                "rpo_objective_s": rpo_objective,
                "rpo_met": _met(rpo, rpo_objective),
                "started_at": event.started_at.isoformat(),
            }
        )
    failed_attempts = [record for record in records if record.status == BackupStatus.FAILED]
    data = SectionData(
        headline=[
            ("backups", str(sum(item["backups"] for item in per_source))),
            ("failed attempts", str(len(failed_attempts))),
            ("drills passed", f"{sum(1 for d in drill_json if d['passed'])} of {len(drill_json)}"),
        ],
        tables=[
            Table(
                "Per source",
                (
                    ("source", "left"),
                    ("backups", "right"),
                    ("failed", "right"),
                    ("stored", "right"),
                    ("verified ok", "right"),
                    ("drills passed", "right"),
                    ("newest", "left"),
                ),
                rows,
            ),
            Table(
                "Restore drills",
                (
                    ("when", "left"),
                    ("source", "left"),
                    ("backup", "left"),
                    ("verdict", "left"),
                    ("RTO", "right"),
                    ("objective", "right"),
                    ("", "left"),
                    ("RPO", "right"),
                    ("objective", "right"),
                    ("", "left"),
                ),
                drill_rows,
                empty="no drill in this period",
            ),
            Table(
                "Failed backup attempts",
                (("when", "left"), ("source", "left"), ("message", "left")),
                [
                    (context.local(record.started_at), record.source, record.message)
                    for record in failed_attempts[:20]
                ],
                empty="none",
            ),
        ],
        figures={"sources": per_source, "drills": drill_json, "failed": len(failed_attempts)},
    )
    if len(records) >= MAX_RECORDS or len(events) >= MAX_RECORDS:
        data.notes.append(f"only the latest {MAX_RECORDS} backups and events are counted")
    return data


SECTION = SectionKind("backups", "Backups and drills", collect)
