"""The status page's formats: HTML (Jinja2, autoescaped, no JavaScript), Atom and RSS
feeds (built with ``xml.etree``, so every text is escaped) and SVG badges."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

from upkeep.web.status.page import PAGE_INCIDENTS, POLICY_TEXT, duration_text, percent_text

if TYPE_CHECKING:
    import jinja2

    from upkeep.web.status.page import IncidentView, MaintenanceView, StatusSnapshot

STATE_WORDS = {
    "operational": "Operational",
    "degraded": "Degraded",
    "outage": "Outage",
    "unknown": "Unknown",
    "maintenance": "Maintenance",
}
OVERALL_WORDS = {
    "operational": "All systems operational",
    "degraded": "Some systems are degraded",
    "outage": "Some systems are down",
    "unknown": "Some systems have no data",
    "maintenance": "Maintenance in progress",
}
STATE_COLOURS = {
    "operational": "#17633a",
    "degraded": "#8a5a00",
    "outage": "#a11212",
    "unknown": "#555555",
    "maintenance": "#1d4f91",
}
ATOM = "http://www.w3.org/2005/Atom"
FEED_ENTRIES = 50
"""Entries in each feed at most."""


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def render_html(snapshot: StatusSnapshot, base_url: str) -> str:
    """Given a snapshot and the page's base URL, return the page as HTML."""
    zone = ZoneInfo(snapshot.timezone)

    def local(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    def iso(moment: datetime) -> str:
        return moment.astimezone(UTC).isoformat()

    return (
        _environment()
        .get_template("status.html")
        .render(
            s=snapshot,
            base=base_url,
            overall_text=OVERALL_WORDS[snapshot.state],
            state_words=STATE_WORDS,
            policy_text=POLICY_TEXT[snapshot.unknown_policy],
            local=local,
            iso=iso,
            pct=percent_text,
            page_incidents=PAGE_INCIDENTS,
        )
    )


# --- feeds --------------------------------------------------------------------------------


def _entries(snapshot: StatusSnapshot) -> list[tuple[str, str, datetime, datetime, str, str]]:
    """Return the feeds' entries, newest first: (id fragment, title, published, updated,
    summary, anchor)."""
    entries: list[tuple[str, str, datetime, datetime, str, str]] = []
    for incident in snapshot.incidents:
        entries.append(_incident_entry(incident))
    for item in snapshot.maintenance:
        entries.append(_maintenance_entry(item))
    entries.sort(key=lambda entry: entry[3], reverse=True)
    return entries[:FEED_ENTRIES]


def _incident_entry(incident: IncidentView) -> tuple[str, str, datetime, datetime, str, str]:
    lines = [f"Started {incident.started_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC."]
    if incident.resolved_at is not None:
        lines.append(f"Resolved {incident.resolved_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC.")
    lines += [
        f"{update.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC: {update.text}"
        for update in incident.updates
    ]
    moments = [incident.started_at, *(u.at for u in incident.updates)]
    if incident.resolved_at is not None:
        moments.append(incident.resolved_at)
    return (
        f"incident-{incident.id}",
        incident.title,
        incident.started_at,
        max(moments),
        "\n".join(lines),
        f"incident-{incident.id}",
    )


def _maintenance_entry(item: MaintenanceView) -> tuple[str, str, datetime, datetime, str, str]:
    start = item.start.astimezone(UTC)
    end = item.end.astimezone(UTC)
    summary = (
        f"{item.description + '. ' if item.description else ''}"
        f"From {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC "
        f"({duration_text((end - start).total_seconds())}); affects {', '.join(item.components)}."
    )
    return (
        f"maintenance-{item.window}-{int(start.timestamp())}",
        f"{'Planned maintenance' if item.phase == 'upcoming' else 'Maintenance'}: {item.window}",
        start,
        start,
        summary,
        "",
    )


def atom_feed(snapshot: StatusSnapshot, base_url: str) -> bytes:
    """Given a snapshot and the base URL, return an Atom 1.0 feed of its incidents and
    maintenance."""
    ElementTree.register_namespace("", ATOM)

    def sub(
        parent: ElementTree.Element, tag: str, text: str | None = None, **attributes: str
    ) -> ElementTree.Element:
        element = ElementTree.SubElement(parent, f"{{{ATOM}}}{tag}", attributes)
        if text is not None:
            element.text = text
        return element

    feed = ElementTree.Element(f"{{{ATOM}}}feed")
    page = f"{base_url}/status"
    sub(feed, "title", snapshot.title)
    sub(feed, "id", page)
    sub(feed, "link", href=page, rel="alternate", type="text/html")
    sub(feed, "link", href=f"{base_url}/status/feed.atom", rel="self", type="application/atom+xml")
    entries = _entries(snapshot)
    updated = max((entry[3] for entry in entries), default=snapshot.generated_at)
    sub(feed, "updated", updated.astimezone(UTC).isoformat())
    author = sub(feed, "author")
    sub(author, "name", snapshot.title)
    for key, title, published, changed, summary, anchor in entries:
        entry = sub(feed, "entry")
        sub(entry, "id", f"{page}#{key}")
        sub(entry, "title", title)
        sub(entry, "link", href=f"{page}#{anchor}" if anchor else page, rel="alternate")
        sub(entry, "published", published.astimezone(UTC).isoformat())
        sub(entry, "updated", changed.astimezone(UTC).isoformat())
        sub(entry, "summary", summary, type="text")
    return bytes(ElementTree.tostring(feed, encoding="utf-8", xml_declaration=True))


def rss_feed(snapshot: StatusSnapshot, base_url: str) -> bytes:
    """Given a snapshot and the base URL, return an RSS 2.0 feed of its incidents and
    maintenance."""
    rss = ElementTree.Element("rss", {"version": "2.0"})
    channel = ElementTree.SubElement(rss, "channel")
    page = f"{base_url}/status"

    def sub(parent: ElementTree.Element, tag: str, text: str, **attributes: str) -> None:
        ElementTree.SubElement(parent, tag, attributes).text = text

    sub(channel, "title", snapshot.title)
    sub(channel, "link", page)
    sub(
        channel,
        "description",
        snapshot.description or f"{snapshot.title}: incidents and maintenance",
    )
    sub(channel, "lastBuildDate", format_datetime(snapshot.generated_at.astimezone(UTC)))
    for key, title, published, _changed, summary, anchor in _entries(snapshot):
        item = ElementTree.SubElement(channel, "item")
        sub(item, "title", title)
        sub(item, "link", f"{page}#{anchor}" if anchor else page)
        sub(item, "guid", f"{page}#{key}", isPermaLink="false")
        sub(item, "pubDate", format_datetime(published.astimezone(UTC)))
        sub(item, "description", summary)
    return bytes(ElementTree.tostring(rss, encoding="utf-8", xml_declaration=True))


# --- badges -------------------------------------------------------------------------------


def _text_width(text: str) -> int:
    """Return an estimate of a text's width in pixels at 11px Verdana (what shields-style
    badges use): wide letters count more, so the badge fits without measuring fonts."""
    wide = sum(1 for character in text if character in "mwMW%@")
    narrow = sum(1 for character in text if character in "il.:,;| ")
    return 7 * len(text) + 3 * wide - 3 * narrow


def badge_svg(label: str, message: str, colour: str) -> bytes:
    """Given a label, a message and a colour (``#rrggbb``), return a flat badge as SVG,
    with its text as title for screen readers."""
    left = _text_width(label) + 12
    right = _text_width(message) + 12
    total = left + right
    svg = ElementTree.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "width": str(total),
            "height": "20",
            "role": "img",
            "aria-label": f"{label}: {message}",
        },
    )
    ElementTree.SubElement(svg, "title").text = f"{label}: {message}"
    ElementTree.SubElement(svg, "rect", {"width": str(left), "height": "20", "fill": "#555"})
    ElementTree.SubElement(
        svg, "rect", {"x": str(left), "width": str(right), "height": "20", "fill": colour}
    )
    group = ElementTree.SubElement(
        svg,
        "g",
        {
            "fill": "#fff",
            "text-anchor": "middle",
            "font-family": "Verdana,DejaVu Sans,sans-serif",
            "font-size": "11",
        },
    )
    ElementTree.SubElement(group, "text", {"x": str(left // 2), "y": "14"}).text = label
    ElementTree.SubElement(group, "text", {"x": str(left + right // 2), "y": "14"}).text = message
    return bytes(ElementTree.tostring(svg, encoding="utf-8"))


def uptime_colour(uptime: float | None) -> str:
    """Given an uptime percentage (or None), return its badge colour."""
    if uptime is None:
        return STATE_COLOURS["unknown"]
    if uptime >= 99.9:
        return STATE_COLOURS["operational"]
    if uptime >= 99.0:
        return STATE_COLOURS["degraded"]
    return STATE_COLOURS["outage"]
