"""Read-side view models: the figures the dashboard shows, computed from the store.

Pages and reports read the same things, so they are computed once here: a check's newest
result and since when it is in its status, its 24-hour status strip, its uptime over 24 h,
7 d and 30 d (``upkeep.alerting.stats.period_stats``, the function behind ``upkeep stats``),
the health of a group of checks, a metric's series and the thresholds drawn over it, what a
silence's matchers select now, and each backup source's newest backup, verification and
drill. Every text that came from a probe, a step or a channel is passed through the
config's redactor here; HTML escaping is the templates' job (Jinja2 autoescape).

Group health is defined once, ``group_health``: the share of the group's checks whose newest
result is ok (checks without any result yet are left out of the share).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select

from upkeep.alerting.routing import AlertFacts, silence_matches
from upkeep.alerting.stats import ReliabilityFigures, period_stats
from upkeep.core.status import Status
from upkeep.reports.charts import CRITICAL_COLOUR, WARNING_COLOUR, Threshold
from upkeep.store.schema import alerts, check_results, check_states, checks

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from upkeep.config.loader import CompiledCheck, LoadedConfig
    from upkeep.core.redaction import Redactor
    from upkeep.store.alerts import Silence
    from upkeep.store.backups import BackupEvent, BackupRecord
    from upkeep.store.store import Store, StoredResult

UPTIME_PERIODS: tuple[tuple[str, timedelta], ...] = (
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
    ("30d", timedelta(days=30)),
)
"""The periods the overview shows uptime over, by the name shown."""
STRIP_HOURS = 24
"""The status strip shows this many hourly slots, the newest last."""
OVERVIEW_MESSAGE_CHARS = 120
"""The overview shows at most this much of a message; the check's page shows it whole."""
NO_LABEL = "(none)"
"""The group of checks that lack the grouping label."""

STATUS_ICONS = {
    "ok": "\u2714",  # heavy check mark
    "warning": "\u25b2",  # triangle
    "critical": "\u2716",  # heavy multiplication x
    "unknown": "?",
    "none": "\u2013",  # en dash: no result yet
}
"""The icon shown beside each status word: colour is never the only signal."""
STRIP_GLYPHS = {"ok": "\u2581", "warning": "\u2584", "critical": "\u2588", "unknown": "\u2592"}
"""A strip slot's glyph: its height (and texture) tells the status without colour."""
STRIP_EMPTY = "\u00b7"
"""A slot with no result."""
_RANK = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}


def status_word(status: Status | None) -> str:
    """Given a status (None: no result yet), return the word shown for it."""
    return "none" if status is None else status.label


@functools.lru_cache(maxsize=8192)
def percent_text(value: float | None) -> str:
    """Given a percentage or None, return it as every figure of upkeep is printed
    (``core.text.format_percent``: three decimals, truncated, ``-`` for None or NaN), a
    value a float's error put just outside [0, 100] brought back inside first."""
    from upkeep.core.text import format_percent

    if value is None or math.isnan(value):
        return "-"
    return format_percent(min(100.0, max(0.0, value)))


def shorten(text: str, limit: int) -> str:
    """Given a text, return its first line cut to ``limit`` characters (an ellipsis marks a
    cut)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


# --- newest results --------------------------------------------------------------------------


@dataclass(frozen=True)
class LatestResult:
    """A check's newest stored result (message already redacted)."""

    check: str
    result_id: int
    status: Status
    at: datetime
    message: str


def latest_results(engine: Engine, redactor: Redactor) -> dict[str, LatestResult]:
    """Given a store's engine and the redactor, return every check's newest result.

    One query; the newest result of each check is found by a correlated subquery that
    seeks the ``(check_id, at)`` index once per check, so the cost grows with the number of
    checks, not with the history kept.
    """
    inner = check_results.alias("newest")
    newest = (
        select(inner.c.id)
        .where(inner.c.check_id == checks.c.id)
        .order_by(inner.c.at.desc(), inner.c.id.desc())
        .limit(1)
        .correlate(checks)
        .scalar_subquery()
    )
    query = select(
        checks.c.name,
        check_results.c.id,
        check_results.c.status,
        check_results.c.at,
        check_results.c.message,
    ).select_from(checks.join(check_results, check_results.c.id == newest))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return {
        row.name: LatestResult(
            row.name, int(row.id), Status(row.status), row.at, redactor.redact(row.message)
        )
        for row in rows
    }


def results_after(
    engine: Engine, after_id: int, redactor: Redactor, *, limit: int = 20000
) -> tuple[list[LatestResult], int]:
    """Given a store's engine, a result id and the redactor, return the results stored
    after it (oldest first, at most ``limit``) and the id to ask after next time.

    The primary key is the cursor: the query is a range scan of the newest rows, cheap
    however much history the store keeps. ``after_id`` 0 asks for nothing but the cursor
    (the newest id), so a page can start from now.
    """
    with engine.connect() as connection:
        if after_id <= 0:
            newest = connection.execute(select(func.max(check_results.c.id))).scalar()
            return [], int(newest or 0)
        rows = connection.execute(
            select(
                checks.c.name,
                check_results.c.id,
                check_results.c.status,
                check_results.c.at,
                check_results.c.message,
            )
            .join(checks, checks.c.id == check_results.c.check_id)
            .where(check_results.c.id > after_id)
            .order_by(check_results.c.id)
            .limit(limit)
        ).all()
    found = [
        LatestResult(
            row.name, int(row.id), Status(row.status), row.at, redactor.redact(row.message)
        )
        for row in rows
    ]
    return found, (found[-1].result_id if found else after_id)


def status_since(
    engine: Engine, first_seen: Mapping[str, datetime | None] | None = None
) -> dict[str, datetime]:
    """Given a store's engine (and each check's first-seen time, if the caller has them),
    return since when each check is in its present state, as the alerting records say: a
    failing check since its ``bad_since`` (its first bad result of this episode); a
    healthy one since its last alert resolved, else since it was first seen.

    Only checks that failed or alerted cost a row: the rest take their first-seen time
    (read from ``checks`` unless given)."""
    bad = select(check_states.c.check, check_states.c.bad_since).where(
        check_states.c.bad_since.is_not(None)
    )
    resolved = (
        select(alerts.c.check, func.max(alerts.c.resolved_at))
        .where(alerts.c.resolved_at.is_not(None))
        .group_by(alerts.c.check)
    )
    with engine.connect() as connection:
        failing: dict[str, datetime] = {row[0]: row[1] for row in connection.execute(bad)}
        recovered: dict[str, datetime] = {row[0]: row[1] for row in connection.execute(resolved)}
        if first_seen is None:
            first_seen = {
                row[0]: row[1]
                for row in connection.execute(select(checks.c.name, checks.c.first_seen))
            }
    found: dict[str, datetime] = {}
    for name, seen in first_seen.items():
        moment = failing.get(name) or recovered.get(name) or seen
        if moment is not None:
            found[name] = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return found


# --- the 24-hour strip ----------------------------------------------------------------------


@dataclass
class StatusStrips:
    """The worst status of each check in each hour, kept up to date from new results.

    Fed with ``(check, at, status)``; ``strip`` reads the last ``STRIP_HOURS`` hours
    ending at a moment. Hours older than that are dropped as new ones arrive.
    """

    hours: int = STRIP_HOURS
    slots: dict[str, dict[int, Status]] = field(default_factory=dict)

    def add(self, check: str, at: datetime, status: Status) -> None:
        """Given a result, count it in its hour (the worst status of the hour wins)."""
        hour = int(at.timestamp() // 3600)
        slots = self.slots.setdefault(check, {})
        known = slots.get(hour)
        if known is None or _RANK[status] > _RANK[known]:
            slots[hour] = status

    def forget_before(self, moment: datetime) -> None:
        """Drop every hour that ended before ``moment``."""
        first = int(moment.timestamp() // 3600)
        for slots in self.slots.values():
            for hour in [hour for hour in slots if hour < first]:
                del slots[hour]

    def strip(self, check: str, end: datetime) -> tuple[Status | None, ...]:
        """Given a check and a moment, return its ``hours`` hourly slots ending with the hour
        holding ``end``, oldest first (None: no result that hour)."""
        last = int(end.timestamp() // 3600)
        slots = self.slots.get(check, {})
        return tuple(slots.get(hour) for hour in range(last - self.hours + 1, last + 1))


def load_strips(engine: Engine, end: datetime, hours: int = STRIP_HOURS) -> StatusStrips:
    """Given a store's engine and a moment, return the strips of every check over the
    ``hours`` hours ending then, from the raw results: a range scan of the ``at`` index
    (forced on SQLite, whose planner would rather walk the whole ``(check_id, at)`` index
    for the grouping) that the database groups by check, hour and status, so only those
    few rows travel. Its cost grows with the results of those hours, not with the history
    kept."""
    strips = StatusStrips(hours=hours)
    start = datetime.fromtimestamp((int(end.timestamp() // 3600) - hours + 1) * 3600, UTC)
    sqlite = engine.dialect.name == "sqlite"
    # SQLite keeps UTC times as ISO text: the hour is its first 13 characters.
    hour = (
        func.substr(check_results.c.at, 1, 13)
        if sqlite
        else func.floor(func.extract("epoch", check_results.c.at) / 3600)
    ).label("hour")
    query = (
        select(check_results.c.check_id, hour, check_results.c.status)
        .where(check_results.c.at >= start, check_results.c.at <= end)
        .group_by(check_results.c.check_id, hour, check_results.c.status)
        .with_hint(check_results, "INDEXED BY ix_check_results_at", "sqlite")
    )
    moments: dict[Any, datetime] = {}
    with engine.connect() as connection:
        names = dict(connection.execute(select(checks.c.id, checks.c.name)).all())
        for row in connection.execute(query):
            name = names.get(row.check_id)
            if name is None:
                continue
            moment = moments.get(row.hour)
            if moment is None:
                moment = (
                    datetime.strptime(row.hour, "%Y-%m-%d %H").replace(tzinfo=UTC)
                    if sqlite
                    else datetime.fromtimestamp(int(row.hour) * 3600, UTC)
                )
                moments[row.hour] = moment
            strips.add(name, moment, Status(row.status))
    return strips


@dataclass(frozen=True)
class StripView:
    """A strip as shown: glyphs (height tells the status), and words for assistive
    technology."""

    glyphs: str
    summary: str
    worst: str
    uniform: str = ""
    pending: bool = False
    """Uniform but for the hour in progress, which has no result yet (just after the
    hour turned): drawn as uniform with that one slot empty."""
    """The one status of every slot (``none``: no result in any), or empty if they differ."""


@functools.lru_cache(maxsize=4096)
def strip_view(slots: tuple[Status | None, ...]) -> StripView:
    """Given hourly slots (oldest first), return the glyphs, a summary in words such as
    ``last 24 h: 22 ok, 2 critical``, the worst status and, when every slot holds the same
    status, that status (a page draws such a strip with its stylesheet: most strips are
    uniform, and 1,000 rows of glyphs would weigh 100 KB). Memoised: strips repeat."""
    glyphs = "".join(
        STRIP_GLYPHS[slot.label] if slot is not None else STRIP_EMPTY for slot in slots
    )
    counts: dict[str, int] = {}
    for slot in slots:
        word = status_word(slot) if slot is not None else "no data"
        counts[word] = counts.get(word, 0) + 1
    order = ["ok", "warning", "unknown", "critical", "no data"]
    summary = f"last {len(slots)} h: " + ", ".join(
        f"{counts[word]} {word}" for word in order if word in counts
    )
    present = [slot for slot in slots if slot is not None]
    worst = max(present, key=lambda status: _RANK[status]).label if present else "none"
    if slots and len(set(slots)) == 1:
        return StripView(glyphs, summary, worst, status_word(slots[0]))
    earlier = set(slots[:-1])
    if len(slots) > 1 and slots[-1] is None and len(earlier) == 1 and None not in earlier:
        return StripView(glyphs, summary, worst, status_word(slots[0]), pending=True)
    return StripView(glyphs, summary, worst)


# --- uptime ----------------------------------------------------------------------------------


def uptime_by_period(
    engine: Engine, now: datetime, response_targets: Mapping[str, timedelta]
) -> dict[str, dict[str, ReliabilityFigures]]:
    """Given a store's engine, the time and the response targets, return each check's
    figures over each of ``UPTIME_PERIODS`` (``period_stats``, as ``upkeep stats`` computes
    them), keyed by period name then check name."""
    found: dict[str, dict[str, ReliabilityFigures]] = {}
    for name, length in UPTIME_PERIODS:
        figures = period_stats(engine, now - length, now, None, response_targets)
        found[name] = {item.name: item for item in figures if item.scope == "check"}
    return found


def response_targets(loaded: LoadedConfig) -> dict[str, timedelta]:
    """Given the config, return the response target per severity (as ``upkeep stats``)."""
    return {
        str(severity): target
        for severity, target in loaded.config.alerting.response_targets.items()
    }


# --- the overview ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckRow:
    """One check on the overview."""

    name: str
    target: str
    labels: Mapping[str, str]
    status: str
    since: datetime | None
    at: datetime | None
    message: str
    strip: StripView
    uptime: Mapping[str, str]


@dataclass(frozen=True)
class Group:
    """Checks sharing one value of the grouping label, with the group's health."""

    key: str
    value: str
    rows: list[CheckRow]
    health: float | None
    counts: Mapping[str, int]


def group_health(rows: Sequence[CheckRow]) -> float | None:
    """Given a group's rows, return its health: the percentage of its checks whose newest
    result is ok, among those that have a result; None when none has one."""
    measured = [row for row in rows if row.status != "none"]
    if not measured:
        return None
    ok = sum(1 for row in measured if row.status == "ok")
    return 100.0 * ok / len(measured)


@dataclass(frozen=True)
class OverviewFilter:
    """What the overview shows: grouped by one label, filtered by labels, status, a name."""

    group_by: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    status: str = ""
    search: str = ""

    def admits(self, row: CheckRow) -> bool:
        """Given a row, return whether it passes every filter (the search is a
        case-insensitive substring of the check's or target's name)."""
        if self.status and row.status != self.status:
            return False
        if any(row.labels.get(key) != value for key, value in self.labels.items()):
            return False
        needle = self.search.lower()
        return not needle or needle in row.name.lower() or needle in row.target.lower()


def label_keys(loaded: LoadedConfig, known: Iterable[Mapping[str, str]] = ()) -> list[str]:
    """Given the config (and the labels of stored checks), return every label name, sorted."""
    keys = {key for check in loaded.checks.values() for key in check.labels}
    for labels in known:
        keys.update(labels)
    return sorted(keys)


def default_group_key(keys: Sequence[str]) -> str:
    """Given the label names in use, return the one to group by: ``env``, ``region`` or
    ``role`` when present (in that order), else the first, else none."""
    for preferred in ("env", "region", "role"):
        if preferred in keys:
            return preferred
    return keys[0] if keys else ""


@dataclass(frozen=True)
class StoredCheck:
    """A check as the store registered it (a check since removed from the config stays
    until its results age out)."""

    name: str
    target: str
    probe: str
    labels: Mapping[str, str]
    first_seen: datetime | None = None


def stored_checks(engine: Engine) -> dict[str, StoredCheck]:
    """Given a store's engine, return every registered check."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                checks.c.name,
                checks.c.target,
                checks.c.probe,
                checks.c.labels,
                checks.c.first_seen,
            )
        ).all()
    return {
        row.name: StoredCheck(
            row.name,
            row.target,
            row.probe,
            {str(key): str(value) for key, value in (row.labels or {}).items()},
            row.first_seen,
        )
        for row in rows
    }


@dataclass(frozen=True)
class Overview:
    """The overview page's model."""

    groups: list[Group]
    group_by: str
    label_keys: list[str]
    label_values: Mapping[str, list[str]]
    total: int
    shown: int
    counts: Mapping[str, int]
    cursor: int


def build_overview(
    loaded: LoadedConfig,
    registered: Mapping[str, StoredCheck],
    latest: Mapping[str, LatestResult],
    since: Mapping[str, datetime],
    strips: StatusStrips,
    uptime: Mapping[str, Mapping[str, ReliabilityFigures]],
    wanted: OverviewFilter,
    now: datetime,
    cursor: int,
    rows_cache: dict[str, tuple[tuple[Any, ...], CheckRow]] | None = None,
) -> Overview:
    """Given the config, the checks the store knows, each check's newest result, since
    when it is in its state, its strip and uptime figures, the filter and the time, return
    the overview: every configured check (enabled or not) and every stored one, filtered,
    grouped by the filter's label (or the default one), groups and checks sorted by name,
    the worst status of a group first within it.

    ``rows_cache`` (kept by the caller between calls) reuses a check's row while nothing
    it shows changed: a page of 1,000 checks then allocates next to nothing per request,
    which keeps the collector's full passes, and the latency they add, away."""
    names = set(registered) | set(loaded.checks)
    cache = rows_cache if rows_cache is not None else {}
    rows: list[CheckRow] = []
    for name in names:
        compiled = loaded.checks.get(name)
        stored = registered.get(name)
        newest = latest.get(name)
        strip = strip_view(strips.strip(name, now))
        inputs = (
            id(compiled),
            id(stored),
            newest.result_id if newest else 0,
            since.get(name) if newest else None,
            id(strip),
            id(uptime),
        )
        found = cache.get(name)
        if found is not None and found[0] == inputs:
            rows.append(found[1])
            continue
        labels: Mapping[str, str] = (
            compiled.labels if compiled is not None else (stored.labels if stored else {})
        )
        target = compiled.target_name if compiled is not None else (stored.target if stored else "")
        row = CheckRow(
            name=name,
            target=target,
            labels=labels,
            status=status_word(newest.status if newest else None),
            since=since.get(name) if newest else None,
            at=newest.at if newest else None,
            message=shorten(newest.message, OVERVIEW_MESSAGE_CHARS) if newest else "",
            strip=strip,
            uptime={
                period: percent_text(
                    figures.uptime_percent if (figures := by_check.get(name)) else None
                )
                for period, by_check in uptime.items()
            },
        )
        cache[name] = (inputs, row)
        rows.append(row)
    for gone in set(cache) - names:
        cache.pop(gone, None)
    keys = label_keys(loaded, (row.labels for row in rows))
    values: dict[str, set[str]] = {}
    for row in rows:
        for key, value in row.labels.items():
            values.setdefault(key, set()).add(value)
    group_by = wanted.group_by if wanted.group_by in keys else default_group_key(keys)
    shown = [row for row in rows if wanted.admits(row)]
    grouped: dict[str, list[CheckRow]] = {}
    for row in shown:
        grouped.setdefault(row.labels.get(group_by, NO_LABEL) if group_by else "all", []).append(
            row
        )
    order = {"critical": 0, "unknown": 1, "warning": 2, "none": 3, "ok": 4}
    groups = []
    for value in sorted(grouped, key=lambda text: (text == NO_LABEL, text)):
        members = sorted(grouped[value], key=lambda row: (order[row.status], row.name))
        counts: dict[str, int] = {}
        for row in members:
            counts[row.status] = counts.get(row.status, 0) + 1
        groups.append(Group(group_by, value, members, group_health(members), counts))
    totals: dict[str, int] = {}
    for row in rows:
        totals[row.status] = totals.get(row.status, 0) + 1
    return Overview(
        groups=groups,
        group_by=group_by,
        label_keys=keys,
        label_values={key: sorted(found) for key, found in values.items()},
        total=len(rows),
        shown=len(shown),
        counts=totals,
        cursor=cursor,
    )


# --- a check's page -------------------------------------------------------------------------


def known_metrics(check: CompiledCheck | None, seen: Iterable[Mapping[str, Any]]) -> list[str]:
    """Given a check (None: no longer configured) and metrics of its stored results, return
    the numeric metrics a chart can show: ``duration_ms`` (every result has it), the
    probe's declared numeric metrics, and numbers seen in results (a plugin's perfdata)."""
    names = {"duration_ms"}
    if check is not None:
        names.update(
            spec.name
            for spec in check.probe.metrics_for(check.params) or check.probe.metrics
            if spec.type == "number"
        )
    for metrics in seen:
        names.update(
            name
            for name, value in metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        )
    return sorted(names)


def default_metric(check: CompiledCheck | None, recent: Sequence[StoredResult]) -> str:
    """Given a check and its recent results (newest first), return the metric its page
    charts unless asked for another: the one its conditions compare (crit's first), else
    the first numeric metric its newest result has, else ``duration_ms``."""
    for condition in (check.crit, check.warn) if check is not None else ():
        if condition is not None and condition.metric_names:
            return sorted(condition.metric_names)[0]
    for result in recent[:1]:
        for name, value in sorted(result.metrics.items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                return name
    return "duration_ms"


_WORD = re.compile(r"\b(or|not)\b")


def _literal_value(kind: str, text: str, metric: str) -> float | None:
    """Given a literal's kind and text and the metric it is compared with, return the value
    the condition compares with, in the metric's unit; None for a text or boolean."""
    from upkeep.config.conditions import SIZE_FACTORS
    from upkeep.core.durations import parse_duration
    from upkeep.probes.base import metric_unit

    if kind == "number":
        return float(text)
    if kind == "duration":
        seconds = parse_duration(text).total_seconds()
        unit = metric_unit(metric)
        return seconds * 1000 if unit == "ms" else seconds / 86400 if unit == "days" else seconds
    if kind == "size":
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]+)", text)
        if match is None or match.group(2) not in SIZE_FACTORS:
            return None
        return float(match.group(1)) * SIZE_FACTORS[match.group(2)]
    return None


def thresholds(check: CompiledCheck | None, metric: str) -> list[Threshold]:
    """Given a check and one of its metrics, return the warn and crit thresholds to draw:
    one line per comparison of a condition that only compares that metric with literals
    (``latency_ms > 500``, ``80 < used_percent <= 90``); a condition combining metrics or
    using ``or``/``not`` draws nothing (a single line would misstate it)."""
    if check is None:
        return []
    drawn: list[Threshold] = []
    for label, colour, condition in (
        ("warn", WARNING_COLOUR, check.warn),
        ("crit", CRITICAL_COLOUR, check.crit),
    ):
        if condition is None or condition.metric_names != frozenset({metric}):
            continue
        if _WORD.search(condition.source) or not condition.comparisons:
            continue
        values: list[float] = []
        for comparison in condition.comparisons:
            sides = (comparison.left, comparison.right)
            metrics = [side for side in sides if side.kind == "metric"]
            literals = [side for side in sides if side.kind != "metric"]
            if len(metrics) != 1 or len(literals) != 1:
                values = []
                break
            value = _literal_value(literals[0].kind, literals[0].text, metric)
            if value is None:
                values = []
                break
            values.append(value)
        drawn.extend(Threshold(value, label, colour) for value in values)
    return drawn


def metric_series(
    store: Store, check: str, metric: str, since: datetime, until: datetime, *, limit: int = 5000
) -> tuple[list[datetime], list[float]]:
    """Given a store, a check, one of its metrics and a period, return the metric's points
    oldest first: raw results where they are kept, hourly rollup averages before them."""
    results = store.history(check, since=since, until=until, limit=limit)
    times: list[datetime] = []
    values: list[float] = []
    oldest_raw = results[-1].at if results else until
    for row in store.rollups(check):
        start = row["bucket_start"]
        if since <= start < oldest_raw:
            value = (
                row["duration_ms_avg"]
                if metric == "duration_ms"
                else (row["metrics"].get(metric) or {}).get("avg")
            )
            if isinstance(value, int | float):
                times.append(start)
                values.append(float(value))
    for result in reversed(results):
        value = result.duration_ms if metric == "duration_ms" else result.metrics.get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            times.append(result.at)
            values.append(float(value))
    return times, values


# --- silences --------------------------------------------------------------------------------


def silences_covering(
    check: CompiledCheck | None, name: str, silences: Iterable[Silence], now: datetime
) -> list[Silence]:
    """Given a check (its name if no longer configured) and the silences, return those
    active now whose matchers select it (a ``status`` matcher is ignored)."""
    facts = (
        AlertFacts(check.name, check.target_name, check.severity, "", check.labels)
        if check is not None
        else AlertFacts(name, "", "", "", {})
    )
    return [
        silence
        for silence in silences
        if silence.active(now)
        and silence_matches(
            {key: value for key, value in silence.matchers.items() if key != "status"}, facts
        )
    ]


# --- backups ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceView:
    """One backup source: its newest backup, newest verification, last drill against the
    objectives."""

    name: str
    newest: BackupRecord | None
    verification: BackupEvent | None
    drill: BackupEvent | None
    rto_objective_s: float | None
    rpo_objective_s: float | None

    @property
    def rto_s(self) -> float | None:
        """Return the last drill's measured RTO in seconds, if any."""
        return _number(self.drill.detail.get("rto_s")) if self.drill else None

    @property
    def rpo_s(self) -> float | None:
        """Return the last drill's measured RPO in seconds, if any."""
        return _number(self.drill.detail.get("rpo_s")) if self.drill else None

    @property
    def rto_met(self) -> bool | None:
        """Return whether the last drill met the RTO objective (None: unknown)."""
        return _met(self.rto_s, self.rto_objective_s)

    @property
    def rpo_met(self) -> bool | None:
        """Return whether the last drill met the RPO objective (None: unknown)."""
        return _met(self.rpo_s, self.rpo_objective_s)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _met(measured: float | None, objective: float | None) -> bool | None:
    if measured is None or objective is None:
        return None
    return measured <= objective


def backup_sources(loaded: LoadedConfig, store: Store) -> list[SourceView]:
    """Given the config and its store, return every configured backup source (and any
    source the catalog still has records of), sorted by name."""
    from upkeep.store.backups import BackupEventKind, BackupStatus

    configured = loaded.config.backups.sources
    records = store.backups.records(limit=2000)
    names = sorted(set(configured) | {record.source for record in records})
    views: list[SourceView] = []
    for name in names:
        newest = next(
            (
                record
                for record in records
                if record.source == name and record.status == BackupStatus.OK
            ),
            None,
        )
        verification = store.backups.events(source=name, kind=BackupEventKind.VERIFY, limit=1)
        drills = store.backups.events(source=name, kind=BackupEventKind.DRILL, limit=1)
        drill = drills[0] if drills else None
        source = configured.get(name)
        rto = source.rto.total_seconds() if source is not None and source.rto else None
        rpo = source.rpo.total_seconds() if source is not None and source.rpo else None
        if drill is not None:
            rto = rto if rto is not None else _number(drill.detail.get("rto_objective_s"))
            rpo = rpo if rpo is not None else _number(drill.detail.get("rpo_objective_s"))
        views.append(
            SourceView(
                name,
                newest,
                verification[0] if verification else None,
                drill,
                rto,
                rpo,
            )
        )
    return views


def open_alert_ids(engine: Engine) -> dict[str, int]:
    """Given a store's engine, return the open alert's id of each check that has one."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(alerts.c.check, alerts.c.id).where(and_(alerts.c.active.is_not(None)))
        ).all()
    return {row.check: int(row.id) for row in rows}


# --- runbooks and windows ----------------------------------------------------------------------


@dataclass(frozen=True)
class Firing:
    """A runbook's next scheduled firing, and what its window does to it."""

    runbook: str
    at: datetime
    note: str


def next_firings(
    loaded: LoadedConfig, store: Store, now: datetime, count: int = 3
) -> dict[str, list[Firing]]:
    """Given the config, its store, the time and how many, return each scheduled runbook's
    next firings (as ``upkeep schedule`` lists them: a closed window defers or drops one)."""
    from zoneinfo import ZoneInfo

    from upkeep.alerting.windows import WindowCalendar
    from upkeep.config.schedule import CronSchedule

    config = loaded.config
    calendar = WindowCalendar(config, store.runs.list_windows(ending_after=now))
    found: dict[str, list[Firing]] = {}
    for name, runbook in config.runbooks.items():
        if runbook.schedule is None:
            continue
        schedule = CronSchedule(runbook.schedule, ZoneInfo(runbook.timezone or config.timezone))
        moment = now
        firings: list[Firing] = []
        for _ in range(count):
            moment = schedule.next_after(moment)
            note = ""
            if runbook.window is not None and not calendar.is_open(runbook.window, moment):
                opening = calendar.next_opening(runbook.window, moment)
                note = (
                    f"window {runbook.window} closed: deferred to {opening.start.isoformat()}"
                    if opening
                    else f"window {runbook.window} never opens: will be missed"
                )
            firings.append(Firing(name, moment, note))
        found[name] = firings
    return found
