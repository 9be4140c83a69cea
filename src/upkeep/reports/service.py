"""``ReportService``: reports for the ``report.send`` task (``tasks.base.ReportMaker``).

The task sits below reports in the layering, so it cannot build a report itself; whoever
builds the runbook executor (the daemon, ``upkeep run``) makes one of these from the
loaded config and the store and hands it down through ``TaskContext.reports``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from upkeep.tasks.base import RenderedReport, ReportFormat

if TYPE_CHECKING:
    from upkeep.config.loader import LoadedConfig
    from upkeep.store.store import Store


class ReportService:
    """Makes reports of one loaded config from one store."""

    def __init__(self, loaded: LoadedConfig, store: Store) -> None:
        self.loaded = loaded
        self.store = store

    def period_text(self, kind: str, now: datetime) -> str:
        """Given a report kind and now, return the period it would cover, for people;
        raise ValueError for an unknown kind."""
        from upkeep.reports.render import period_title, report_periods

        zone = ZoneInfo(self.loaded.config.timezone)
        period, _previous = report_periods(kind, now, zone)
        return period_title(kind, period, zone)

    def render(self, kind: str, output_format: ReportFormat, now: datetime) -> RenderedReport:
        """Given a report kind, a format and now, return the report of the last complete
        period (blocking); raise ValueError for an unknown kind or format."""
        from upkeep.reports.render import (
            MEDIA_TYPES,
            collect_report,
            render_html,
            render_markdown,
            render_pdf,
            summary_line,
        )

        report = collect_report(self.store, self.loaded, kind, now)
        html = render_html(report)
        if output_format == "html":
            content = html.encode()
        elif output_format == "md":
            content = render_markdown(report).encode()
        elif output_format == "pdf":
            content = render_pdf(html)
        else:
            raise ValueError(f"unknown report format {output_format!r}")
        zone = ZoneInfo(self.loaded.config.timezone)
        day = report.period.start.astimezone(zone).strftime("%Y-%m-%d")
        return RenderedReport(
            title=report.title,
            content=content,
            media_type=MEDIA_TYPES[output_format],
            filename=f"upkeep-{kind}-{day}.{output_format}",
            html=html,
            summary=summary_line(report),
        )

    def channel_url(self, name: str) -> str | None:
        """Given a channel's name, return its Apprise URL, or None if there is none."""
        return self.loaded.config.channels.get(name)
