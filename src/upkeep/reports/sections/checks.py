"""Checks: the slowest (by p95 run time) and the most failing, each with its trend
against the previous period. Figures come from ``store.summaries.check_summaries``:
computed by the database, so a quarter of results for thousands of checks never becomes
Python objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from upkeep.reports.model import Chart, SectionData, SectionKind, Table
from upkeep.reports.sections.common import milliseconds, trend, trend_value

if TYPE_CHECKING:
    from upkeep.reports.model import ReportContext
    from upkeep.store.summaries import CheckSummary


def _failure_rate(summary: CheckSummary | None) -> float | None:
    if summary is None or not summary.results:
        return None
    return round(100 * summary.failures / summary.results, 3)


def collect(context: ReportContext) -> SectionData | None:
    """Given the report's context, return the slowest and most failing checks, or None
    when no check has results in the period."""
    from upkeep.store.summaries import check_summaries, slowest_checks, with_percentiles

    engine = context.store.engine
    now = check_summaries(engine, context.period.start, context.period.end)
    if not now:
        return None
    top = context.loaded.config.reports.top
    period, previous_period = context.period, context.previous
    slowest = slowest_checks(engine, period.start, period.end, now, top)
    failing = with_percentiles(
        engine,
        period.start,
        period.end,
        sorted(
            (summary for summary in now if summary.failures),
            key=lambda summary: (-summary.failures, summary.check),
        )[:top],
    )
    # The previous period only of the checks shown: half the work on a large store.
    shown = sorted({summary.check for summary in (*slowest, *failing)})
    before = {
        summary.check: summary
        for summary in with_percentiles(
            engine,
            previous_period.start,
            previous_period.end,
            check_summaries(engine, previous_period.start, previous_period.end, only=shown),
        )
    }

    def entry(summary: CheckSummary) -> dict[str, Any]:
        previous = before.get(summary.check)
        return {
            **summary.to_json(),
            "failure_rate_percent": _failure_rate(summary),
            "previous": previous.to_json() if previous else None,
            "p95_trend_percent": trend_value(summary.p95_ms, previous.p95_ms if previous else None),
        }

    data = SectionData(
        headline=[
            ("checks with results", str(len(now))),
            ("results", f"{sum(s.results for s in now):,}"),
            ("not ok", f"{sum(s.failures for s in now):,}"),
        ],
        tables=[
            Table(
                "Slowest checks (run time)",
                (
                    ("check", "left"),
                    ("p50", "right"),
                    ("p95", "right"),
                    ("p99", "right"),
                    ("max", "right"),
                    ("p95 before", "right"),
                    ("trend", "right"),
                ),
                [
                    (
                        summary.check,
                        milliseconds(summary.p50_ms),
                        milliseconds(summary.p95_ms),
                        milliseconds(summary.p99_ms),
                        milliseconds(summary.duration_ms_max),
                        milliseconds(before[summary.check].p95_ms)
                        if summary.check in before
                        else "-",
                        trend(
                            summary.p95_ms,
                            before[summary.check].p95_ms if summary.check in before else None,
                        ),
                    )
                    for summary in slowest
                ],
            ),
            Table(
                "Most failing checks",
                (
                    ("check", "left"),
                    ("not ok", "right"),
                    ("of results", "right"),
                    ("rate", "right"),
                    ("critical", "right"),
                    ("warning", "right"),
                    ("unknown", "right"),
                    ("not ok before", "right"),
                    ("trend", "right"),
                ),
                [
                    (
                        summary.check,
                        str(summary.failures),
                        str(summary.results),
                        f"{_failure_rate(summary) or 0:.2f}%",
                        str(summary.critical),
                        str(summary.warning),
                        str(summary.unknown),
                        str(before[summary.check].failures) if summary.check in before else "-",
                        trend(
                            summary.failures,
                            before[summary.check].failures if summary.check in before else None,
                        ),
                    )
                    for summary in failing
                ],
                empty="every result was ok",
            ),
        ],
        figures={
            "checks": len(now),
            "results": sum(s.results for s in now),
            "failures": sum(s.failures for s in now),
            "slowest": [entry(summary) for summary in slowest],
            "most_failing": [entry(summary) for summary in failing],
        },
    )
    if slowest:
        from upkeep.reports.charts import bar_chart

        data.charts.append(
            Chart(
                "p95 run time of the slowest checks",
                bar_chart(
                    [summary.check for summary in slowest],
                    [summary.p95_ms or 0.0 for summary in slowest],
                    title="p95 run time of the slowest checks (ms)",
                    unit="ms",
                ),
            )
        )
    if any(summary.raw_results < summary.results for summary in now):
        data.notes.append(
            "percentiles come from raw results; checks whose period is covered only by "
            "hourly rollups (older than retention.results) show none"
        )
    return data


SECTION = SectionKind("checks", "Checks", collect)
