"""The status page's figures: each component's state now, its daily uptime, its incidents
and the maintenance that concerns it.

A component groups checks (``status_page.components``). Its figures come from the same
records and the same composition ``upkeep stats`` uses:

* **state now** — the worst hard state of its checks: a *firing* alert (a pending one is
  a soft state, not yet an outage) of status critical is ``outage``, unknown is
  ``unknown``, warning is ``degraded``; none is ``operational``; ``unknown`` too when none
  of its checks has reported yet; ``maintenance`` while a window that concerns it is open;
* **downtime** — the union of its checks' incident intervals, computed by
  ``alerting.stats.compute_stats`` with the incidents relabelled to the component as
  their target: two checks failing together count once, exactly as a target's downtime;
* **maintenance** — a window concerns a component when its ``mute:`` (a config window's,
  or a one-off window's) matches at least one of its checks by check name and labels
  (severity aside); a window without ``mute:`` only gates runbooks and is not shown.
  Time inside such a window is counted apart: neither uptime nor downtime;
* **unknown time** — a whole hour (UTC) in which none of its checks reported (raw results
  or hourly rollups; the hour under way is not judged yet) and no incident was open
  counts by ``unknown_policy``: ``up``, ``down``, or ``excluded`` from the uptime. An
  incident is downtime whatever the policy (the alert record proves it), and time
  before the component's first result is never counted (``compute_stats``' observed
  period).

Uptime = (observed - maintenance [- unknown if excluded] - downtime [+ unknown if down])
/ (observed - maintenance [- unknown if excluded]), from whole microseconds. On a day
with no maintenance and no unknown hour it equals ``period_stats`` for that day (for a
component of one check: the check's figure).

Everything the page needs is loaded once per snapshot (incidents of the whole history,
results per hour, window openings) and split per day in memory.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic as time_now
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Integer, cast, func, select, union

from upkeep.alerting.stats import (
    IncidentSpan,
    Subject,
    compute_stats,
    exact_percent,
    first_seen,
    load_incidents,
)
from upkeep.core.status import Status, worst
from upkeep.store.alerts import AlertState
from upkeep.store.schema import alerts, check_results, checks, result_rollups

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Engine

    from upkeep.config.loader import LoadedConfig
    from upkeep.config.models import MuteConfig
    from upkeep.store.store import Store

logger = logging.getLogger(__name__)

ComponentState = Literal["operational", "degraded", "outage", "unknown", "maintenance"]
STATE_ORDER: dict[ComponentState, int] = {
    "operational": 0,
    "degraded": 1,
    "unknown": 2,
    "outage": 3,
    "maintenance": 4,
}
"""How bad each state is: the page's overall state is its components' worst (maintenance
outranks the rest: while a window is open its component's alerts are expected)."""
MAX_OPENINGS = 5000
"""Openings of one window looked at per snapshot: a window opening every half hour for
three months; beyond it later openings are left out, with a warning in the log."""
ANNOUNCE_AHEAD = timedelta(days=30)
"""Windows opening within this long from now are announced."""
HOUR = timedelta(hours=1)

Span = tuple[datetime, datetime]


# --- interval arithmetic (classification only: downtime itself is compute_stats') -------


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Given ``[start, end)`` spans, return them merged where they overlap or touch, in
    start order; empty spans are dropped."""
    merged: list[Span] = []
    for start, end in sorted(span for span in spans if span[1] > span[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def clip_spans(spans: Iterable[Span], start: datetime, end: datetime) -> list[Span]:
    """Given merged spans and a period, return the parts inside it."""
    return [(max(a, start), min(b, end)) for a, b in spans if a < end and b > start]


def subtract_spans(spans: Sequence[Span], cut: Sequence[Span]) -> list[Span]:
    """Given merged spans and merged spans to cut out, return what remains of the first."""
    remaining: list[Span] = []
    for start, end in spans:
        cursor = start
        for cut_start, cut_end in cut:
            if cut_end <= cursor or cut_start >= end:
                continue
            if cut_start > cursor:
                remaining.append((cursor, cut_start))
            cursor = max(cursor, cut_end)
            if cursor >= end:
                break
        if cursor < end:
            remaining.append((cursor, end))
    return remaining


def _within(spans: Sequence[Span], start: datetime, end: datetime) -> list[Span]:
    """Given merged spans in start order and a period, return their parts inside it
    (found by bisection: a day's bar looks at its own few spans, not the whole history)."""
    first = bisect.bisect_right(spans, start, key=lambda span: span[1])
    last = bisect.bisect_left(spans, end, key=lambda span: span[0])
    return clip_spans(spans[first:last], start, end)


def _micros(seconds: float) -> int:
    # compute_stats' seconds are whole microseconds / 1e6: rounding gives them back exactly.
    return round(seconds * 1_000_000)


def _span_micros(spans: Iterable[Span]) -> int:
    return sum((end - start) // timedelta(microseconds=1) for start, end in spans)


# --- inputs, loaded once ------------------------------------------------------------------


@dataclass(frozen=True)
class MaintenanceOpening:
    """One opening of a window that concerns at least one component."""

    window: str
    start: datetime
    end: datetime
    description: str
    components: tuple[str, ...]


@dataclass
class StatusInputs:
    """What the figures of every component are computed from, for ``[start, end)``."""

    start: datetime
    end: datetime
    members: dict[str, list[str]]
    """Each component's checks."""
    incidents: dict[str, list[IncidentSpan]]
    """Each component's incidents overlapping the period, relabelled to it as target."""
    originals: list[IncidentSpan]
    """The incidents of every component's checks, as stored."""
    monitored_since: dict[str, datetime]
    """When each component's first check was first seen (absent: never)."""
    unreported: dict[str, list[Span]]
    """Each component's whole hours within the period in which none of its checks
    reported, merged."""
    maintenance: dict[str, list[Span]]
    """Each component's maintenance, merged."""
    openings: list[MaintenanceOpening] = field(default_factory=list)
    openings_capped: bool = False


def component_members(loaded: LoadedConfig) -> dict[str, list[str]]:
    """Given a loaded config, return each status page component's checks, in name order."""
    return {
        component.name: sorted(
            name
            for name, check in loaded.checks.items()
            if component.selects(name, check.labels, enabled=check.enabled)
        )
        for component in loaded.config.status_page.components
    }


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _hour_number(column: ColumnElement[datetime], dialect: str) -> ColumnElement[int]:
    """Return an expression of a stored time's hour as hours since 1970 (UTC), per
    backend (SQLite keeps times as ``YYYY-MM-DD HH:MM:SS`` text in UTC)."""
    if dialect == "sqlite":
        return cast(cast(func.strftime("%s", column), Integer) / 3600, Integer)
    return cast(func.floor(func.extract("epoch", column) / 3600), BigInteger)


def reported_runs(engine: Engine, start: datetime, end: datetime) -> dict[str, list[Span]]:
    """Given a store's engine and a period, return for each check the spans of whole
    hours in which it has a result, raw or rolled up, merged into runs of consecutive
    hours (the database finds the runs: a check reporting every minute for 90 days is
    one row, not 129,600)."""
    dialect = engine.dialect.name
    raw_hour = _hour_number(check_results.c.at, dialect)
    rolled_hour = _hour_number(result_rollups.c.bucket_start, dialect)
    hours = union(
        select(check_results.c.check_id.label("check_id"), raw_hour.label("hour")).where(
            check_results.c.at >= start - HOUR, check_results.c.at < end
        ),
        select(result_rollups.c.check_id.label("check_id"), rolled_hour.label("hour")).where(
            result_rollups.c.resolution == "1h",
            result_rollups.c.bucket_start >= start - HOUR,
            result_rollups.c.bucket_start < end,
            result_rollups.c.results > 0,
        ),
    ).subquery("hours")
    numbered = select(
        hours.c.check_id,
        hours.c.hour,
        (
            hours.c.hour
            - func.row_number().over(partition_by=hours.c.check_id, order_by=hours.c.hour)
        ).label("island"),
    ).subquery("numbered")
    runs = (
        select(checks.c.name, func.min(numbered.c.hour), func.max(numbered.c.hour))
        .select_from(numbered.join(checks, checks.c.id == numbered.c.check_id))
        .group_by(checks.c.name, numbered.c.island)
    )
    found: dict[str, list[Span]] = defaultdict(list)
    with engine.connect() as connection:
        for name, first, last in connection.execute(runs):
            found[name].append((EPOCH + HOUR * int(first), EPOCH + HOUR * (int(last) + 1)))
    return {name: merge_spans(spans) for name, spans in found.items()}


FULL_REFRESH_S = 3600.0
"""A ``ReportedHours`` reads the whole period again this often (monotonic seconds)."""
LATE_MARGIN = timedelta(hours=2)
"""Between full reads, hours from this long before the last read on are read again:
results written late (a batch, the spill written back) land within it."""


class ReportedHours:
    """Each check's reported hours, remembered between snapshots: a rebuild reads only
    the hours since the last read (less ``LATE_MARGIN``), the whole period again every
    ``FULL_REFRESH_S``. Reading months of results costs seconds; the last two hours, a
    few milliseconds. Safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._runs: dict[str, list[Span]] = {}
        self._start: datetime | None = None
        self._until: datetime | None = None
        self._full_at = -math.inf

    def runs(self, engine: Engine, start: datetime, end: datetime) -> dict[str, list[Span]]:
        """Given a store's engine and a period, return each check's runs of reported
        hours covering it (``reported_runs``), read in part or whole as the class says."""
        with self._lock:
            known = (
                self._engine is engine
                and self._start is not None
                and self._until is not None
                and self._start <= start
                and self._until <= end
                and time_now() - self._full_at < FULL_REFRESH_S
            )
            if known and self._until is not None:
                recent = reported_runs(engine, max(start, self._until - LATE_MARGIN), end)
                names = set(self._runs) | set(recent)
                self._runs = {
                    name: merge_spans([*self._runs.get(name, []), *recent.get(name, [])])
                    for name in names
                }
            else:
                self._runs = reported_runs(engine, start, end)
                self._engine, self._start, self._full_at = engine, start, time_now()
            self._until = end
            return self._runs


def _concerns(mute: MuteConfig, checks_of: Sequence[str], loaded: LoadedConfig) -> bool:
    from upkeep.alerting.routing import AlertFacts, route_matches

    ignoring_severity = mute.model_copy(update={"severity": None})
    for name in checks_of:
        check = loaded.checks[name]
        facts = AlertFacts(name, check.target_name, check.severity, "critical", check.labels)
        if route_matches(ignoring_severity, facts):
            return True
    return False


def _window_openings(
    loaded: LoadedConfig,
    store: Store,
    members: Mapping[str, list[str]],
    start: datetime,
    end: datetime,
) -> tuple[list[MaintenanceOpening], bool]:
    """Given the config, the store, the components' checks and a period, return every
    opening overlapping it of a window that concerns a component, and whether some were
    left out (``MAX_OPENINGS``)."""
    from upkeep.alerting.windows import WindowCalendar
    from upkeep.config.models import MuteConfig

    one_offs = store.runs.list_windows(ending_after=start)
    calendar = WindowCalendar(loaded.config, one_offs)
    mutes: dict[str, MuteConfig] = {
        name: window.mute for name, window in loaded.config.windows.items() if window.mute
    }
    descriptions = {
        name: window.description or "" for name, window in loaded.config.windows.items()
    }
    for one_off in one_offs:
        if one_off.mute:
            mutes[one_off.name] = MuteConfig.model_validate(one_off.mute)
        descriptions.setdefault(one_off.name, one_off.comment)
    openings: list[MaintenanceOpening] = []
    capped = False
    for name in calendar.names():
        mute = mutes.get(name)
        if mute is None:
            continue
        concerned = tuple(
            component for component, names in members.items() if _concerns(mute, names, loaded)
        )
        if not concerned:
            continue
        current = calendar.opening_at(name, start)
        cursor = current.start if current is not None else start
        found = [current] if current is not None else []
        while len(found) < MAX_OPENINGS:
            following = calendar.next_opening(name, cursor)
            if following is None or following.start >= end:
                break
            found.append(following)
            cursor = following.start
        else:
            capped = True
        openings.extend(
            MaintenanceOpening(
                name, opening.start, opening.end, descriptions.get(name, ""), concerned
            )
            for opening in found
        )
    openings.sort(key=lambda opening: (opening.start, opening.window))
    return openings, capped


def load_inputs(
    loaded: LoadedConfig,
    store: Store,
    start: datetime,
    end: datetime,
    *,
    ahead: timedelta = ANNOUNCE_AHEAD,
    hours: ReportedHours | None = None,
) -> StatusInputs:
    """Given the config, its store and a period ``[start, end)`` (aware), read once
    everything the figures of every component need: incidents, first results, reported
    hours (through ``hours``, which remembers them between calls, if given) and
    maintenance (openings up to ``end + ahead``, for announcements)."""
    members = component_members(loaded)
    component_of: dict[str, list[str]] = defaultdict(list)
    for component, names in members.items():
        for name in names:
            component_of[name].append(component)
    originals = [
        incident
        for incident in load_incidents(store.engine, start, end)
        if incident.check in component_of
    ]
    relabelled: dict[str, list[IncidentSpan]] = {component: [] for component in members}
    for incident in originals:
        for component in component_of[incident.check]:
            relabelled[component].append(
                dataclasses.replace(incident, check=component, target=component)
            )
    seen = first_seen(store.engine)
    monitored: dict[str, datetime] = {}
    for component, names in members.items():
        moments = [seen[("check", name)] for name in names if ("check", name) in seen]
        if moments:
            monitored[component] = min(moments)
    runs = (hours or ReportedHours()).runs(store.engine, start, end)
    # The hour under way is not judged yet: a check due later in it has not failed to report.
    period = [
        (
            start.replace(minute=0, second=0, microsecond=0),
            end.replace(minute=0, second=0, microsecond=0),
        )
    ]
    unreported = {
        component: subtract_spans(
            period, merge_spans(span for name in names for span in runs.get(name, []))
        )
        for component, names in members.items()
    }
    openings, capped = _window_openings(loaded, store, members, start, end + ahead)
    if capped:
        logger.warning(
            "a window opens more than %d times in the status page's history; later "
            "openings are not shown",
            MAX_OPENINGS,
        )
    maintenance: dict[str, list[Span]] = {component: [] for component in members}
    for opening in openings:
        for component in opening.components:
            maintenance[component].append((opening.start, opening.end))
    return StatusInputs(
        start=start,
        end=end,
        members=members,
        incidents=relabelled,
        originals=originals,
        monitored_since=monitored,
        unreported=unreported,
        maintenance={component: merge_spans(spans) for component, spans in maintenance.items()},
        openings=openings,
        openings_capped=capped,
    )


# --- figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpanFigures:
    """One component's figures over one span; durations in seconds."""

    start: datetime
    end: datetime
    observed_s: float
    downtime_s: float
    """Downtime counted against the uptime (outside maintenance; with unknown time under
    the ``down`` policy)."""
    maintenance_s: float
    unknown_s: float
    uptime_percent: float | None
    """None when nothing was counted (never observed, or all maintenance/excluded)."""
    incidents: int


def _downtime(
    incidents: Sequence[IncidentSpan],
    component: str,
    start: datetime,
    end: datetime,
    since: datetime | None,
) -> tuple[int, int, datetime]:
    """Return (observed µs, downtime µs, observed start) of a component over a span, by
    ``compute_stats`` (the component is its incidents' target)."""
    monitored: dict[Subject, datetime] = {("target", component): since} if since else {}
    for figure in compute_stats(incidents, start, end, monitored):
        if figure.scope == "target" and figure.name == component:
            observed = _micros(figure.observed_s)
            return observed, _micros(figure.downtime_s), end - timedelta(microseconds=observed)
    # Never seen and no incident: nothing observed.
    return 0, 0, end


def span_figures(
    inputs: StatusInputs, component: str, start: datetime, end: datetime, policy: str, now: datetime
) -> SpanFigures:
    """Given the loaded inputs, a component, a span inside the inputs' period, the
    unknown-hour policy and the current time, return the component's figures (see the
    module's docstring for the rules)."""
    end = min(end, now)
    if end <= start:
        return SpanFigures(start, start, 0.0, 0.0, 0.0, 0.0, None, 0)
    incidents = [
        incident
        for incident in inputs.incidents.get(component, [])
        if incident.opened_at < end
        and (incident.resolved_at is None or incident.resolved_at > start)
    ]
    since = inputs.monitored_since.get(component)
    observed, downtime, observed_start = _downtime(incidents, component, start, end, since)
    if observed == 0:
        return SpanFigures(start, end, 0.0, 0.0, 0.0, 0.0, None, len(incidents))
    maintenance_spans = _within(inputs.maintenance.get(component, []), observed_start, end)
    maintenance = maintenance_down = 0
    for window_start, window_end in maintenance_spans:
        window_observed, window_down, _ = _downtime(
            incidents, component, window_start, window_end, since
        )
        maintenance += window_observed
        maintenance_down += window_down
    outage_spans = merge_spans(
        (incident.opened_at, incident.resolved_at or end) for incident in incidents
    )
    silent = _within(inputs.unreported.get(component, []), observed_start, end)
    unknown_spans = subtract_spans(subtract_spans(silent, outage_spans), maintenance_spans)
    unknown = _span_micros(unknown_spans)
    counted = observed - maintenance
    down = downtime - maintenance_down
    if policy == "down":
        down += unknown
    elif policy == "excluded":
        counted -= unknown
    uptime = exact_percent(max(0, counted - down), counted) if counted > 0 else None
    return SpanFigures(
        start=start,
        end=end,
        observed_s=observed / 1e6,
        downtime_s=down / 1e6,
        maintenance_s=maintenance / 1e6,
        unknown_s=unknown / 1e6,
        uptime_percent=uptime,
        incidents=len(incidents),
    )


def day_starts(first_day: date, days: int, zone: ZoneInfo) -> list[datetime]:
    """Given the first day, a number of days and a zone, return the UTC start of each day
    and of the day after the last (days are not always 24 hours long)."""
    return [
        datetime.combine(first_day + timedelta(days=offset), time(0), tzinfo=zone).astimezone(UTC)
        for offset in range(days + 1)
    ]


# --- state now ----------------------------------------------------------------------------

_BY_STATUS: dict[Status, ComponentState] = {
    Status.CRITICAL: "outage",
    Status.UNKNOWN: "unknown",
    Status.WARNING: "degraded",
    Status.OK: "operational",
}


def current_states(
    store: Store, members: Mapping[str, list[str]], inputs: StatusInputs, now: datetime
) -> dict[str, ComponentState]:
    """Given the store, each component's checks, the loaded inputs and now, return each
    component's state now: maintenance while a window concerning it is open, else the
    worst status of its checks' firing alerts, ``unknown`` when none of its checks has
    reported, else ``operational``."""
    with store.engine.connect() as connection:
        firing = {
            row.check: Status(row.status)
            for row in connection.execute(
                select(alerts.c.check, alerts.c.status).where(
                    alerts.c.active.is_not(None), alerts.c.state == AlertState.FIRING
                )
            )
        }
    states: dict[str, ComponentState] = {}
    for component, names in members.items():
        if any(start <= now < end for start, end in inputs.maintenance.get(component, [])):
            states[component] = "maintenance"
            continue
        statuses = [firing[name] for name in names if name in firing]
        if statuses:
            states[component] = _BY_STATUS[worst(statuses)]
        elif component not in inputs.monitored_since:
            # Not check_states: alerting stores no state for a check that was only ever ok.
            states[component] = "unknown"
        else:
            states[component] = "operational"
    return states


def mean_response_ms(
    engine: Engine, names: Sequence[str], start: datetime, end: datetime
) -> float | None:
    """Given a store's engine, checks and a period, return the mean of their stored
    durations over it (raw results, plus hourly rollups weighted by their result counts),
    or None if there is none."""
    if not names:
        return None
    ids = select(checks.c.id).where(checks.c.name.in_(list(names))).scalar_subquery()
    raw = select(func.sum(check_results.c.duration_ms), func.count()).where(
        check_results.c.check_id.in_(ids), check_results.c.at >= start, check_results.c.at < end
    )
    rolled = select(
        func.sum(result_rollups.c.duration_ms_avg * result_rollups.c.results),
        func.sum(result_rollups.c.results),
    ).where(
        result_rollups.c.check_id.in_(ids),
        result_rollups.c.resolution == "1h",
        result_rollups.c.bucket_start >= start,
        result_rollups.c.bucket_start < end,
    )
    with engine.connect() as connection:
        raw_sum, raw_count = connection.execute(raw).one()
        rolled_sum, rolled_count = connection.execute(rolled).one()
    total = float(raw_sum or 0) + float(rolled_sum or 0)
    count = int(raw_count or 0) + int(rolled_count or 0)
    return total / count if count else None
