"""Incidents and reliability figures: uptime, MTTR, MTBF, MTTA and response targets.

An incident is an alert that fired (``fired_at`` set); a pending alert that recovered
before firing is not one. Its downtime interval is ``[opened_at, resolved_at)``, open at
the end while it is unresolved. The figures are computed per check and per target:

* **uptime** — 1 - (downtime within the observed period) / (observed period), computed
  exactly from whole microseconds: exactly 100 when there was no downtime, below 100
  whenever there was any (however little), never outside [0, 100]. The observed
  period starts at the later of the period's start and the subject's first result, so a
  check added yesterday is not credited a month of uptime. A target's downtime is the
  union of its checks' incident intervals: two checks failing together count once;
* **outages** — a subject's incident intervals merged where they overlap. A check has at
  most one open alert, so each of its incidents is one outage; a target's two overlapping
  incidents are one outage of the target;
* **MTTR** — mean ``end - start`` of the outages that ended within the period (the whole
  outage, even the part before the period); an outage still open is left out of MTTR but
  is downtime up to the period's end;
* **MTBF** — observed uptime / the number of outages that started within the period;
  None when none did, or when the subject was never up in the period (there was no time
  between failures to measure);
* **MTTA** — mean ``first_acked_at - fired_at`` over the incidents that fired within the
  period and were acknowledged;
* **response target** — an incident that fired within the period meets its severity's
  target when it was acknowledged within the target; it misses it when acknowledged later,
  or when the target passed while it was firing unacknowledged. One that recovered unacked
  before its target passed, or whose target has not passed yet, is not counted.

``compute_stats`` is pure; ``load_incidents`` and ``first_seen`` read its inputs from a
store, and ``load_incident`` serves
``upkeep incidents``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import and_, func, or_, select

from upkeep.store.alerts import AlertState
from upkeep.store.schema import alerts, check_results, checks, result_rollups

if TYPE_CHECKING:
    from sqlalchemy import Engine

Scope = Literal["check", "target"]
Subject = tuple[Scope, str]
"""What figures are about: ``("check", name)`` or ``("target", name)``."""


@dataclass(frozen=True)
class IncidentSpan:
    """One incident (a fired alert) as the figures and ``upkeep incidents`` need it."""

    id: int
    check: str
    target: str
    severity: str
    opened_at: datetime
    fired_at: datetime
    resolved_at: datetime | None = None
    first_acked_at: datetime | None = None
    state: AlertState = AlertState.RESOLVED
    acked_by: str | None = None
    message: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def duration_s(self, now: datetime) -> float:
        """Given the current time, return how long the incident lasted (or has lasted)."""
        return ((self.resolved_at or now) - self.opened_at).total_seconds()


@dataclass(frozen=True)
class ReliabilityFigures:
    """The figures of one check or target over one period; durations in seconds."""

    scope: Scope
    name: str
    observed_s: float
    downtime_s: float
    uptime_percent: float | None
    """None when nothing was observed in the period (first result after its end); exactly
    100.0 when ``downtime_s`` is 0 and below 100.0 otherwise (see ``exact_percent``)."""
    incidents: int
    outages: int
    open_incidents: int
    mttr_s: float | None
    mtbf_s: float | None
    mtta_s: float | None
    acked: int
    unacked: int
    response_met: int
    response_missed: int
    response_target_met_percent: float | None

    def to_json(self) -> dict[str, Any]:
        """Return the figures as a JSON-ready dict (seconds, percentages, counts)."""
        return {
            "scope": self.scope,
            "name": self.name,
            "observed_s": self.observed_s,
            "downtime_s": self.downtime_s,
            "uptime_percent": self.uptime_percent,
            "incidents": self.incidents,
            "outages": self.outages,
            "open_incidents": self.open_incidents,
            "mttr_s": self.mttr_s,
            "mtbf_s": self.mtbf_s,
            "mtta_s": self.mtta_s,
            "acked": self.acked,
            "unacked": self.unacked,
            "response_met": self.response_met,
            "response_missed": self.response_missed,
            "response_target_met_percent": self.response_target_met_percent,
        }


# --- pure computation ------------------------------------------------------------------------


def _require_aware(*moments: datetime | None) -> None:
    for moment in moments:
        if moment is not None and moment.tzinfo is None:
            raise ValueError("naive datetime given to the reliability figures; use aware ones")


def _outages(
    intervals: Iterable[tuple[datetime, datetime | None]],
) -> list[tuple[datetime, datetime | None]]:
    """Given ``(start, end or None if open)`` intervals, return them merged where they
    overlap, in start order. Intervals that only touch stay apart: the subject recovered,
    if only for an instant, so they are two failures."""
    merged: list[tuple[datetime, datetime | None]] = []
    for start, end in sorted(intervals, key=lambda pair: pair[0]):
        if merged:
            last_start, last_end = merged[-1]
            if last_end is None or start < last_end:
                new_end = None if last_end is None or end is None else max(last_end, end)
                merged[-1] = (last_start, new_end)
                continue
        merged.append((start, end))
    return merged


_MICROSECOND = timedelta(microseconds=1)


def _micros(span: timedelta) -> int:
    """Return a timedelta as whole microseconds: datetimes are exact to the microsecond, so
    sums and differences of these integers are exact where float seconds are not."""
    return span // _MICROSECOND


def _seconds(micros: int) -> float:
    return micros / 1_000_000


def _clipped_us(
    start: datetime, end: datetime | None, window_start: datetime, window_end: datetime
) -> int:
    low = max(start, window_start)
    high = window_end if end is None else min(end, window_end)
    return max(0, _micros(high - low))


def _mean(values: Sequence[int]) -> float | None:
    """Given microsecond durations, return their mean in seconds, or None if there are none."""
    return _seconds(sum(values)) / len(values) if values else None


def exact_percent(part: int, whole: int) -> float | None:
    """Given a part of a whole (non-negative integers), return ``100 * part / whole`` as the
    float nearest the exact quotient, clamped to [0, 100], or None when ``whole`` is 0.

    The result is 100.0 exactly when ``part >= whole`` and strictly below 100.0 otherwise
    (a float rounding up to 100 is stepped down to the largest float below it), and 0.0
    exactly when ``part`` is 0: a figure that was not perfect never reads as perfect.
    Raise ValueError on a negative argument.
    """
    if part < 0 or whole < 0:
        raise ValueError("a percentage of negative amounts is undefined")
    if whole == 0:
        return None
    if part >= whole:
        return 100.0
    value = float(Fraction(100 * part, whole))
    return math.nextafter(100.0, 0.0) if value >= 100.0 else value


def _figures(
    scope: Scope,
    name: str,
    incidents: Sequence[IncidentSpan],
    period_start: datetime,
    period_end: datetime,
    monitored_since: datetime | None,
    response_targets: Mapping[str, timedelta],
) -> ReliabilityFigures:
    # An incident proves the subject was monitored when it opened, even if the results
    # before it were pruned, so the observed period never starts after an incident.
    observed_start = period_start
    if monitored_since is not None:
        earliest = min([incident.opened_at for incident in incidents], default=monitored_since)
        observed_start = max(period_start, min(monitored_since, earliest))
    observed_us = max(0, _micros(period_end - observed_start))

    outages = _outages((incident.opened_at, incident.resolved_at) for incident in incidents)
    # Merged outages do not overlap and each is clipped to the observed period, so their sum
    # never exceeds it.
    downtime_us = sum(_clipped_us(start, end, observed_start, period_end) for start, end in outages)
    uptime_us = max(0, observed_us - downtime_us)
    repairs = [
        _micros(end - start)
        for start, end in outages
        if end is not None and period_start < end <= period_end
    ]
    failures = sum(1 for start, _ in outages if period_start <= start < period_end)

    fired_here = [i for i in incidents if period_start <= i.fired_at < period_end]
    acked = [i for i in fired_here if i.first_acked_at is not None]
    # An acknowledgement of a still-pending alert counts as immediate, never negative.
    ack_delays = [
        max(0, _micros(i.first_acked_at - i.fired_at))
        for i in acked
        if i.first_acked_at is not None
    ]
    met = missed = 0
    for incident in fired_here:
        target = response_targets.get(incident.severity)
        if target is None:
            continue
        deadline = incident.fired_at + target
        if incident.first_acked_at is not None:
            if incident.first_acked_at <= deadline:
                met += 1
            else:
                missed += 1
        elif deadline <= period_end and (
            incident.resolved_at is None or incident.resolved_at > deadline
        ):
            missed += 1
    return ReliabilityFigures(
        scope=scope,
        name=name,
        observed_s=_seconds(observed_us),
        downtime_s=_seconds(downtime_us),
        uptime_percent=exact_percent(uptime_us, observed_us),
        incidents=len(incidents),
        outages=len(outages),
        open_incidents=sum(1 for incident in incidents if incident.resolved_at is None),
        mttr_s=_mean(repairs),
        # Never up in the period: there was no time between failures, so MTBF is undefined
        # rather than 0s (which would read as "fails constantly", a different claim).
        mtbf_s=_seconds(uptime_us) / failures if failures and uptime_us else None,
        mtta_s=_mean(ack_delays),
        acked=len(acked),
        unacked=len(fired_here) - len(acked),
        response_met=met,
        response_missed=missed,
        response_target_met_percent=exact_percent(met, met + missed),
    )


def compute_stats(
    incidents: Sequence[IncidentSpan],
    period_start: datetime,
    period_end: datetime,
    monitored_since: Mapping[Subject, datetime] | None = None,
    response_targets: Mapping[str, timedelta] | None = None,
) -> list[ReliabilityFigures]:
    """Given incidents, a period ``[period_start, period_end)``, when each subject was first
    seen and the response target per severity, return the figures of every check and
    target, checks first, each sorted by name.

    Subjects are those with an incident overlapping the period plus every key of
    ``monitored_since`` (a subject without incidents is 100% up). Without a
    ``monitored_since`` entry a subject counts as observed over the whole period. Incidents
    that do not overlap the period are ignored. Raise ValueError on a naive datetime or an
    empty or reversed period.
    """
    _require_aware(period_start, period_end)
    if period_end <= period_start:
        raise ValueError("the period must end after it starts")
    targets = response_targets or {}
    since = monitored_since or {}
    for moment in since.values():
        _require_aware(moment)
    grouped: dict[Subject, list[IncidentSpan]] = defaultdict(list)
    for incident in incidents:
        _require_aware(
            incident.opened_at, incident.fired_at, incident.resolved_at, incident.first_acked_at
        )
        ends = incident.resolved_at
        if incident.opened_at >= period_end or (ends is not None and ends <= period_start):
            continue
        grouped[("check", incident.check)].append(incident)
        grouped[("target", incident.target)].append(incident)
    subjects = set(grouped) | set(since)
    order: dict[Scope, int] = {"check": 0, "target": 1}
    return [
        _figures(
            scope,
            name,
            grouped.get((scope, name), []),
            period_start,
            period_end,
            since.get((scope, name)),
            targets,
        )
        for scope, name in sorted(subjects, key=lambda subject: (order[subject[0]], subject[1]))
    ]


# --- reading the store ---------------------------------------------------------------------


def _labels_match(labels: Mapping[str, Any] | None, wanted: Mapping[str, str]) -> bool:
    have = labels or {}
    return all(key in have and str(have[key]) == value for key, value in wanted.items())


def _span(row: Any) -> IncidentSpan:
    return IncidentSpan(
        id=int(row.id),
        check=row.check,
        target=row.target,
        severity=row.severity,
        opened_at=row.opened_at,
        fired_at=row.fired_at,
        resolved_at=row.resolved_at,
        first_acked_at=row.first_acked_at,
        state=AlertState(row.state),
        acked_by=row.acked_by,
        message=row.message,
        labels={str(key): str(value) for key, value in (row.labels or {}).items()},
    )


_SPAN_COLUMNS = (
    alerts.c.id,
    alerts.c.check,
    alerts.c.target,
    alerts.c.severity,
    alerts.c.opened_at,
    alerts.c.fired_at,
    alerts.c.resolved_at,
    alerts.c.first_acked_at,
    alerts.c.state,
    alerts.c.acked_by,
    alerts.c.message,
    alerts.c.labels,
)


def load_incidents(
    engine: Engine,
    since: datetime,
    until: datetime,
    label_filter: Mapping[str, str] | None = None,
    *,
    open_only: bool = False,
) -> list[IncidentSpan]:
    """Given a store's engine, a period ``[since, until)`` and labels ``k=v`` that must all
    match, return the incidents (fired alerts) overlapping the period, oldest first; with
    ``open_only``, only unresolved ones. Raise ValueError on a naive datetime."""
    _require_aware(since, until)
    query = (
        select(*_SPAN_COLUMNS)
        .where(
            alerts.c.fired_at.is_not(None),
            alerts.c.opened_at < until,
            or_(alerts.c.resolved_at.is_(None), alerts.c.resolved_at > since),
        )
        .order_by(alerts.c.opened_at, alerts.c.id)
    )
    if open_only:
        query = query.where(alerts.c.resolved_at.is_(None))
    wanted = label_filter or {}
    with engine.connect() as connection:
        # Labels are JSON, which the two backends query differently; incidents are few
        # enough to filter here.
        return [
            _span(row) for row in connection.execute(query) if _labels_match(row.labels, wanted)
        ]


def first_seen(
    engine: Engine, label_filter: Mapping[str, str] | None = None
) -> dict[Subject, datetime]:
    """Given a store's engine and labels ``k=v`` that must all match a check's labels,
    return when each matching check, and each target of one, was first seen: the earliest
    of its registration, raw results and hourly rollups (a target: its earliest check).
    Checks never seen are left out."""
    # Correlated subqueries: one index seek per check, not a scan of every result.
    earliest_result = (
        select(func.min(check_results.c.at))
        .where(check_results.c.check_id == checks.c.id)
        .scalar_subquery()
    )
    earliest_rollup = (
        select(func.min(result_rollups.c.bucket_start))
        .where(result_rollups.c.check_id == checks.c.id)
        .scalar_subquery()
    )
    query = select(
        checks.c.name,
        checks.c.target,
        checks.c.labels,
        checks.c.first_seen,
        earliest_result.label("first_result"),
        earliest_rollup.label("first_rollup"),
    )
    wanted = label_filter or {}
    seen: dict[Subject, datetime] = {}
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    for row in rows:
        if not _labels_match(row.labels, wanted):
            continue
        moments: list[datetime] = [
            moment
            for moment in (row.first_seen, row.first_result, row.first_rollup)
            if moment is not None
        ]
        if not moments:
            continue
        earliest = min(moments)
        seen[("check", row.name)] = earliest
        target_key: Subject = ("target", row.target)
        seen[target_key] = min(earliest, seen.get(target_key, earliest))
    return seen


def load_incident(engine: Engine, incident_id: int) -> IncidentSpan | None:
    """Given a store's engine and an alert id, return that incident, or None if there is no
    such alert or it never fired."""
    query = select(*_SPAN_COLUMNS).where(
        and_(alerts.c.id == incident_id, alerts.c.fired_at.is_not(None))
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return None if row is None else _span(row)


def period_stats(
    engine: Engine,
    start: datetime,
    end: datetime,
    label_filter: Mapping[str, str] | None = None,
    response_targets: Mapping[str, timedelta] | None = None,
) -> list[ReliabilityFigures]:
    """Given a store's engine, a period ``[start, end)``, labels ``k=v`` that must all
    match and the response target per severity, return the figures of every matching
    check and target (checks first, each sorted by name).

    The one composition of ``load_incidents``, ``first_seen`` and ``compute_stats``:
    ``upkeep stats``, the dashboard, the status page and reports all call it, so a figure
    is the same wherever it is shown. Raise ValueError on a naive datetime or an empty or
    reversed period.
    """
    incidents = load_incidents(engine, start, end, label_filter)
    monitored = first_seen(engine, label_filter)
    return compute_stats(incidents, start, end, monitored, response_targets)


def stats_document(
    start: datetime, end: datetime, figures: Sequence[ReliabilityFigures]
) -> dict[str, Any]:
    """Given a period and its figures (``period_stats``), return the document ``upkeep
    stats --json`` prints and ``GET /api/stats`` answers: the period, then the figures of
    the checks and of the targets."""
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "checks": [figure.to_json() for figure in figures if figure.scope == "check"],
        "targets": [figure.to_json() for figure in figures if figure.scope == "target"],
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def incident_to_json(incident: IncidentSpan, now: datetime) -> dict[str, Any]:
    """Given an incident and the current time, return its JSON form (``upkeep incidents
    --json`` and ``GET /api/incidents`` both)."""
    return {
        "id": incident.id,
        "check": incident.check,
        "target": incident.target,
        "severity": incident.severity,
        "state": incident.state,
        "labels": dict(incident.labels),
        "message": incident.message,
        "opened_at": _iso(incident.opened_at),
        "fired_at": _iso(incident.fired_at),
        "resolved_at": _iso(incident.resolved_at),
        "duration_s": incident.duration_s(now),
        "ongoing": incident.resolved_at is None,
        "first_acked_at": _iso(incident.first_acked_at),
        "acked_by": incident.acked_by,
    }
