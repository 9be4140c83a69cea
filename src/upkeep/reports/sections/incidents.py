"""Incidents: how many fired, how fast they were acknowledged and repaired, and how many
met their response target, overall and per check.

Per-check figures are ``upkeep stats``' own (``period_stats``). The overall ones are the
same rules summed over checks: MTTR is the mean repair time of the incidents resolved in
the period (a check has one open alert at a time, so each of its incidents is one
outage), MTTA the mean acknowledgement delay of those fired in it (each check's MTTA
weighted by its acknowledged incidents), and response targets met/missed the sums.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upkeep.reports.model import SectionData, SectionKind, Table
from upkeep.reports.sections.common import incidents, percent, reliability, seconds

if TYPE_CHECKING:
    from upkeep.reports.model import ReportContext

MAX_LISTED = 50
"""At most this many incidents are listed one by one (the figures count them all)."""


def collect(context: ReportContext) -> SectionData:
    """Given the report's context, return the period's incidents and their figures."""
    from upkeep.alerting.stats import exact_percent

    start, end = context.period.start, context.period.end
    spans = incidents(context)
    checks = [f for f in reliability(context) if f.scope == "check" and f.incidents]
    # The table lists the checks that were down longest; the figures keep every one.
    worst = sorted(checks, key=lambda figure: (-figure.downtime_s, figure.name))[
        : context.loaded.config.reports.top
    ]
    fired_here = [span for span in spans if start <= span.fired_at < end]
    repairs = [
        (span.resolved_at - span.opened_at).total_seconds()
        for span in spans
        if span.resolved_at is not None and start < span.resolved_at <= end
    ]
    acked = sum(figure.acked for figure in checks)
    mtta = (
        sum((figure.mtta_s or 0.0) * figure.acked for figure in checks) / acked if acked else None
    )
    met = sum(figure.response_met for figure in checks)
    missed = sum(figure.response_missed for figure in checks)
    mttr = sum(repairs) / len(repairs) if repairs else None
    listed = sorted(fired_here, key=lambda span: span.fired_at, reverse=True)[:MAX_LISTED]
    data = SectionData(
        headline=[
            ("incidents fired", str(len(fired_here))),
            ("MTTR", seconds(mttr)),
            ("MTTA", seconds(mtta)),
            ("acknowledged", f"{acked} of {len(fired_here)}"),
            (
                "response targets met",
                f"{percent(exact_percent(met, met + missed))} ({met}/{met + missed})",
            ),
        ],
        tables=[
            Table(
                "Incidents",
                (
                    ("id", "right"),
                    ("check", "left"),
                    ("severity", "left"),
                    ("fired", "left"),
                    ("resolved", "left"),
                    ("lasted", "right"),
                    ("acknowledged after", "right"),
                    ("message", "left"),
                ),
                [
                    (
                        str(span.id),
                        span.check,
                        span.severity,
                        context.local(span.fired_at),
                        context.local(span.resolved_at),
                        seconds(span.duration_s(end) if span.resolved_at else None),
                        seconds(
                            max(0.0, (span.first_acked_at - span.fired_at).total_seconds())
                            if span.first_acked_at
                            else None
                        ),
                        span.message,
                    )
                    for span in listed
                ],
            ),
            Table(
                "Per check, longest down first",
                (
                    ("check", "left"),
                    ("uptime", "right"),
                    ("incidents", "right"),
                    ("MTTR", "right"),
                    ("MTBF", "right"),
                    ("MTTA", "right"),
                    ("response met", "right"),
                ),
                [
                    (
                        figure.name,
                        percent(figure.uptime_percent),
                        str(figure.incidents),
                        seconds(figure.mttr_s),
                        seconds(figure.mtbf_s),
                        seconds(figure.mtta_s),
                        f"{figure.response_met}/{figure.response_met + figure.response_missed}",
                    )
                    for figure in worst
                ],
            ),
        ],
        figures={
            "fired": len(fired_here),
            "mttr_s": mttr,
            "mtta_s": mtta,
            "acked": acked,
            "response_met": met,
            "response_missed": missed,
            "response_target_met_percent": exact_percent(met, met + missed),
            "incidents": [
                {
                    "id": span.id,
                    "check": span.check,
                    "target": span.target,
                    "severity": span.severity,
                    "fired_at": span.fired_at.isoformat(),
                    "resolved_at": span.resolved_at.isoformat() if span.resolved_at else None,
                    "first_acked_at": (
                        span.first_acked_at.isoformat() if span.first_acked_at else None
                    ),
                }
                for span in listed
            ],
        },
    )
    if len(checks) > len(worst):
        data.notes.append(
            f"per check: the {len(worst)} of {len(checks)} checks with incidents that were "
            "down longest (all of them in upkeep stats)"
        )
    if len(fired_here) > MAX_LISTED:
        data.notes.append(f"the {MAX_LISTED} latest of {len(fired_here)} incidents are listed")
    return data


SECTION = SectionKind("incidents", "Incidents", collect)
