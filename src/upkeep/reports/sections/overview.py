"""Overview: overall health, and uptime per group against its target.

Groups are the targets (a target's downtime is the union of its checks' incidents, as
``upkeep stats`` computes it), or with ``reports.group_by`` the values of those check
labels; a label group's figures are ``alerting.stats.compute_stats`` over the same
incidents with the group as their target, so they follow the same rules (overlapping
incidents count once, the observed time starts at the group's first result).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from upkeep.reports.model import Chart, SectionData, SectionKind, Table
from upkeep.reports.sections.common import incidents, percent, reliability, seconds

if TYPE_CHECKING:
    from datetime import datetime

    from upkeep.alerting.stats import ReliabilityFigures, Subject
    from upkeep.reports.model import ReportContext


def _check_labels(context: ReportContext) -> dict[str, dict[str, str]]:
    """Return every stored check's labels, by check name (one row per check)."""
    from sqlalchemy import select

    from upkeep.store.schema import checks

    with context.store.engine.connect() as connection:
        rows = connection.execute(select(checks.c.name, checks.c.labels)).all()
    return {row.name: {str(k): str(v) for k, v in (row.labels or {}).items()} for row in rows}


def _label_groups(context: ReportContext, key: str) -> list[ReliabilityFigures]:
    """Given a label key, return the figures of each of its values as a group."""
    from upkeep.alerting.stats import compute_stats, first_seen
    from upkeep.reports.model import targets_by_severity

    labels = _check_labels(context)
    seen = context.remember("first_seen", lambda: first_seen(context.store.engine))
    monitored: dict[Subject, datetime] = {}
    for (scope, name), when in seen.items():
        value = labels.get(name, {}).get(key) if scope == "check" else None
        if value is None:
            continue
        group: Subject = ("target", f"{key}={value}")
        monitored[group] = min(when, monitored.get(group, when))
    relabelled = [
        replace(incident, target=f"{key}={labels[incident.check][key]}")
        for incident in incidents(context)
        if key in labels.get(incident.check, {})
    ]
    figures = compute_stats(
        relabelled,
        context.period.start,
        context.period.end,
        monitored,
        targets_by_severity(context.loaded),
    )
    return [figure for figure in figures if figure.scope == "target"]


def collect(context: ReportContext) -> SectionData:
    """Given the report's context, return overall health and uptime per group."""
    from upkeep.alerting.stats import exact_percent

    settings = context.loaded.config.reports
    figures = reliability(context)
    check_figures = [figure for figure in figures if figure.scope == "check"]
    target_figures = [figure for figure in figures if figure.scope == "target"]
    # Overall uptime weighs each check by the time it was observed: the share of
    # check-time that was up. Microseconds as integers, as the figures themselves.
    observed_us = sum(round(figure.observed_s * 1_000_000) for figure in check_figures)
    down_us = sum(round(figure.downtime_s * 1_000_000) for figure in check_figures)
    overall = exact_percent(max(0, observed_us - down_us), observed_us)
    if settings.group_by:
        groups = [group for key in settings.group_by for group in _label_groups(context, key)]
    else:
        groups = target_figures
    rows: list[tuple[str, ...]] = []
    group_json: list[dict[str, Any]] = []
    met = 0
    for group in groups:
        target = settings.targets.get(group.name, settings.uptime_target)
        reached = group.uptime_percent is not None and group.uptime_percent >= target
        met += reached
        rows.append(
            (
                group.name,
                percent(group.uptime_percent),
                f"{target:g}%",
                "met" if reached else "MISSED",
                seconds(group.downtime_s),
                str(group.incidents),
            )
        )
        group_json.append(
            {
                "name": group.name,
                "uptime_percent": group.uptime_percent,
                "target_percent": target,
                "met": reached,
                "downtime_s": group.downtime_s,
                "incidents": group.incidents,
            }
        )
    open_now = sum(figure.open_incidents for figure in check_figures)
    data = SectionData(
        headline=[
            ("overall uptime", percent(overall)),
            ("checks", str(len(check_figures))),
            ("checks with downtime", str(sum(1 for f in check_figures if f.downtime_s > 0))),
            ("groups meeting their target", f"{met} of {len(groups)}"),
            ("incidents open at the end", str(open_now)),
        ],
        tables=[
            Table(
                "Uptime per group",
                (
                    ("group", "left"),
                    ("uptime", "right"),
                    ("target", "right"),
                    ("", "left"),
                    ("downtime", "right"),
                    ("incidents", "right"),
                ),
                rows,
                empty="no checks with results in this period",
            )
        ],
        figures={
            "overall_uptime_percent": overall,
            "checks": len(check_figures),
            "groups": group_json,
            "groups_met": met,
            "stats": {
                "checks": [figure.to_json() for figure in check_figures],
                "targets": [figure.to_json() for figure in target_figures],
            },
        },
    )
    if groups:
        from upkeep.reports.charts import bar_chart

        shown = groups[:40]
        data.charts.append(
            Chart(
                "Uptime per group",
                bar_chart(
                    [group.name for group in shown],
                    [group.uptime_percent or 0.0 for group in shown],
                    title="Uptime per group (%)",
                    unit="%",
                    target=settings.uptime_target,
                    floor=min(
                        [settings.uptime_target - 1, *(g.uptime_percent or 0.0 for g in shown)]
                    ),
                ),
            )
        )
    return data


SECTION = SectionKind("overview", "Overview", collect)
