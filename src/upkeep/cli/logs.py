"""``upkeep logs analyze``: levels, patterns, security events and access-log figures;
``upkeep logs rotate|retain``: the log tasks now, outside a runbook."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from upkeep.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    load_for_command,
    print_error,
    print_json,
    print_problems,
)
from upkeep.cli.output import untrusted

if TYPE_CHECKING:
    from upkeep.analysis.logs import Analysis, EndpointFigures, Format
    from upkeep.config.loader import LoadedConfig


def _paths(
    config_path: Path | None, paths: list[Path], target: str | None
) -> tuple[list[Path], Path | None, tzinfo] | None:
    """Return the files to analyze, for a target's the directory they were found in
    (opened through it, see ``open_log``), and the zone to show times in (the config's
    for a target, else UTC: files named on the command line need no config); None after
    saying what is wrong."""
    if target is None:
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            print_error(f"no such file: {', '.join(missing)}")
            return None
        # Paths typed by the operator are theirs to follow; files found in a target's
        # directory are not (see list_log_files).
        return [path.resolve() for path in paths], None, UTC
    loaded = load_for_command(config_path)
    if loaded is None:
        return None
    from upkeep.probes.logs import LogsTarget

    found = loaded.config.targets.get(target)
    if not isinstance(found, LogsTarget):
        logs_targets = {
            name: each
            for name, each in loaded.config.targets.items()
            if isinstance(each, LogsTarget)
        }
        print_problems(_not_logs_targets(loaded, [target], logs_targets))
        return None
    from upkeep.probes.base import TargetUnreachable
    from upkeep.probes.logs import list_log_files, target_directory

    try:
        files = list_log_files(found.path, found.pattern)
        return (
            [log.path for log in files],
            target_directory(files),
            ZoneInfo(loaded.config.timezone),
        )
    except TargetUnreachable as error:
        print_error(str(error))
        return None


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
    """Analyze log files (or a logs target's files) and print the findings; return 0, 1 if
    a file cannot be read safely (swapped for a link since it was listed), or 2 on bad
    input."""
    from upkeep.analysis.logs import analyze
    from upkeep.core.durations import parse_duration

    found = _paths(config_path, paths, target)
    if found is None:
        return EXIT_USAGE
    files, below, zone = found
    if not files:
        print_error("no log files to analyze")
        return EXIT_USAGE
    try:
        start = datetime.now(UTC) - parse_duration(since) if since else None
    except ValueError as error:
        print_error(str(error))
        return EXIT_USAGE
    formats: dict[str, Format] = {
        "auto": "auto",
        "combined": "combined",
        "json": "json",
        "plain": "plain",
    }
    if log_format not in formats:
        print_error(f"--format is auto, combined, json or plain, not {log_format!r}")
        return EXIT_USAGE
    try:
        result = analyze(
            files, log_format=formats[log_format], patterns=patterns, since=start, below=below
        )
    except OSError as error:
        # A file swapped for a link (or a directory on its way) since it was listed.
        print_error(f"cannot read {error.filename}: {error.strerror}")
        return EXIT_FAILED
    if json_output:
        print_json(result.to_json(top))
        return 0
    _print(result, top, zone)
    return 0


def _print(result: Analysis, top: int, zone: tzinfo = UTC) -> None:
    from upkeep.analysis.logs import EndpointFigures, sparkline
    from upkeep.cli.common import console, local_time
    from upkeep.cli.output import Column, print_table

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
            # Names come from the log lines themselves: escaped, on one line.
            out.print(
                untrusted(
                    f"{title}: "
                    + ", ".join(f"{name} {count}" for name, count in counter.most_common()),
                    one_line=True,
                )
            )
    if not result.endpoints:
        return
    columns = [Column("endpoint")] + [
        Column(header, "number")
        for header in ("requests", "5xx", "5xx %", "p50 ms", "p95 ms", "p99 ms")
    ]
    busiest = sorted(result.endpoints.items(), key=lambda item: -item[1].requests)[:top]
    rows = [(name, *_figures_cells(figures)) for name, figures in busiest]
    if len(result.endpoints) > 1:
        total = EndpointFigures()
        for figures in result.endpoints.values():
            total.requests += figures.requests
            total.errors += figures.errors
            total.times_ms.extend(figures.times_ms)
        rows.append((f"all {len(result.endpoints)} endpoints", *_figures_cells(total)))
    print_table(out, columns, rows, title="endpoints (busiest first)")
    if result.bins:
        ordered = sorted(result.bins.items())
        counts = [figures.requests for _, figures in ordered]
        line = (
            f"requests per 5 min, {local_time(ordered[0][0], zone)} to "
            f"{local_time(ordered[-1][0], zone)}: {sparkline(counts)} (max {max(counts)})"
        )
        summaries = [(start, figures.summary()) for start, figures in ordered]
        worst_rate = max(summaries, key=lambda item: item[1]["error_rate_percent"])
        if worst_rate[1]["errors"]:
            line += (
                f"; worst 5xx rate {worst_rate[1]['error_rate_percent']:.2f}% "
                f"from {worst_rate[0].astimezone(zone):%H:%M}"
            )
        timed = [item for item in summaries if item[1]["p95_ms"] is not None]
        if timed:
            worst_p95 = max(timed, key=lambda item: item[1]["p95_ms"])
            line += (
                f"; worst p95 {_milliseconds(worst_p95[1]['p95_ms'])} ms "
                f"from {worst_p95[0].astimezone(zone):%H:%M}"
            )
        out.print(line, markup=False, soft_wrap=True)


def _milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _figures_cells(figures: EndpointFigures) -> tuple[str, ...]:
    """Given an endpoint's figures, return its cells: requests, 5xx count, 5xx rate and
    p50/p95/p99 in whole milliseconds (``-`` without response times)."""
    summary = figures.summary()
    return (
        str(summary["requests"]),
        str(summary["errors"]),
        f"{summary['error_rate_percent']:.2f}",
        *(_milliseconds(summary[key]) for key in ("p50_ms", "p95_ms", "p99_ms")),
    )


def run_log_task(
    config_path: Path | None,
    task_name: str,
    targets: list[str],
    *,
    dry_run: bool,
    json_output: bool,
) -> int:
    """Run (or with ``dry_run`` plan) ``logs.rotate`` or ``logs.retain`` now on logs targets,
    with the params of the runbook steps that use that task on each target (the task's
    defaults for a rotation no step configures); return 0, 1 if a task failed, 2 on bad input.
    """
    from upkeep.cli.interrupts import run_async
    from upkeep.probes.logs import LogsTarget

    loaded = load_for_command(config_path)
    if loaded is None:
        return EXIT_USAGE
    logs_targets = {
        name: target
        for name, target in loaded.config.targets.items()
        if isinstance(target, LogsTarget)
    }
    problems = _not_logs_targets(loaded, targets, logs_targets)
    if problems:
        for problem in problems:
            print_error(problem)
        return EXIT_USAGE
    jobs = _jobs(loaded, task_name, targets, logs_targets)
    if isinstance(jobs, str):
        print_error(jobs)
        return EXIT_USAGE
    reports = run_async(_run_jobs(loaded, jobs, dry_run=dry_run))
    if json_output:
        print_json({"task": task_name, "dry_run": dry_run, "targets": reports})
    else:
        _print_reports(task_name, reports, dry_run=dry_run)
    return EXIT_FAILED if any(report["status"] == "failed" for report in reports) else 0


def _not_logs_targets(
    loaded: LoadedConfig, names: list[str], logs_targets: dict[str, Any]
) -> list[str]:
    """Given the targets named on the command line, return for each that is no logs target
    what it is instead and which targets are logs (none if all of them are)."""
    known = ", ".join(sorted(logs_targets)) or "none configured"
    problems = []
    for name in names:
        if name in logs_targets:
            continue
        other = loaded.config.targets.get(name)
        what = (
            f"{name} is a target of kind {other.kind}, not logs"
            if other is not None
            else f"no target named {name}"
        )
        problems.append(f"{what}; logs targets: {known}")
    return problems


def _jobs(
    loaded: LoadedConfig, task_name: str, targets: list[str], logs_targets: dict[str, Any]
) -> list[tuple[str, Any, Any]] | str:
    """Return (target name, target, params) to run, one per distinct configured step, or
    why there is nothing to run."""
    from upkeep.tasks.registry import TASK_KINDS

    configured: dict[str, list[Any]] = {}
    for compiled in loaded.tasks.values():
        if compiled.task.name == task_name and compiled.target_name in logs_targets:
            own = configured.setdefault(compiled.target_name, [])
            if all(params != compiled.params for params in own):
                own.append(compiled.params)
    chosen = targets or sorted(configured)
    if not chosen:
        return f"no runbook step uses {task_name}; name a logs target"
    jobs = []
    for name in chosen:
        params_list = configured.get(name)
        if not params_list:
            task_class = TASK_KINDS[task_name]
            try:
                params_list = [task_class.Params.model_validate({})]
            except ValueError:
                return f"no runbook step configures {task_name} for {name}, and it needs params"
        jobs += [(name, logs_targets[name], params) for params in params_list]
    return jobs


async def _run_jobs(
    loaded: LoadedConfig, jobs: list[tuple[str, Any, Any]], *, dry_run: bool
) -> list[dict[str, Any]]:
    from datetime import timedelta

    from upkeep.io.http import HttpClient
    from upkeep.tasks.base import TaskContext, TaskFailed
    from upkeep.tasks.registry import TASK_KINDS

    async def no_checks(name: str) -> Any:
        raise TaskFailed(f"log tasks run no checks (asked for {name})")

    http = HttpClient()
    reports: list[dict[str, Any]] = []
    try:
        context = TaskContext(
            timeout=timedelta(hours=1), http=http, redactor=loaded.redactor, run_check=no_checks
        )
        for name, target, params in jobs:
            task = next(kind() for kind in TASK_KINDS.values() if isinstance(params, kind.Params))
            try:
                if dry_run:
                    plan = await task.plan(target, params, context)
                    result = {"status": "planned", **plan.as_dict(), "message": plan.summary()}
                else:
                    outcome = await task.run(target, params, context)
                    result = {"status": "ok", **outcome.as_dict()}
            except TaskFailed as error:
                result = {"status": "failed", "message": loaded.redactor.redact(str(error))}
            reports.append({"target": name, **result})
    finally:
        await http.close()
    return reports


def _print_reports(task_name: str, reports: list[dict[str, Any]], *, dry_run: bool) -> None:
    from upkeep.cli.common import console

    out = console()
    for report in reports:
        verb = "would" if dry_run else report["status"]
        out.print(
            untrusted(
                f"{task_name} {report['target']}: {verb} — {report.get('message') or ''}",
                one_line=True,
            )
        )
        for change in report.get("changes", []):
            detail = f" ({change['detail']})" if change.get("detail") else ""
            # File names are whatever the directory holds: one escaped line each.
            out.print(untrusted(f"  {change['action']} {change['subject']}{detail}", one_line=True))
