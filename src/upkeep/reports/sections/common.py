"""What several sections share: the period's reliability figures (computed once per
report, by ``alerting.stats``, exactly as ``upkeep stats`` computes them) and the forms
numbers take for people."""

from __future__ import annotations

from typing import TYPE_CHECKING

from upkeep.core.text import format_percent, human_duration

if TYPE_CHECKING:
    from upkeep.alerting.stats import IncidentSpan, ReliabilityFigures
    from upkeep.reports.model import Period, ReportContext


def reliability(context: ReportContext, period: Period | None = None) -> list[ReliabilityFigures]:
    """Given the report's context (and a period, default the report's), return
    ``period_stats`` over it with the config's response targets: the figures ``upkeep
    stats --json`` prints for the same period."""
    from upkeep.alerting.stats import period_stats
    from upkeep.reports.model import targets_by_severity

    span = period or context.period
    return list(
        context.remember(
            f"reliability:{span.start.isoformat()}:{span.end.isoformat()}",
            lambda: period_stats(
                context.store.engine,
                span.start,
                span.end,
                None,
                targets_by_severity(context.loaded),
            ),
        )
    )


def incidents(context: ReportContext) -> list[IncidentSpan]:
    """Given the report's context, return the incidents overlapping its period (as
    ``period_stats`` reads them), loaded once per report."""
    from upkeep.alerting.stats import load_incidents

    period = context.period
    return list(
        context.remember(
            "incidents",
            lambda: load_incidents(context.store.engine, period.start, period.end),
        )
    )


def percent(value: float | None) -> str:
    """Return a percentage as ``upkeep stats`` prints it (truncated, 3 decimals) or ``-``."""
    return format_percent(value)


def seconds(value: float | None) -> str:
    """Return a span in seconds for people (``3h 20m``), or ``-``."""
    return "-" if value is None else human_duration(value)


def milliseconds(value: float | None) -> str:
    """Return a time in ms for people (``123 ms``), or ``-``."""
    if value is None:
        return "-"
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def trend(now: float | None, before: float | None) -> str:
    """Given a figure now and in the previous period, return the change in percent
    (``+12%``, ``-3%``), ``new`` without a previous figure, or ``-`` without a figure."""
    if now is None:
        return "-"
    if before is None:
        return "new"
    if before == 0:
        return "±0%" if now == 0 else "new"
    change = 100 * (now - before) / before
    return f"{change:+.0f}%"


def trend_value(now: float | None, before: float | None) -> float | None:
    """Given a figure now and before, return the change in percent, or None when it
    cannot be said (no figure, or nothing before)."""
    if now is None or before is None or before == 0:
        return None
    return round(100 * (now - before) / before, 3)
