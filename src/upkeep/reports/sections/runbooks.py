"""Runbook runs: per runbook, how many ran and how they ended, how long they took, and
their approvals; then the failed runs one by one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from upkeep.reports.model import SectionData, SectionKind, Table
from upkeep.reports.sections.common import seconds

if TYPE_CHECKING:
    from upkeep.reports.model import ReportContext

FAILED_LISTED = 20
"""At most this many failed runs are listed one by one."""


def collect(context: ReportContext) -> SectionData | None:
    """Given the report's context, return the period's runs, or None when there were none
    and the config has no runbooks."""
    from upkeep.store.runs import RunStatus
    from upkeep.store.summaries import runbook_summaries

    period = context.period
    summaries = runbook_summaries(context.store.engine, period.start, period.end)
    if not summaries and not context.loaded.config.runbooks:
        return None
    bad = (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.CANCELLED, RunStatus.MISSED)
    failed = [
        run
        for run in context.store.runs.list_runs(
            since=period.start, until=period.end, statuses=bad, limit=FAILED_LISTED * 2
        )
        if not run.dry_run
    ][:FAILED_LISTED]
    total = sum(summary.runs for summary in summaries)
    failures = sum(summary.by_status.get(status, 0) for summary in summaries for status in bad)
    return SectionData(
        headline=[
            ("runs", str(total)),
            ("failed, interrupted, cancelled or missed", str(failures)),
            ("approvals", str(sum(s.approved + s.rejected + s.expired for s in summaries))),
        ],
        tables=[
            Table(
                "Runs per runbook",
                (
                    ("runbook", "left"),
                    ("runs", "right"),
                    ("succeeded", "right"),
                    ("failed", "right"),
                    ("other", "right"),
                    ("average", "right"),
                    ("longest", "right"),
                    ("approved", "right"),
                    ("rejected", "right"),
                    ("expired", "right"),
                ),
                [
                    (
                        summary.runbook,
                        str(summary.runs),
                        str(summary.by_status.get(RunStatus.SUCCEEDED, 0)),
                        str(summary.by_status.get(RunStatus.FAILED, 0)),
                        str(
                            summary.runs
                            - summary.by_status.get(RunStatus.SUCCEEDED, 0)
                            - summary.by_status.get(RunStatus.FAILED, 0)
                        ),
                        seconds(summary.duration_s_avg),
                        seconds(summary.duration_s_max),
                        str(summary.approved),
                        str(summary.rejected),
                        str(summary.expired),
                    )
                    for summary in summaries
                ],
                empty="no runs in this period",
            ),
            Table(
                "Runs that did not succeed",
                (
                    ("run", "right"),
                    ("runbook", "left"),
                    ("status", "left"),
                    ("started", "left"),
                    ("took", "right"),
                    ("message", "left"),
                ),
                [
                    (
                        str(run.id),
                        run.runbook,
                        str(run.status),
                        context.local(run.started_at),
                        seconds(run.duration_s),
                        run.message,
                    )
                    for run in failed
                ],
                empty="every run succeeded",
            ),
        ],
        figures={
            "runs": total,
            "not_succeeded": failures,
            "runbooks": [summary.to_json() for summary in summaries],
            "failed_runs": [
                {"id": run.id, "runbook": run.runbook, "status": str(run.status)} for run in failed
            ],
        },
    )


SECTION = SectionKind("runbooks", "Runbook runs", collect)
