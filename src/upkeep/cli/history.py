"""``upkeep history`` and ``upkeep prune``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path


def run_history(
    config_path: Path | None, check: str | None, since: str, limit: int, *, json_output: bool
) -> int:
    """Print stored results for one or all checks since a time; return 0, or 2 on bad input."""
    from upkeep.cli.common import console, load_or_report, open_store

    loaded = load_or_report(config_path)
    if loaded is None:
        return 2
    from zoneinfo import ZoneInfo

    from upkeep.core.moments import since_start

    try:
        start = since_start(since, ZoneInfo(loaded.config.timezone), datetime.now(UTC))
    except ValueError as error:
        console(stderr=True).print(f"upkeep: {error}", markup=False)
        return 2
    store = open_store(loaded)
    if store is None:
        return 2
    try:
        if check is not None and check not in loaded.checks and check not in store.known_checks():
            console(stderr=True).print(f"upkeep: no check named {check!r}", markup=False)
            return 2
        rows = store.history(check, since=start, limit=limit)
    finally:
        store.close()
    if json_output:
        from upkeep.cli.common import print_json

        document = [row.to_json() for row in rows]
        print_json({"results": document})
        return 0
    from zoneinfo import ZoneInfo

    from rich.text import Text

    from upkeep.cli.common import local_time
    from upkeep.cli.output import STYLE, Column, format_value, print_table

    zone = ZoneInfo(loaded.config.timezone)
    columns = (
        Column("at"),
        Column("status"),
        Column("check"),
        Column("metrics", "words"),
        Column("message", "text"),
        Column("ms", "number"),
    )
    # Cells are escaped by print_table: stored messages and metric values are plugin
    # output, which rich would read as markup and a terminal as escape sequences.
    table_rows = [
        (
            local_time(row.at, zone, seconds=True),
            Text(row.status.label.upper(), style=STYLE[row.status]),
            row.check,
            " ".join(
                f"{key}={format_value(value)}" for key, value in list(row.metrics.items())[:4]
            ),
            row.message,
            f"{row.duration_ms:.0f}",
        )
        for row in rows
    ]
    out = console()
    print_table(out, columns, table_rows)
    out.print(f"{len(rows)} result(s) since {local_time(start, zone)}", markup=False)
    return 0


def run_prune(config_path: Path | None) -> int:
    """Apply the config's retention to the store now; print what was done; return 0 or 2."""
    from upkeep.cli.common import console, load_or_report, open_store
    from upkeep.probes.heartbeat import heartbeat_digests

    loaded = load_or_report(config_path)
    if loaded is None:
        return 2
    store = open_store(loaded)
    if store is None:
        return 2
    retention = loaded.config.retention
    try:
        report = store.prune(keep_results=retention.results, keep_rollups=retention.rollups)
        runs_deleted = store.runs.prune_runs(retention.runs)
        alerts_deleted, notices_deleted = store.alerts.prune(
            keep_alerts=retention.alerts, keep_notifications=retention.notifications
        )
        # Backup history (removed and failed backups, verifications, drills, restores)
        # is kept as long as runs: the repository itself keeps the backups.
        backup_rows = store.backups.prune(datetime.now(UTC) - retention.runs)
        # Heartbeat pings are results of their jobs: kept as long, the newest of each
        # kind of a configured heartbeat always (a quarterly job's last success stays).
        pings_deleted = store.pings.prune(
            datetime.now(UTC) - retention.results, set(heartbeat_digests(loaded.config.targets))
        )
    finally:
        store.close()
    console().print(
        f"rolled up {report.results_rolled_up} result(s) into hourly buckets, "
        f"deleted {report.results_deleted} raw result(s) and {report.rollups_deleted} old rollup(s)",
        markup=False,
    )
    console().print(
        f"deleted {runs_deleted} old run(s), {alerts_deleted} resolved alert(s), "
        f"{notices_deleted} finished notification(s), {backup_rows} old backup record(s) "
        f"and {pings_deleted} heartbeat ping(s)",
        markup=False,
    )
    return 0
