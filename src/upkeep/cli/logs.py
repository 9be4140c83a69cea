"""``upkeep logs analyze``: levels, patterns, security events and access-log figures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from upkeep.cli.common import print_json
from upkeep.cli.runbooks import EXIT_USAGE, _err, _load

if TYPE_CHECKING:
    from upkeep.analysis.logs import Analysis, Format


def _paths(config_path: Path | None, paths: list[Path], target: str | None) -> list[Path] | None:
    if target is None:
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            _err(f"no such file: {', '.join(missing)}")
            return None
        return paths
    loaded = _load(config_path)
    if loaded is None:
        return None
    from upkeep.probes.logs import LogsTarget

    found = loaded.config.targets.get(target)
    if not isinstance(found, LogsTarget):
        _err(f"no logs target named {target!r}")
        return None
    root = Path(found.path)
    if root.is_file():
        return [root]
    return sorted(path for path in root.glob(found.pattern) if path.is_file())


def analyze_logs(
    config_path: Path | None,
    paths: list[Path],
    *,
    target: str | None,
    log_format: str,
    patterns: list[str],
    since: str | None,
    top: int,
    json_output: bool,
) -> int:
    """Analyze log files (or a logs target's files) and print the findings; return 0, or 2
    on bad input."""
    from upkeep.analysis.logs import analyze
    from upkeep.config.durations import parse_duration

    files = _paths(config_path, paths, target)
    if files is None:
        return EXIT_USAGE
    if not files:
        _err("no log files to analyze")
        return EXIT_USAGE
    try:
        start = datetime.now(UTC) - parse_duration(since) if since else None
    except ValueError as error:
        _err(str(error))
        return EXIT_USAGE
    formats: dict[str, Format] = {
        "auto": "auto",
        "combined": "combined",
        "json": "json",
        "plain": "plain",
    }
    if log_format not in formats:
        _err(f"--format is auto, combined, json or plain, not {log_format!r}")
        return EXIT_USAGE
    result = analyze(files, log_format=formats[log_format], patterns=patterns, since=start)
    if json_output:
        print_json(result.to_json(top))
        return 0
    _print(result, top)
    return 0


def _print(result: Analysis, top: int) -> None:
    from rich.table import Table

    from upkeep.analysis.logs import sparkline
    from upkeep.cli.common import console

    out = console()
    formats = ", ".join(f"{count} {name}" for name, count in result.formats.items())
    out.print(
        f"{result.lines} lines in {sum(result.formats.values())} file(s) ({formats})", markup=False
    )
    for title, counter in (
        ("levels", result.levels),
        ("patterns", result.patterns),
        ("security events", result.security),
    ):
        if counter:
            out.print(
                f"{title}: "
                + ", ".join(f"{name} {count}" for name, count in counter.most_common()),
                markup=False,
            )
    if not result.endpoints:
        return
    table = Table(title="endpoints (busiest first)")
    for column in ("endpoint", "requests", "5xx %", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    busiest = sorted(result.endpoints.items(), key=lambda item: -item[1].requests)[:top]
    for name, figures in busiest:
        summary = figures.summary()
        table.add_row(
            name,
            str(summary["requests"]),
            f"{summary['error_rate_percent']:.2f}",
            *(
                str(summary[key]) if summary[key] is not None else "-"
                for key in ("p50_ms", "p95_ms", "p99_ms")
            ),
        )
    out.print(table)
    if result.bins:
        ordered = sorted(result.bins.items())
        counts = [figures.requests for _, figures in ordered]
        out.print(
            f"requests per 5 min, {ordered[0][0]:%Y-%m-%d %H:%M} to {ordered[-1][0]:%H:%M} UTC: "
            f"{sparkline(counts)} (max {max(counts)})",
            markup=False,
        )
