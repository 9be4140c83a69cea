"""Logs: per ``logs`` target, the period's lines, errors, requests, 5xx rate and p95 per
endpoint, from the same analyzer as ``upkeep logs analyze`` (``analysis.logs.analyze``).

Reading is bounded: only files modified since the period began are read (an older file
holds nothing of the period), newest first, up to ``MAX_BYTES_PER_TARGET`` of them per
target; what was left out is said.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from upkeep.core.text import format_bytes
from upkeep.reports.model import SectionData, SectionKind, Table
from upkeep.reports.sections.common import milliseconds

if TYPE_CHECKING:
    from upkeep.probes.logs import LogFile
    from upkeep.reports.model import ReportContext

MAX_BYTES_PER_TARGET = 2 * 1024**3
"""At most this many bytes of one target's files are read for one report."""
ERROR_LEVELS = ("ERROR", "CRITICAL")
"""The analyzer's level names that count as errors."""


def collect(context: ReportContext) -> SectionData | None:
    """Given the report's context, return each logs target's figures, or None when the
    config has no logs target."""
    from upkeep.analysis.logs import analyze
    from upkeep.probes.base import TargetUnreachable
    from upkeep.probes.logs import LogsTarget, list_log_files, target_directory

    targets = {
        name: target
        for name, target in context.loaded.config.targets.items()
        if isinstance(target, LogsTarget)
    }
    if not targets:
        return None
    period = context.period
    top = context.loaded.config.reports.top
    rows: list[tuple[str, ...]] = []
    endpoint_rows: list[tuple[str, ...]] = []
    per_target: list[dict[str, Any]] = []
    data = SectionData()
    for name, target in sorted(targets.items()):
        try:
            files = list_log_files(target.path, target.pattern)
        except TargetUnreachable as error:
            data.notes.append(f"{name}: {error}")
            continue
        recent = sorted(
            (log for log in files if log.mtime >= period.start),
            key=lambda log: log.mtime,
            reverse=True,
        )
        chosen: list[LogFile] = []
        budget = MAX_BYTES_PER_TARGET
        for log in recent:
            if log.size > budget:
                data.notes.append(
                    f"{name}: {len(recent) - len(chosen)} older file(s) not read "
                    f"(over {format_bytes(MAX_BYTES_PER_TARGET)})"
                )
                break
            chosen.append(log)
            budget -= log.size
        try:
            found = analyze(
                [log.path for log in chosen],
                since=period.start,
                until=period.end,
                below=target_directory(files),
            )
        except OSError as error:
            data.notes.append(f"{name}: cannot read {error.filename}: {error.strerror}")
            continue
        summary = found.to_json(top)
        errors = sum(found.levels.get(level, 0) for level in ERROR_LEVELS)
        requests = int(summary["requests"])
        server_errors = sum(count for status, count in found.statuses.items() if status >= 500)
        rate = round(100 * server_errors / requests, 3) if requests else None
        rows.append(
            (
                name,
                f"{found.lines:,}",
                f"{errors:,}",
                f"{requests:,}",
                f"{server_errors:,}",
                "-" if rate is None else f"{rate:.2f}%",
            )
        )
        endpoints = summary["endpoints"]
        for endpoint, figures in endpoints.items():
            endpoint_rows.append(
                (
                    name,
                    endpoint,
                    f"{figures['requests']:,}",
                    f"{figures['error_rate_percent']:.2f}%",
                    milliseconds(figures["p50_ms"]),
                    milliseconds(figures["p95_ms"]),
                    milliseconds(figures["p99_ms"]),
                )
            )
        per_target.append(
            {
                "target": name,
                "files": len(chosen),
                "lines": found.lines,
                "errors": errors,
                "levels": summary["levels"],
                "requests": requests,
                "server_errors": server_errors,
                "server_error_rate_percent": rate,
                "endpoints": endpoints,
            }
        )
    data.headline = [
        ("logs targets", str(len(targets))),
        ("error lines", f"{sum(item['errors'] for item in per_target):,}"),
        ("requests", f"{sum(item['requests'] for item in per_target):,}"),
    ]
    data.tables = [
        Table(
            "Per target",
            (
                ("target", "left"),
                ("lines", "right"),
                ("errors", "right"),
                ("requests", "right"),
                ("5xx", "right"),
                ("5xx rate", "right"),
            ),
            rows,
        ),
        Table(
            "Busiest endpoints",
            (
                ("target", "left"),
                ("endpoint", "left"),
                ("requests", "right"),
                ("5xx", "right"),
                ("p50", "right"),
                ("p95", "right"),
                ("p99", "right"),
            ),
            endpoint_rows,
            empty="no access-log lines in this period",
        ),
    ]
    data.figures = {"targets": per_target}
    return data


SECTION = SectionKind("logs", "Logs", collect)
