"""Collect a report's sections and render them: HTML (Jinja2, autoescaped, self-contained:
inline CSS and inline SVG, so it works as an e-mail body), Markdown (tables; charts
named, not drawn) and PDF (WeasyPrint, from the same HTML).

Every text a section produced (cells, headline values, notes, chart SVG) and every string
of the figures document passes through the config's redactor before any renderer sees
it, so a secret that reached a run's message or a backup's error is masked everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from upkeep.reports.model import (
    REPORT_KINDS,
    Chart,
    Period,
    RenderedSection,
    Report,
    ReportContext,
    SectionData,
    SectionKind,
    Table,
    calendar_periods,
    span_periods,
)

if TYPE_CHECKING:
    from jinja2 import Environment

    from upkeep.config.loader import LoadedConfig
    from upkeep.core.redaction import Redactor
    from upkeep.store.store import Store

FORMATS = ("html", "md", "pdf")
MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "pdf": "application/pdf",
}


def report_periods(
    kind: str,
    now: datetime,
    zone: tzinfo,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[Period, Period]:
    """Given a report kind, now, the config's zone and an optional explicit span, return
    the period and the previous one (see ``model``). Raise ValueError for an unknown
    kind, naive times or an empty span."""
    if kind not in REPORT_KINDS:
        raise ValueError(f"unknown report kind {kind!r}; expected {', '.join(REPORT_KINDS)}")
    if since is not None:
        return span_periods(since, until or now)
    if until is not None:
        raise ValueError("--until needs --since")
    return calendar_periods(kind, now, zone)


def period_title(kind: str, period: Period, zone: tzinfo) -> str:
    """Return the report's title: its kind and the local dates it covers."""
    first = period.start.astimezone(zone)
    # The last day covered: the end is exclusive, a midnight belongs to the next day.
    last = (period.end - timedelta(microseconds=1)).astimezone(zone)
    same_day = first.date() == last.date()
    span = f"{first:%Y-%m-%d}" if same_day else f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"
    return f"upkeep {kind} report, {span}"


def _redacted(value: Any, redactor: Redactor) -> Any:
    """Return JSON-ready data with every string masked by the redactor."""
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, dict):
        return {redactor.redact(str(k)): _redacted(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item, redactor) for item in value]
    return value


def _mask(data: SectionData, redactor: Redactor) -> SectionData:
    redact = redactor.redact
    return SectionData(
        headline=[(redact(label), redact(value)) for label, value in data.headline],
        tables=[
            Table(
                redact(table.title),
                table.columns,
                [tuple(redact(cell) for cell in row) for row in table.rows],
                table.empty,
            )
            for table in data.tables
        ],
        charts=[Chart(redact(chart.title), redact(chart.svg)) for chart in data.charts],
        notes=[redact(note) for note in data.notes],
        figures=_redacted(data.figures, redactor),
    )


def collect_report(
    store: Store,
    loaded: LoadedConfig,
    kind: str,
    now: datetime,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    sections: Sequence[SectionKind] | None = None,
) -> Report:
    """Given the store, the loaded config, a report kind, now and an optional explicit
    span, collect every section (the registry's unless ``sections`` is given), leaving
    out those with nothing to show, masked by the config's redactor. Raise ValueError for
    an unknown kind or a bad span."""
    from upkeep.reports.sections import SECTIONS

    zone = ZoneInfo(loaded.config.timezone)
    period, previous = report_periods(kind, now, zone, since, until)
    context = ReportContext(
        kind=kind,
        store=store,
        loaded=loaded,
        period=period,
        previous=previous,
        zone=zone,
        redactor=loaded.redactor,
        now=now,
    )
    collected: list[RenderedSection] = []
    for section in SECTIONS if sections is None else sections:
        data = section.collect(context)
        if data is not None:
            collected.append(RenderedSection(section, _mask(data, loaded.redactor)))
    return Report(
        kind=kind,
        title=period_title(kind, period, zone),
        period=period,
        previous=previous,
        zone_name=loaded.config.timezone,
        generated_at=now,
        sections=collected,
    )


# --- HTML ----------------------------------------------------------------------------------


def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("upkeep.reports", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: Report) -> str:
    """Given a collected report, return it as one self-contained HTML document."""
    from markupsafe import Markup

    environment = _environment()
    zone = ZoneInfo(report.zone_name)
    parts = []
    for section in report.sections:
        template = environment.get_template(f"sections/{section.kind.template}")
        charts = [
            # matplotlib writes the SVG and escapes every label in it; it was redacted.
            (chart.title, Markup(chart.svg))  # noqa: S704 - our own chart, not input
            for chart in section.data.charts
        ]
        parts.append(
            Markup(  # noqa: S704 - rendered by an autoescaping template
                template.render(kind=section.kind, data=section.data, charts=charts)
            )
        )
    return environment.get_template("report.html.j2").render(
        report=report,
        sections=parts,
        start=report.period.start.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
        end=report.period.end.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
        generated=report.generated_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
    )


# --- Markdown ------------------------------------------------------------------------------

_MARKDOWN_SPECIAL = str.maketrans(
    {
        "\\": "\\\\",
        "|": "\\|",
        "*": "\\*",
        "_": "\\_",
        "`": "\\`",
        "[": "\\[",
        "]": "\\]",
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
        "#": "\\#",
        "\n": " ",
        "\r": " ",
    }
)


def markdown_text(text: str) -> str:
    """Return text safe inside Markdown (a table cell, a list item): one line, with the
    characters that would format, link, or open HTML escaped."""
    return text.translate(_MARKDOWN_SPECIAL)


def _markdown_table(table: Table) -> list[str]:
    lines = [f"### {markdown_text(table.title)}", ""]
    if not table.rows:
        return [*lines, f"_{markdown_text(table.empty)}_", ""]
    lines.append("| " + " | ".join(markdown_text(name) for name, _ in table.columns) + " |")
    lines.append(
        "|" + "|".join("---:" if align == "right" else "---" for _, align in table.columns) + "|"
    )
    lines.extend(
        "| " + " | ".join(markdown_text(cell) for cell in row) + " |" for row in table.rows
    )
    return [*lines, ""]


def render_markdown(report: Report) -> str:
    """Given a collected report, return it as Markdown: headline figures as lists, tables
    as pipe tables; charts are named (Markdown has no inline SVG that mail and chat
    clients all show)."""
    zone = ZoneInfo(report.zone_name)
    start = report.period.start.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
    end = report.period.end.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
    lines = [f"# {markdown_text(report.title)}", "", f"Period: {start} to {end}", ""]
    for section in report.sections:
        data = section.data
        lines += [f"## {markdown_text(section.kind.title)}", ""]
        lines += [
            f"- **{markdown_text(label)}**: {markdown_text(value)}"
            for label, value in data.headline
        ]
        if data.headline:
            lines.append("")
        for table in data.tables:
            lines += _markdown_table(table)
        for chart in data.charts:
            lines += [f"_Chart: {markdown_text(chart.title)} (in the HTML and PDF reports)_", ""]
        for note in data.notes:
            lines += [f"> {markdown_text(note)}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# --- PDF -----------------------------------------------------------------------------------


def _no_fetching(url: str, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
    """WeasyPrint's URL fetcher: the report is self-contained, so it fetches nothing (a
    URL that reached the HTML somehow must not make the renderer call out)."""
    raise ValueError(f"reports fetch no resources ({url[:40]!r} refused)")


def render_pdf(html: str) -> bytes:
    """Given the report's HTML, return it as a PDF (WeasyPrint, A4, no resource fetched)."""
    import logging

    from weasyprint import HTML

    # WeasyPrint logs each CSS property it ignores at WARNING: ours are for mail clients.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    document = HTML(string=html, url_fetcher=_no_fetching)
    pdf: bytes = document.write_pdf()
    return pdf


def render(report: Report, output_format: str) -> bytes:
    """Given a collected report and a format (html, md, pdf), return its bytes. Raise
    ValueError for another format."""
    if output_format == "html":
        return render_html(report).encode()
    if output_format == "md":
        return render_markdown(report).encode()
    if output_format == "pdf":
        return render_pdf(render_html(report))
    raise ValueError(f"unknown report format {output_format!r}; expected {', '.join(FORMATS)}")


def summary_line(report: Report) -> str:
    """Return one line for people: the title and the overview's headline figures."""
    for section in report.sections:
        if section.kind.name == "overview":
            figures = ", ".join(f"{label} {value}" for label, value in section.data.headline[:3])
            return f"{report.title}: {figures}"
    return report.title
