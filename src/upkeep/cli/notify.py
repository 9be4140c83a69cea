"""``upkeep notify test`` and ``upkeep notify outbox``."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from upkeep.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    config_and_store,
    load_for_command,
    local_time,
    print_error,
    print_json,
)

STATUS_STYLE = {
    "pending": "yellow",
    "sending": "cyan",
    "sent": "green",
    "dead": "bold red",
    "muted": "dim",
}


def send_test(config_path: Path | None, channel: str) -> int:
    """Given ``-c`` and a channel name, send it a test message now, not through the outbox.

    Return 0 if the channel took it, 1 if not (the error is printed, redacted), 2 if the
    config does not load or has no such channel (the known ones are listed).
    """
    from upkeep.cli.common import active_redactor, console
    from upkeep.notify.channels import send

    loaded = load_for_command(config_path)
    if loaded is None:
        return EXIT_USAGE
    url = loaded.config.channels.get(channel)
    if url is None:
        known = ", ".join(sorted(loaded.config.channels)) or "none defined"
        print_error(f"no channel named {channel!r} (channels: {known})")
        return EXIT_USAGE
    host = socket.gethostname()
    now = datetime.now(UTC)
    result = send(
        url,
        f"upkeep test notification from {host}",
        f"A test message from `upkeep notify test {channel}` on {host} at "
        f"{now.isoformat(timespec='seconds')}. If you can read this, channel {channel} works.",
        "info",
        # A fresh key per test: two tests are two messages, not a repeat to drop.
        f"test:{channel}:{uuid.uuid4().hex[:12]}",
        loaded.config.alerting.delivery.timeout.total_seconds(),
        active_redactor(),
    )
    if not result.ok:
        print_error(f"{channel}: {result.error}")
        return EXIT_FAILED
    console().print(f"sent to {channel}", markup=False)
    return 0


def list_outbox(
    config_path: Path | None, *, status: str | None, limit: int, json_output: bool
) -> int:
    """Given ``-c`` and an optional status, print recent outbox rows newest first (a table,
    or JSON); return 0, or 2 for an unknown status or a config/store that does not open."""
    from upkeep.store.outbox import OUTBOX_STATUSES, WAITING_STATUSES, OutboxStatus

    if status is not None and status not in OUTBOX_STATUSES:
        print_error(f"no status {status!r} (statuses: {', '.join(OUTBOX_STATUSES)})")
        return EXIT_USAGE
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        rows = store.outbox.list_rows(
            status=None if status is None else OutboxStatus(status), limit=max(1, limit)
        )
        counts = store.outbox.counts()
        # Each row names its alert and the alert's check; a pruned alert has no check left.
        alert_ids = {row.alert_id for row in rows if row.alert_id is not None}
        checks = {
            alert_id: record.check
            for alert_id in alert_ids
            if (record := store.alerts.get(alert_id)) is not None
        }
    from upkeep.cli.common import active_redactor, console

    redact = active_redactor().redact
    if json_output:
        print_json(
            {
                "counts": counts,
                "rows": [
                    row.to_json(
                        checks.get(row.alert_id) if row.alert_id is not None else None, redact
                    )
                    for row in rows
                ],
            }
        )
        return 0
    from rich.text import Text

    from upkeep.cli.output import Column, print_table

    zone = ZoneInfo(loaded.config.timezone)
    columns = (
        Column("id"),
        Column("channel"),
        Column("alert"),
        Column("check"),
        Column("kind"),
        Column("status"),
        Column("attempts", "number"),
        Column("next attempt"),
        Column("last error", "text"),
    )
    table_rows: list[tuple[object, ...]] = []
    for row in rows:
        waiting = row.status in WAITING_STATUSES
        if row.alert_id is None:
            alert, check = "-", "-"
        else:
            alert = f"#{row.alert_id}" + (f" {row.severity}" if row.severity else "")
            check = checks.get(row.alert_id, "(pruned)")
        table_rows.append(
            (
                str(row.id),
                row.channel,
                alert,
                check,
                row.kind,
                Text(row.status, style=STATUS_STYLE.get(row.status, "")),
                str(row.attempts),
                local_time(row.next_attempt_at, zone) if waiting else "-",
                # Stored redacted already; the config loaded now may know more secrets.
                # A server's error text: escaped like every cell.
                redact(row.last_error or ""),
            )
        )
    out = console()
    if rows:
        print_table(out, columns, table_rows)
    else:
        out.print("no notifications in the outbox" + (f" with status {status}" if status else ""))
    out.print("  ".join(f"{name} {count}" for name, count in counts.items()), markup=False)
    return 0


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
