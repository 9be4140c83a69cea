"""Aggregates over a period, computed by the database: per-check result counts and latency
percentiles, per-runbook run counts and durations, approvals, and each check's latest
metrics.

Reports cover up to a quarter of history for thousands of checks, so nothing here loads
raw rows into Python: counts, sums and extremes are ``GROUP BY`` queries, and percentiles
are picked by a window function (``ROW_NUMBER() OVER (PARTITION BY check ORDER BY
duration)``), which both SQLite and PostgreSQL run with their own sort (spilling to disk,
not to our memory). Hourly rollups (results older than ``retention.results``) add their
counts, average and maximum; they keep no percentiles, so a period covered only by
rollups has none.

Percentiles follow the same nearest-rank rule as the log analyzer
(``analysis.logs.EndpointFigures.summary``): of ``n`` values in order, the ``q`` quantile
is the one at index ``min(n - 1, floor(q * n))``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, case, func, literal, or_, select

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
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    """Percentiles of the raw results only (None when the period holds none)."""

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
        }


def _rank(total: Any, percent: int) -> Any:
    """Return the 1-based position of the ``percent`` quantile among ``total`` ordered
    values, as SQL: ``min(total, floor(percent * total / 100) + 1)`` in integers."""
    position = (total * percent) // 100 + 1
    return case((position > total, total), else_=position)


def check_summaries(
    engine: Engine, start: datetime, end: datetime, only: Iterable[str] | None = None
) -> list[CheckSummary]:
    """Given a store's engine, a period ``[start, end)`` and optionally the names of the
    only checks wanted, return a summary of every (wanted) check with results (raw or
    rolled up) in the period, sorted by name. Raise ValueError on a naive datetime."""
    _require_aware(start, end)
    in_period = and_(check_results.c.at >= start, check_results.c.at < end)
    in_rollups = and_(
        result_rollups.c.resolution == "1h",
        result_rollups.c.bucket_start >= start,
        result_rollups.c.bucket_start < end,
    )
    if only is not None:
        wanted = select(checks.c.id).where(checks.c.name.in_(list(only)))
        in_period = and_(in_period, check_results.c.check_id.in_(wanted))
        in_rollups = and_(in_rollups, result_rollups.c.check_id.in_(wanted))
    status = check_results.c.status
    counted = select(
        check_results.c.check_id,
        func.count().label("results"),
        func.sum(case((status == 0, 1), else_=0)).label("ok"),
        func.sum(case((status == 1, 1), else_=0)).label("warning"),
        func.sum(case((status == 2, 1), else_=0)).label("critical"),
        func.sum(case((status == 3, 1), else_=0)).label("unknown"),
        func.sum(check_results.c.duration_ms).label("duration_sum"),
        func.max(check_results.c.duration_ms).label("duration_max"),
    ).where(in_period)
    counted = counted.group_by(check_results.c.check_id)
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
    ordered = (
        select(
            check_results.c.check_id,
            check_results.c.duration_ms,
            func.row_number()
            .over(partition_by=check_results.c.check_id, order_by=check_results.c.duration_ms)
            .label("position"),
            func.count().over(partition_by=check_results.c.check_id).label("total"),
        )
        .where(in_period)
        .subquery()
    )
    picked = select(
        ordered.c.check_id, ordered.c.duration_ms, ordered.c.position, ordered.c.total
    ).where(or_(*(ordered.c.position == _rank(ordered.c.total, share) for share in PERCENTILES)))
    names = select(checks.c.id, checks.c.name, checks.c.target, checks.c.probe)
    totals: dict[int, list[float]] = {}
    percentiles: dict[int, dict[int, float]] = {}
    with engine.connect() as connection:
        known = {row.id: row for row in connection.execute(names)}
        for query in (counted, rolled):
            for row in connection.execute(query):
                into = totals.setdefault(int(row.check_id), [0, 0, 0, 0, 0, 0.0, -1.0])
                for index, value in enumerate(
                    (row.results, row.ok, row.warning, row.critical, row.unknown)
                ):
                    into[index] += int(value or 0)
                into[5] += float(row.duration_sum or 0.0)
                into[6] = max(
                    into[6], float(row.duration_max if row.duration_max is not None else -1)
                )
        for row in connection.execute(picked):
            total = int(row.total)
            found = percentiles.setdefault(int(row.check_id), {})
            for share in PERCENTILES:
                if int(row.position) == min(total, (total * share) // 100 + 1):
                    found[share] = round(float(row.duration_ms), 3)
    summaries: list[CheckSummary] = []
    for check_id, (
        results,
        ok,
        warning,
        critical,
        unknown,
        duration_sum,
        duration_max,
    ) in totals.items():
        named = known.get(check_id)
        if named is None or not results:
            continue
        marks = percentiles.get(check_id, {})
        summaries.append(
            CheckSummary(
                check=named.name,
                target=named.target,
                probe=named.probe,
                results=int(results),
                ok=int(ok),
                warning=int(warning),
                critical=int(critical),
                unknown=int(unknown),
                duration_ms_avg=round(duration_sum / results, 3),
                duration_ms_max=round(duration_max, 3) if duration_max >= 0 else None,
                p50_ms=marks.get(50),
                p95_ms=marks.get(95),
                p99_ms=marks.get(99),
            )
        )
    return sorted(summaries, key=lambda summary: summary.check)


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
