"""What the public status page shows, built once per snapshot and shared by its HTML,
JSON, feeds and badges.

Only what is safe for anyone is put here: component names and descriptions from the
``status_page`` section, states, figures, incident times and the components they hit,
the updates an operator published (redacted again on the way out), window names and
descriptions. An incident's message, notes, check names and outputs never are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from upkeep.web.status.figures import (
    STATE_ORDER,
    ComponentState,
    ReportedHours,
    SpanFigures,
    StatusInputs,
    current_states,
    day_starts,
    load_inputs,
    span_figures,
)

if TYPE_CHECKING:
    from upkeep.config.loader import LoadedConfig
    from upkeep.store.store import Store

MAX_INCIDENTS = 100
"""Incidents in ``/status.json`` at most (newest first); the feeds take the first
``render.FEED_ENTRIES`` and the page ``PAGE_INCIDENTS``."""
PAGE_INCIDENTS = 50
"""Incidents on the HTML page at most (the rest are in the JSON form)."""
SCHEMA_VERSION = 1
"""The version of ``/status.json``'s shape; raised when a key changes meaning or goes."""

POLICY_TEXT = {
    "up": "hours in which no check reported count as up",
    "down": "hours in which no check reported count as down",
    "excluded": "hours in which no check reported are left out of the uptime",
}


@dataclass(frozen=True)
class DayView:
    """One day's bar of one component."""

    day: date
    figures: SpanFigures

    @property
    def level(self) -> str:
        """Return the bar's class: ``none`` (nothing counted), ``up`` (100%), ``minor``
        (at least 99%), ``major`` (below), with ``m`` added when it had maintenance."""
        uptime = self.figures.uptime_percent
        if uptime is None:
            base = "none"
        elif uptime >= 100.0:
            base = "up"
        elif uptime >= 99.0:
            base = "minor"
        else:
            base = "major"
        return f"{base} m" if self.figures.maintenance_s > 0 else base

    @property
    def plain(self) -> bool:
        """Return whether nothing happened that day worth a bar of its own: no data at
        all, or 100% up without incident, maintenance or hour without data."""
        figures = self.figures
        return (
            figures.uptime_percent in (None, 100.0)
            and not figures.incidents
            and not figures.maintenance_s
            and not figures.unknown_s
        )

    def text(self) -> str:
        """Return the day's text alternative (its date and what it counted)."""
        parts: list[str] = []
        uptime = self.figures.uptime_percent
        parts.append("no data" if uptime is None else f"{percent_text(uptime)} up")
        if self.figures.incidents:
            parts.append(f"{self.figures.incidents} incident(s)")
        if self.figures.maintenance_s:
            parts.append(f"{duration_text(self.figures.maintenance_s)} maintenance")
        if self.figures.unknown_s:
            parts.append(f"{duration_text(self.figures.unknown_s)} without data")
        return f"{self.day.isoformat()}: {', '.join(parts)}"


@dataclass(frozen=True)
class BarView:
    """One bar of a component: a day, or a run of plain days alike."""

    level: str
    days: int
    first: date
    last: date
    plain: bool
    what: str

    def text(self) -> str:
        """Return the bar's text alternative: its date or dates and what they counted."""
        when = self.first.isoformat()
        if self.days > 1:
            when += f" to {self.last.isoformat()}"
        return f"{when}: {self.what}"


@dataclass(frozen=True)
class ComponentView:
    """One component as the page shows it."""

    name: str
    description: str
    state: ComponentState
    overall: SpanFigures
    days: list[DayView]

    def bars(self) -> list[BarView]:
        """Return its bars: one per day, but consecutive plain days (no data, or 100% up
        with no incident, maintenance or unknown hour) drawn as one bar as wide as they
        are many, with the dates they cover in its text (keeps the page small: 100
        components by 90 days would be 9,000 elements)."""
        bars: list[BarView] = []
        for day in self.days:
            plain = day.plain
            if plain and bars and bars[-1].plain and bars[-1].level == day.level:
                last = bars[-1]
                bars[-1] = BarView(last.level, last.days + 1, last.first, day.day, True, last.what)
            else:
                what = day.text().partition(": ")[2]
                bars.append(BarView(day.level, 1, day.day, day.day, plain, what))
        return bars

    def summary(self) -> str:
        """Return a sentence summing up its bars (the bars' text alternative)."""
        uptime = self.overall.uptime_percent
        head = (
            f"{percent_text(uptime)} uptime over {len(self.days)} days"
            if uptime is not None
            else f"no data over {len(self.days)} days"
        )
        bad = [day for day in self.days if day.figures.uptime_percent not in (None, 100.0)]
        if not bad:
            return head + "; no day with downtime"
        return f"{head}; {len(bad)} day(s) with downtime, the latest {bad[-1].text()}"


@dataclass(frozen=True)
class UpdateView:
    """One published update."""

    at: datetime
    text: str


@dataclass(frozen=True)
class IncidentView:
    """One incident as the public sees it: when, which components, what was published."""

    id: int
    components: tuple[str, ...]
    started_at: datetime
    resolved_at: datetime | None
    updates: tuple[UpdateView, ...]

    @property
    def title(self) -> str:
        """Return its heading (components and whether it goes on)."""
        what = ", ".join(self.components)
        return f"{'Ongoing incident' if self.resolved_at is None else 'Incident'}: {what}"


@dataclass(frozen=True)
class MaintenanceView:
    """One announced window opening."""

    window: str
    description: str
    start: datetime
    end: datetime
    components: tuple[str, ...]
    phase: str
    """``ongoing``, ``upcoming`` or ``past``."""


@dataclass(frozen=True)
class StatusSnapshot:
    """The whole page at one moment."""

    title: str
    description: str
    generated_at: datetime
    timezone: str
    history_days: int
    unknown_policy: str
    state: ComponentState
    components: list[ComponentView]
    incidents: list[IncidentView]
    maintenance: list[MaintenanceView]
    inputs: StatusInputs
    openings_capped: bool
    publish_incidents: bool


def percent_text(value: float) -> str:
    """Given a percentage in [0, 100], return it as ``upkeep stats`` prints it
    (``core.text.format_percent``: three decimals, truncated, so a figure below 100
    never reads 100.000%)."""
    from upkeep.core.text import format_percent

    return format_percent(value)


def duration_text(seconds: float) -> str:
    """Given seconds, return a short human duration."""
    from upkeep.core.text import human_duration

    return human_duration(seconds)


def build_snapshot(
    loaded: LoadedConfig, store: Store, now: datetime, hours: ReportedHours | None = None
) -> StatusSnapshot:
    """Given the config, its store, the current (aware) time and what is remembered of
    reported hours (``figures.ReportedHours``, optional), return the page's snapshot:
    every component's state, bars and overall figures, incidents with their published
    updates, and the maintenance to announce."""
    from upkeep.store.updates import published_updates

    page = loaded.config.status_page
    zone = ZoneInfo(page.timezone or loaded.config.timezone)
    today = now.astimezone(zone).date()
    first_day = today - timedelta(days=page.history_days - 1)
    bounds = day_starts(first_day, page.history_days, zone)
    inputs = load_inputs(loaded, store, bounds[0], now, hours=hours)
    states = current_states(store, inputs.members, inputs, now)
    components: list[ComponentView] = []
    for component in page.components:
        days = [
            DayView(
                first_day + timedelta(days=index),
                span_figures(
                    inputs,
                    component.name,
                    bounds[index],
                    bounds[index + 1],
                    page.unknown_policy,
                    now,
                ),
            )
            for index in range(page.history_days)
        ]
        overall = span_figures(inputs, component.name, bounds[0], now, page.unknown_policy, now)
        components.append(
            ComponentView(
                component.name, component.description or "", states[component.name], overall, days
            )
        )
    incidents: list[IncidentView] = []
    if page.publish_incidents:
        component_of: dict[str, list[str]] = {}
        for name, members in inputs.members.items():
            for check in members:
                component_of.setdefault(check, []).append(name)
        shown = sorted(inputs.originals, key=lambda item: (item.fired_at, item.id), reverse=True)
        shown = shown[:MAX_INCIDENTS]
        updates = published_updates(store.engine, [incident.id for incident in shown])
        redact = loaded.redactor.redact
        incidents = [
            IncidentView(
                incident.id,
                tuple(component_of.get(incident.check, [])),
                incident.opened_at,
                incident.resolved_at,
                tuple(
                    UpdateView(update.at, redact(update.text))
                    for update in updates.get(incident.id, [])
                ),
            )
            for incident in shown
        ]
    maintenance = [
        MaintenanceView(
            opening.window,
            loaded.redactor.redact(opening.description),
            opening.start,
            opening.end,
            opening.components,
            "ongoing"
            if opening.start <= now < opening.end
            else "upcoming"
            if opening.start > now
            else "past",
        )
        for opening in inputs.openings
    ]
    # Past openings are on the bars already; the list keeps the last few.
    past = [item for item in maintenance if item.phase == "past"][-10:]
    maintenance = [*past, *(item for item in maintenance if item.phase != "past")]
    overall_state: ComponentState = max(
        (view.state for view in components),
        key=lambda state: STATE_ORDER[state],
        default="operational",
    )
    return StatusSnapshot(
        title=page.title,
        description=page.description or "",
        generated_at=now,
        timezone=str(zone),
        history_days=page.history_days,
        unknown_policy=page.unknown_policy,
        state=overall_state,
        components=components,
        incidents=incidents,
        maintenance=maintenance,
        inputs=inputs,
        openings_capped=inputs.openings_capped,
        publish_incidents=page.publish_incidents,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _figures_json(figures: SpanFigures) -> dict[str, Any]:
    return {
        "uptime_percent": figures.uptime_percent,
        "observed_s": figures.observed_s,
        "downtime_s": figures.downtime_s,
        "maintenance_s": figures.maintenance_s,
        "unknown_s": figures.unknown_s,
        "incidents": figures.incidents,
    }


def snapshot_json(snapshot: StatusSnapshot, base_url: str) -> dict[str, Any]:
    """Given a snapshot and the page's base URL, return ``/status.json`` (shape
    ``SCHEMA_VERSION``; times ISO 8601 UTC, durations in seconds)."""
    return {
        "schema": SCHEMA_VERSION,
        "title": snapshot.title,
        "description": snapshot.description,
        "url": f"{base_url}/status",
        "generated_at": _iso(snapshot.generated_at),
        "timezone": snapshot.timezone,
        "state": snapshot.state,
        "policy": {
            "unknown": snapshot.unknown_policy,
            "maintenance": "excluded",
            "response_time": "mean",
        },
        "components": [
            {
                "name": view.name,
                "description": view.description,
                "state": view.state,
                "history_days": snapshot.history_days,
                "overall": _figures_json(view.overall),
                "days": [
                    {"date": day.day.isoformat(), **_figures_json(day.figures)} for day in view.days
                ],
            }
            for view in snapshot.components
        ],
        "incidents": [
            {
                "id": incident.id,
                "components": list(incident.components),
                "started_at": _iso(incident.started_at),
                "resolved_at": _iso(incident.resolved_at),
                "ongoing": incident.resolved_at is None,
                "updates": [
                    {"at": _iso(update.at), "text": update.text} for update in incident.updates
                ],
            }
            for incident in snapshot.incidents
        ],
        "maintenance": [
            {
                "window": item.window,
                "description": item.description,
                "start": _iso(item.start),
                "end": _iso(item.end),
                "components": list(item.components),
                "phase": item.phase,
            }
            for item in snapshot.maintenance
        ],
    }
