"""What a report is made of: its period, the context every section reads, and the data a
section hands to the renderers.

**Periods.** A report covers the last complete calendar unit before now, in the config's
timezone, because that is what an operator sending "the weekly report on Monday 10:00"
expects to read: ``daily`` is yesterday 00:00 to today 00:00, ``weekly`` the previous
ISO week (Monday 00:00 to Monday 00:00), ``monthly`` the previous calendar month,
``quarterly`` the previous calendar quarter. The previous period (for trends) is the unit
before that. With ``--since`` (and ``--until``, default now) the period is exactly that
span and the previous period the span of the same length just before it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from upkeep.config.loader import LoadedConfig
    from upkeep.core.redaction import Redactor
    from upkeep.store.store import Store

ReportKind = Literal["daily", "weekly", "monthly", "quarterly"]
REPORT_KINDS: tuple[ReportKind, ...] = get_args(ReportKind)


@dataclass(frozen=True)
class Period:
    """A span of time ``[start, end)`` (aware datetimes)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a report period needs aware datetimes")
        if self.end <= self.start:
            raise ValueError("a report period must end after it starts")

    @property
    def length(self) -> timedelta:
        """Return how long the period is (elapsed time: a local day across a daylight-saving
        change is 23 or 25 hours; Python subtracts times of one zone as wall times)."""
        return self.end.astimezone(UTC) - self.start.astimezone(UTC)

    def to_json(self) -> dict[str, str]:
        """Return the period as ISO times."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def _midnight(day: Any, zone: tzinfo) -> datetime:
    """Given a date and a zone, return that day's local midnight (aware)."""
    return datetime.combine(day, time(0), tzinfo=zone)


def _month_start(year: int, month: int) -> tuple[int, int]:
    """Given a year and a month that may be out of 1..12, return them normalised."""
    return year + (month - 1) // 12, (month - 1) % 12 + 1


def calendar_periods(kind: ReportKind, now: datetime, zone: tzinfo) -> tuple[Period, Period]:
    """Given a report kind, now and the config's zone, return the last complete period of
    that kind before now and the one before it (local midnights, so a day across a
    daylight-saving change is 23 or 25 hours long). Raise ValueError on a naive ``now``
    or an unknown kind."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    today = now.astimezone(zone).date()
    if kind == "daily":
        end = today
        starts = [end - timedelta(days=1), end - timedelta(days=2)]
        edges = [_midnight(day, zone) for day in (starts[1], starts[0], end)]
    elif kind == "weekly":
        end = today - timedelta(days=today.weekday())
        edges = [
            _midnight(day, zone) for day in (end - timedelta(days=14), end - timedelta(days=7), end)
        ]
    elif kind in ("monthly", "quarterly"):
        step = 1 if kind == "monthly" else 3
        first = today.month if kind == "monthly" else today.month - (today.month - 1) % 3
        months = [_month_start(today.year, first - step * back) for back in (2, 1, 0)]
        edges = [_midnight(today.replace(year=y, month=m, day=1), zone) for y, m in months]
    else:
        raise ValueError(f"unknown report kind {kind!r}; expected {', '.join(REPORT_KINDS)}")
    # In UTC from here on: arithmetic on times of one zone would be wall-clock arithmetic.
    utc = [edge.astimezone(UTC) for edge in edges]
    return Period(utc[1], utc[2]), Period(utc[0], utc[1])


def span_periods(start: datetime, end: datetime) -> tuple[Period, Period]:
    """Given a span ``[start, end)``, return it and the span of the same length before it.
    Raise ValueError on naive times or an empty span."""
    period = Period(start, end)
    return period, Period(start - period.length, start)


@dataclass(frozen=True)
class ReportContext:
    """What every section reads: the store, the loaded config, the period and the one
    before it, the zone times are shown in, and the redactor that masks secrets."""

    kind: str
    store: Store
    loaded: LoadedConfig
    period: Period
    previous: Period
    zone: tzinfo
    redactor: Redactor
    now: datetime
    shared: dict[str, Any] = field(default_factory=dict)
    """What one section computed and another may reuse (the reliability figures), keyed
    by name, so a figure is computed once per report."""

    def remember(self, key: str, compute: Callable[[], Any]) -> Any:
        """Given a key and how to compute a value, return the value, computing it once."""
        if key not in self.shared:
            self.shared[key] = compute()
        return self.shared[key]

    def local(self, moment: datetime | None, *, seconds: bool = False) -> str:
        """Given a moment (or None), return it in the report's zone for people (``-``)."""
        if moment is None:
            return "-"
        return moment.astimezone(self.zone).strftime(
            "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
        )


Align = Literal["left", "right"]


@dataclass(frozen=True)
class Table:
    """A table a section shows: a title, column headers (with alignment) and rows of
    text. Cells are plain text; the renderers escape them."""

    title: str
    columns: tuple[tuple[str, Align], ...]
    rows: Sequence[tuple[str, ...]]
    empty: str = "nothing in this period"


@dataclass(frozen=True)
class Chart:
    """A chart a section shows: its title and the ``<svg>`` element ``reports.charts``
    drew (HTML and PDF embed it; Markdown names it only)."""

    title: str
    svg: str


@dataclass
class SectionData:
    """What a section found: headline figures (``label: value`` for people), tables,
    charts, notes, and ``figures``: the same numbers as JSON-ready data (``upkeep report
    --json``), unformatted, so tests compare them with the CLI's own JSON."""

    headline: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SectionKind:
    """One kind of section in the registry: its name (a key of the figures document), its
    title, how it collects its data (None: nothing to show, the section is left out) and
    the HTML template that draws it (``templates/sections/<template>``)."""

    name: str
    title: str
    collect: Callable[[ReportContext], SectionData | None]
    template: str = "section.html.j2"


@dataclass(frozen=True)
class RenderedSection:
    """A section with its data, as the renderers get it."""

    kind: SectionKind
    data: SectionData


@dataclass(frozen=True)
class Report:
    """A collected report: what it covers and its sections in order."""

    kind: str
    title: str
    period: Period
    previous: Period
    zone_name: str
    generated_at: datetime
    sections: list[RenderedSection]

    def figures(self) -> dict[str, Any]:
        """Return the figures document: the period and each section's figures by name."""
        return {
            "kind": self.kind,
            "title": self.title,
            "timezone": self.zone_name,
            "period": self.period.to_json(),
            "previous": self.previous.to_json(),
            "generated_at": self.generated_at.isoformat(),
            "sections": {section.kind.name: section.data.figures for section in self.sections},
        }


def targets_by_severity(loaded: LoadedConfig) -> Mapping[str, timedelta]:
    """Given the loaded config, return the response target per severity, as ``upkeep
    stats`` passes them."""
    return {
        str(severity): target
        for severity, target in loaded.config.alerting.response_targets.items()
    }
