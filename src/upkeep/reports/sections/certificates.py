"""Certificates: each ``tls`` check's last result before the period's end, soonest to
expire first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from upkeep.reports.model import SectionData, SectionKind, Table

if TYPE_CHECKING:
    from upkeep.reports.model import ReportContext

TLS_PROBES = ("tls.expiry",)
"""The probes whose results say when a certificate expires (``days_left``)."""
EXPIRING_DAYS = 30
"""A certificate with fewer days left than this counts as expiring."""


def _valid(value: Any) -> str:
    if value is True:
        return "yes"
    return "NO" if value is False else "-"


def collect(context: ReportContext) -> SectionData | None:
    """Given the report's context, return the certificates' days left, or None when no
    tls check has a result before the period's end."""
    from upkeep.store.summaries import latest_metrics

    latest = [
        item
        for item in latest_metrics(context.store.engine, TLS_PROBES, context.period.end)
        if isinstance(item.metrics.get("days_left"), int | float)
    ]
    if not latest:
        return None
    latest.sort(key=lambda item: (float(item.metrics["days_left"]), item.check))
    expiring = [item for item in latest if float(item.metrics["days_left"]) < EXPIRING_DAYS]
    rows = [
        (
            item.check,
            item.target,
            f"{float(item.metrics['days_left']):.1f}",
            _valid(item.metrics.get("valid")),
            context.local(item.at),
        )
        for item in latest
    ]
    certificates: list[dict[str, Any]] = [
        {
            "check": item.check,
            "target": item.target,
            "days_left": item.metrics["days_left"],
            "valid": item.metrics.get("valid"),
            "at": item.at.isoformat(),
        }
        for item in latest
    ]
    return SectionData(
        headline=[
            ("certificates", str(len(latest))),
            (f"expiring within {EXPIRING_DAYS} days", str(len(expiring))),
        ],
        tables=[
            Table(
                "Certificates, soonest to expire first",
                (
                    ("check", "left"),
                    ("target", "left"),
                    ("days left", "right"),
                    ("valid", "left"),
                    ("as of", "left"),
                ),
                rows,
            )
        ],
        figures={"certificates": certificates, "expiring": len(expiring)},
    )


SECTION = SectionKind("certificates", "Certificates", collect)
