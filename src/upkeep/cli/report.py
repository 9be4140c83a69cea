"""``upkeep report KIND``: a daily, weekly, monthly or quarterly report as HTML, Markdown
or PDF (to stdout or a file), or its figures as JSON."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from upkeep.cli.common import EXIT_FAILED, EXIT_USAGE, config_and_store, print_error, print_json


def write_report_file(path: Path, content: bytes) -> None:
    """Given a path and bytes, write them there atomically (a temporary file in the same
    directory, fsynced, renamed over the name; a link at the name is replaced, never
    followed). Raise OSError if the directory is missing or not writable."""
    from upkeep.io.safefs import Directory

    with Directory.open(path.parent if str(path.parent) else Path()) as directory:
        directory.write_atomic(path.name, content, mode=0o640)


def run_report(
    config_path: Path | None,
    kind: str,
    *,
    since: str | None,
    until: str | None,
    output_format: str,
    out: Path | None,
    json_output: bool,
) -> int:
    """Build the report of ``kind`` (the last complete period, or ``since``..``until``)
    and print it (or its figures with ``json_output``) or write it to ``out``; return 0,
    1 if the file cannot be written, 2 on bad input or an unusable config/store."""
    from upkeep.core.moments import since_start, start_time
    from upkeep.reports.render import collect_report, render

    now = datetime.now(UTC)
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        zone = ZoneInfo(loaded.config.timezone)
        try:
            start = since_start(since, zone, now) if since is not None else None
            end = start_time(until, zone, now) if until is not None else None
            report = collect_report(store, loaded, kind, now, since=start, until=end)
        except ValueError as error:
            print_error(str(error))
            return EXIT_USAGE
        if json_output:
            print_json(report.figures())
            return 0
        if output_format == "pdf" and out is None and sys.stdout.isatty():
            print_error("a PDF is not for a terminal: give --out FILE or redirect stdout")
            return EXIT_USAGE
        content = render(report, output_format)
    if out is None:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return 0
    try:
        write_report_file(out, content)
    except OSError as error:
        print_error(f"cannot write {out}: {error.strerror or error}")
        return EXIT_FAILED
    return 0
