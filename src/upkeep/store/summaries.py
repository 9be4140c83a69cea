"""Aggregates over a period, computed by the database: per-check result counts and latency
percentiles, per-runbook run counts and durations, approvals, and each check's latest
metrics.

Reports cover up to a quarter of history for thousands of checks, so nothing here loads
a period's raw results: counts, sums, extremes and a run-time histogram are ``GROUP BY``
queries (see ``check_summaries``), and exact percentiles are read for the few checks a
report shows, one check's period at a time. Hourly
rollups (results older than ``retention.results``) add their counts, average and
maximum; they keep no percentiles, so a period covered only by rollups has none.

Percentiles follow the same nearest-rank rule as the log analyzer
(``analysis.logs.EndpointFigures.summary``): of ``n`` values in order, the ``q`` quantile
is the one at index ``min(n - 1, floor(q * n))``.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.exc import DBAPIError

from upkeep.store.schema import check_results, checks, result_rollups, run_steps, runs

PERCENTILES = (50, 95, 99)
"""The latency percentiles a check summary holds."""


def _require_aware(*moments: datetime) -> None:
    for moment in moments:
        if moment.tzinfo is None:
            raise ValueError("naive datetime given to a summary; use aware ones")


@dataclass(frozen=True)
class CheckSummary:
    """What one check did in a period: results by status, and its run time in ms."""

    check: str
    target: str
    probe: str
    results: int
    ok: int
    warning: int
    critical: int
    unknown: int
    duration_ms_avg: float | None
    duration_ms_max: float | None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    """Exact percentiles of the raw results, once ``with_percentiles`` filled them in (None
    before, and when the period holds no raw result)."""
    raw_results: int = 0
    """How many of ``results`` are raw results (the rest are rolled up)."""
    p95_bounds: tuple[float, float] | None = None
    """``[low, high)`` holding the p95 of the raw results, from the histogram (None
    without raw results)."""

    @property
    def failures(self) -> int:
        """Return the results that were not ok (warning, critical or unknown)."""
        return self.warning + self.critical + self.unknown

    def to_json(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data."""
        return {
            "check": self.check,
            "target": self.target,
            "probe": self.probe,
            "results": self.results,
            "ok": self.ok,
            "warning": self.warning,
            "critical": self.critical,
            "unknown": self.unknown,
            "failures": self.failures,
            "duration_ms_avg": self.duration_ms_avg,
            "duration_ms_max": self.duration_ms_max,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "raw_results": self.raw_results,
        }


def _nearest_rank(ordered: Sequence[float], percent: int) -> float | None:
    """Given values in order and a percent, return the value at index ``min(n - 1,
    floor(percent * n / 100))`` (the log analyzer's rule), or None without values."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, len(ordered) * percent // 100)], 3)


LOG_STEPS = 20
"""Histogram buckets per factor e of ``run time + 1 ms``: each about 5 % wide."""
_WIDEN = 1e-6
"""Bucket bounds are widened by this share against float rounding in either database."""


def _bucket_bounds(first: int, second: str) -> tuple[float, float]:
    """Given a histogram bucket as the query names it, return the ``[low, high)`` in ms
    it stands for (widened by ``_WIDEN``).

    With logarithms (PostgreSQL; SQLite built with its math functions) the bucket is
    ``first = floor(ln(ms + 1) * LOG_STEPS)`` and ``second`` is empty; without, it is the
    digit count (``first``) and the first two digits (``second``) of the time in
    hundredths of a millisecond, at most 10 % wide.
    """
    if not second:
        low = math.exp(first / LOG_STEPS) - 1
        high = math.exp((first + 1) / LOG_STEPS) - 1
        return max(0.0, low - (low + 1) * _WIDEN), high + (high + 1) * _WIDEN
    lead = int(second)
    scale = 10 ** max(0, first - 2)
    return lead * scale / 100 * (1 - _WIDEN), (lead + 1) * scale / 100 * (1 + _WIDEN)


_LOGARITHMS: dict[str, bool] = {}


def _has_logarithms(engine: Engine) -> bool:
    """Return whether the database has ``ln`` (PostgreSQL; SQLite only when built with
    its math functions), asking once per database."""
    key = str(engine.url)
    if key not in _LOGARITHMS:
        try:
            with engine.connect() as connection:
                connection.execute(select(func.ln(1.0))).scalar()
            _LOGARITHMS[key] = True
        except DBAPIError:
            _LOGARITHMS[key] = False
    return _LOGARITHMS[key]


def check_summaries(
    engine: Engine, start: datetime, end: datetime, only: Iterable[str] | None = None
) -> list[CheckSummary]:
    """Given a store's engine, a period ``[start, end)`` and optionally the names of the
    only checks wanted, return a summary of every (wanted) check with results (raw or
    rolled up) in the period, sorted by name: counts, average and longest run time, and
    the bounds of its p95; exact percentiles are ``with_percentiles``' work. Raise
    ValueError on a naive datetime.

    One ``GROUP BY`` pass over the period's raw results (along the time index) counts them
    per check and per histogram bucket of the run time (``_bucket_bounds``: about 5 % wide
    with logarithms, at most 10 % without). Rollups are summed the
    same way. Nothing is sorted and no row reaches Python: a month of 1,000 checks every
    15 minutes is 2.9 million results and a few tens of thousands of buckets.
    """
    _require_aware(start, end)
    in_period = and_(check_results.c.at >= start, check_results.c.at < end)
    in_rollups = and_(
        result_rollups.c.resolution == "1h",
        result_rollups.c.bucket_start >= start,
        result_rollups.c.bucket_start < end,
    )
    names = select(checks.c.id, checks.c.name, checks.c.target, checks.c.probe)
    if only is not None:
        wanted = list(only)
        names = names.where(checks.c.name.in_(wanted))
        ids = select(checks.c.id).where(checks.c.name.in_(wanted))
        in_period = and_(in_period, check_results.c.check_id.in_(ids))
        in_rollups = and_(in_rollups, result_rollups.c.check_id.in_(ids))
    if _has_logarithms(engine):
        # Whole numbers group faster than text: a month of 1,000 checks in two thirds of
        # the time.
        first = cast(func.ln(check_results.c.duration_ms + 1.0) * LOG_STEPS, Integer).label("first")
        second = literal("").label("second")
        group = [check_results.c.check_id, first]
    else:
        hundredths = cast(cast(check_results.c.duration_ms * 100, BigInteger), String)
        first = func.length(hundredths).label("first")
        second = func.substr(hundredths, 1, 2).label("second")
        group = [check_results.c.check_id, first, second]
    status = check_results.c.status
    histogram = (
        select(
            check_results.c.check_id,
            first,
            second,
            func.count().label("results"),
            func.sum(case((status == 0, 1), else_=0)).label("ok"),
            func.sum(case((status == 1, 1), else_=0)).label("warning"),
            func.sum(case((status == 2, 1), else_=0)).label("critical"),
            func.sum(case((status == 3, 1), else_=0)).label("unknown"),
            func.sum(check_results.c.duration_ms).label("duration_sum"),
            func.max(check_results.c.duration_ms).label("duration_max"),
        )
        .where(in_period)
        .group_by(*group)
    )
    rolled = (
        select(
            result_rollups.c.check_id,
            func.sum(result_rollups.c.results).label("results"),
            func.sum(result_rollups.c.ok).label("ok"),
            func.sum(result_rollups.c.warning).label("warning"),
            func.sum(result_rollups.c.critical).label("critical"),
            func.sum(result_rollups.c.unknown).label("unknown"),
            func.sum(result_rollups.c.duration_ms_avg * result_rollups.c.results).label(
                "duration_sum"
            ),
            func.max(result_rollups.c.duration_ms_max).label("duration_max"),
        )
        .where(in_rollups)
        .group_by(result_rollups.c.check_id)
    )
    totals: dict[int, list[float]] = {}
    buckets: dict[int, list[tuple[float, float, int]]] = {}
    with engine.connect() as connection:
        known = {int(row.id): row for row in connection.execute(names)}
        # Tuples, not named rows: a large store has a hundred buckets per check.
        for query, is_raw in ((histogram, True), (rolled, False)):
            for row in connection.execute(query):
                if is_raw:
                    check_id, bucket, part, count, *statuses, duration_sum, duration_max = row
                    low, high = _bucket_bounds(int(bucket), str(part))
                    buckets.setdefault(check_id, []).append((low, high, int(count)))
                else:
                    check_id, count, *statuses, duration_sum, duration_max = row
                into = totals.setdefault(check_id, [0, 0, 0, 0, 0, 0.0, -1.0, 0])
                into[0] += int(count or 0)
                for index, value in enumerate(statuses):
                    into[1 + index] += int(value or 0)
                into[5] += float(duration_sum or 0.0)
                if duration_max is not None and duration_max > into[6]:
                    into[6] = float(duration_max)
                if is_raw:
                    into[7] += int(count)
    summaries: list[CheckSummary] = []
    for check_id, values in totals.items():
        named = known.get(check_id)
        results = int(values[0])
        if named is None or not results:
            continue
        raw = int(values[7])
        summaries.append(
            CheckSummary(
                check=named.name,
                target=named.target,
                probe=named.probe,
                results=results,
                ok=int(values[1]),
                warning=int(values[2]),
                critical=int(values[3]),
                unknown=int(values[4]),
                duration_ms_avg=round(values[5] / results, 3),
                duration_ms_max=round(values[6], 3) if values[6] >= 0 else None,
                raw_results=raw,
                p95_bounds=_bounds_of(buckets.get(check_id, []), raw, 95),
            )
        )
    return sorted(summaries, key=lambda summary: summary.check)


def _bounds_of(
    buckets: list[tuple[float, float, int]], total: int, percent: int
) -> tuple[float, float] | None:
    """Given a check's histogram buckets, its raw result count and a percent, return the
    bounds of the bucket holding that percentile (by the nearest-rank rule)."""
    if not total:
        return None
    position = min(total - 1, total * percent // 100)
    seen = 0
    for low, high, count in sorted(buckets):
        seen += count
        if position < seen:
            return low, high
    return None


def with_percentiles(
    engine: Engine, start: datetime, end: datetime, summaries: Iterable[CheckSummary]
) -> list[CheckSummary]:
    """Given a store's engine, a period and some checks' summaries of it, return them with
    their exact p50, p95 and p99 (the raw results' run times, nearest rank), reading one
    check's period at a time along the ``(check_id, at)`` index. Raise ValueError on a
    naive datetime."""
    _require_aware(start, end)
    durations = (
        select(check_results.c.duration_ms)
        .join(checks, checks.c.id == check_results.c.check_id)
        .where(
            checks.c.name == bindparam("check"),
            check_results.c.at >= start,
            check_results.c.at < end,
        )
        .order_by(check_results.c.duration_ms)
    )
    filled: list[CheckSummary] = []
    with engine.connect() as connection:
        for summary in summaries:
            ordered = array("d", connection.execute(durations, {"check": summary.check}).scalars())
            filled.append(
                replace(
                    summary,
                    p50_ms=_nearest_rank(ordered, 50),
                    p95_ms=_nearest_rank(ordered, 95),
                    p99_ms=_nearest_rank(ordered, 99),
                )
            )
    return filled


def slowest_checks(
    engine: Engine, start: datetime, end: datetime, summaries: Sequence[CheckSummary], top: int
) -> list[CheckSummary]:
    """Given a store's engine, a period, every check's summary of it (``check_summaries``)
    and how many to return, return the ``top`` checks with the highest exact p95 (ties by
    name), with their exact percentiles.

    Exact for the few that can be among them: the ``top``-th highest lower bound of the
    p95 buckets is a floor none of the top falls below, so only checks whose bucket
    reaches above it are read one by one.
    """
    timed = [summary for summary in summaries if summary.p95_bounds is not None]
    if not timed:
        return []
    lows = sorted((summary.p95_bounds or (0.0, 0.0))[0] for summary in timed)
    floor = lows[-min(top, len(lows))]
    candidates = [summary for summary in timed if (summary.p95_bounds or (0.0, 0.0))[1] > floor]
    exact = with_percentiles(engine, start, end, candidates)
    return sorted(exact, key=lambda summary: (-(summary.p95_ms or 0.0), summary.check))[:top]


@dataclass(frozen=True)
class LatestMetrics:
    """A check's last result before a moment: when, its status and its metrics."""

    check: str
    target: str
    at: datetime
    status: int
    metrics: dict[str, Any]


def latest_metrics(engine: Engine, probes: Iterable[str], before: datetime) -> list[LatestMetrics]:
    """Given a store's engine, probe names (``tls.expiry``) and a moment, return the last
    raw result before that moment of every check of those probes, sorted by check. Raise
    ValueError on a naive datetime."""
    _require_aware(before)
    wanted = list(probes)
    if not wanted:
        return []
    earlier = check_results.alias("earlier")
    last_at = (
        select(func.max(earlier.c.at))
        .where(earlier.c.check_id == checks.c.id, earlier.c.at < before)
        .correlate(checks)
        .scalar_subquery()
    )
    query = (
        select(
            checks.c.name,
            checks.c.target,
            check_results.c.at,
            check_results.c.status,
            check_results.c.metrics,
        )
        .join(check_results, check_results.c.check_id == checks.c.id)
        .where(checks.c.probe.in_(wanted), check_results.c.at == last_at)
        .order_by(checks.c.name, check_results.c.id.desc())
    )
    found: dict[str, LatestMetrics] = {}
    with engine.connect() as connection:
        for row in connection.execute(query):
            # Two results at the same instant: the last written (highest id) is the latest.
            found.setdefault(
                row.name,
                LatestMetrics(
                    row.name, row.target, row.at, int(row.status), dict(row.metrics or {})
                ),
            )
    return list(found.values())


@dataclass(frozen=True)
class RunbookSummary:
    """What one runbook's runs (dry runs left out) came to in a period."""

    runbook: str
    runs: int
    by_status: dict[str, int]
    duration_s_avg: float | None
    duration_s_max: float | None
    approved: int
    rejected: int
    expired: int

    def to_json(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data."""
        return {
            "runbook": self.runbook,
            "runs": self.runs,
            "by_status": dict(sorted(self.by_status.items())),
            "duration_s_avg": self.duration_s_avg,
            "duration_s_max": self.duration_s_max,
            "approved": self.approved,
            "rejected": self.rejected,
            "expired": self.expired,
        }


def runbook_summaries(engine: Engine, start: datetime, end: datetime) -> list[RunbookSummary]:
    """Given a store's engine and a period ``[start, end)``, return each runbook's runs
    that started in it (not dry runs): counts per status, average and longest duration of
    the finished ones, and its approval steps' decisions (an approval step that timed out
    counts as expired), sorted by runbook. Raise ValueError on a naive datetime."""
    _require_aware(start, end)
    started_here = and_(
        runs.c.started_at >= start, runs.c.started_at < end, runs.c.dry_run == literal(False)
    )
    counts = (
        select(runs.c.runbook, runs.c.status, func.count().label("runs"))
        .where(started_here)
        .group_by(runs.c.runbook, runs.c.status)
    )
    durations = select(runs.c.runbook, runs.c.started_at, runs.c.finished_at).where(
        started_here, runs.c.finished_at.is_not(None)
    )
    approvals = (
        select(
            runs.c.runbook,
            run_steps.c.decision,
            run_steps.c.status,
            func.count().label("steps"),
        )
        .join(run_steps, run_steps.c.run_id == runs.c.id)
        .where(started_here, run_steps.c.kind == "approval")
        .group_by(runs.c.runbook, run_steps.c.decision, run_steps.c.status)
    )
    by_runbook: dict[str, dict[str, int]] = {}
    spans: dict[str, list[float]] = {}
    decided: dict[str, list[int]] = {}
    with engine.connect() as connection:
        for row in connection.execute(counts):
            by_runbook.setdefault(row.runbook, {})[row.status] = int(row.runs)
        # Finished runs' start and end only: two timestamps per run, and runs are rare
        # next to results (a schedule of minutes at most).
        for row in connection.execute(durations):
            spans.setdefault(row.runbook, []).append(
                (row.finished_at - row.started_at).total_seconds()
            )
        for row in connection.execute(approvals):
            tally = decided.setdefault(row.runbook, [0, 0, 0])
            if row.decision == "approved":
                tally[0] += int(row.steps)
            elif row.decision == "rejected":
                tally[1] += int(row.steps)
            elif row.status == "expired":
                tally[2] += int(row.steps)
    summaries = []
    for runbook in sorted(by_runbook):
        taken = spans.get(runbook, [])
        approved, rejected, expired = decided.get(runbook, [0, 0, 0])
        summaries.append(
            RunbookSummary(
                runbook=runbook,
                runs=sum(by_runbook[runbook].values()),
                by_status=by_runbook[runbook],
                duration_s_avg=round(sum(taken) / len(taken), 3) if taken else None,
                duration_s_max=round(max(taken), 3) if taken else None,
                approved=approved,
                rejected=rejected,
                expired=expired,
            )
        )
    return summaries
