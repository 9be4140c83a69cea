"""``upkeep alerts``, ``upkeep ack`` and ``upkeep silence``: alert state, acknowledgement,
and muting rules, read from and written to the store the daemon uses.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from upkeep.cli.common import EXIT_USAGE, config_and_store, local_time, print_error, print_json, who
from upkeep.cli.output import Column, print_table
from upkeep.core.moments import start_time

if TYPE_CHECKING:
    from collections.abc import Iterable

    from upkeep.config.loader import CompiledCheck
    from upkeep.store.alerts import AlertRecord, Silence

ALERT_COLUMNS = (
    Column("id"),
    Column("sev"),
    Column("state", "words"),
    Column("check"),
    Column("target"),
    Column("since"),
    Column("ack", "words"),
    Column("message", "text"),
)
SILENCE_COLUMNS = (
    Column("id"),
    Column("matchers", "words"),
    Column("from"),
    Column("until"),
    Column("by"),
    Column("state", "words"),
    Column("comment", "text"),
)


def _age(moment: datetime, now: datetime) -> str:
    from upkeep.core.text import human_duration

    return human_duration(now - moment)


def _ack_due(record: AlertRecord, targets: dict[str, timedelta], now: datetime) -> str:
    """Given a firing alert, return when its response target falls due (or how late it is)."""
    if record.fired_at is None or record.first_acked_at is not None:
        return ""
    target = targets.get(record.severity)
    if target is None:
        return ""
    due = record.fired_at + target
    return f"in {_age(now, due)}" if due > now else f"{_age(due, now)} late"


def list_alerts(config_path: Path | None, *, show_all: bool, since: str, json_output: bool) -> int:
    """Print open alerts (or, with ``show_all``, every alert opened since ``since``);
    return 0, or 2 if the config or store cannot be opened or ``since`` is not a duration.
    """
    from upkeep.cli.common import console
    from upkeep.core.durations import parse_duration

    now = datetime.now(UTC)
    try:
        opened_since = now - parse_duration(since) if show_all else None
    except ValueError as error:
        print_error(str(error))
        return EXIT_USAGE
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        records = store.alerts.list_alerts(open_only=not show_all, since=opened_since)
    if json_output:
        print_json({"alerts": [record.to_json() for record in records]})
        return 0
    zone = ZoneInfo(loaded.config.timezone)
    targets = {str(k): v for k, v in loaded.config.alerting.response_targets.items()}
    rows: list[tuple[object, ...]] = []
    for record in records:
        state = record.state + (" (flapping)" if record.flapping else "")
        if record.held:
            state += f" [{record.held}" + (
                f": {record.suppressed_by}]" if record.suppressed_by else "]"
            )
        if record.acked_by:
            until = (
                f" until {local_time(record.ack_expires_at, zone)}" if record.ack_expires_at else ""
            )
            ack = f"{record.acked_by}{until}"
        else:
            due = _ack_due(record, targets, now)
            ack = f"due {due}" if due else ""
        rows.append(
            (
                str(record.id),
                record.severity,
                state,
                record.check,
                record.target,
                f"{local_time(record.opened_at, zone)} ({_age(record.opened_at, now)})",
                ack,
                record.message,
            )
        )
    out = console()
    if not records:
        out.print(
            "no open alerts" if not show_all else f"no alerts since {since} ago", markup=False
        )
        return 0
    print_table(out, ALERT_COLUMNS, rows, title="alerts" if show_all else "open alerts")
    return 0


def acknowledge(
    config_path: Path | None,
    alert_id: int,
    *,
    duration: str | None,
    comment: str,
    author: str | None,
) -> int:
    """Acknowledge an open alert (for a while, or until it resolves); return 0, or 2 if
    there is no such open alert or the duration is not one.
    """
    from upkeep.alerting.manager import AlertManager
    from upkeep.cli.common import console
    from upkeep.core.durations import parse_duration
    from upkeep.store.alerts import AlertError

    try:
        length = parse_duration(duration) if duration else None
    except ValueError as error:
        print_error(str(error))
        return EXIT_USAGE
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        manager = AlertManager(loaded, store)
        try:
            record = manager.acknowledge(
                alert_id, author=author or who(), duration=length, comment=comment
            )
        except AlertError as error:
            print_error(str(error))
            return EXIT_USAGE
    zone = ZoneInfo(loaded.config.timezone)
    until = (
        f" until {local_time(record.ack_expires_at, zone)}"
        if record.ack_expires_at
        else " until it resolves"
    )
    console().print(
        f"alert #{record.id} ({record.check}) acknowledged by {record.acked_by}{until}",
        markup=False,
    )
    return 0


def add_silence(
    config_path: Path | None,
    matchers: list[str],
    *,
    duration: str,
    start: str,
    comment: str,
    author: str | None,
) -> int:
    """Add a silence muting alerts whose fields match every ``key=pattern``; return 0, or 2
    on bad input.
    """
    from upkeep.alerting.routing import parse_matchers
    from upkeep.cli.common import console
    from upkeep.core.durations import parse_duration
    from upkeep.store.alerts import AlertError

    try:
        parsed = parse_matchers(matchers)
        length = parse_duration(duration)
    except ValueError as error:
        print_error(str(error))
        return EXIT_USAGE
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        zone = ZoneInfo(loaded.config.timezone)
        try:
            starts_at = start_time(start, zone, datetime.now(UTC))
            silence = store.alerts.add_silence(
                parsed,
                starts_at=starts_at,
                ends_at=starts_at + length,
                author=author or who(),
                comment=comment,
            )
        except (ValueError, AlertError) as error:
            print_error(str(error))
            return EXIT_USAGE
        open_alerts = store.alerts.list_alerts(open_only=True)
    out = console()
    out.print(
        f"silence {silence.id} ({_matchers_text(silence)}) by {silence.author}: "
        f"{local_time(silence.starts_at, zone)} to {local_time(silence.ends_at, zone)}",
        markup=False,
        soft_wrap=True,
    )
    for line in silence_coverage(parsed, open_alerts, loaded.checks.values()):
        out.print(line, markup=False, soft_wrap=True)
    return 0


def silence_coverage(
    matchers: dict[str, str],
    open_alerts: Iterable[AlertRecord],
    checks: Iterable[CompiledCheck],
) -> list[str]:
    """Given a silence's matchers, the open alerts and the configured checks, return what
    it matches now, for people: the open alerts it mutes (id, check, target, state) and the
    checks whose alerts it would mute (a ``status`` matcher is left out for checks: their
    status is only known when they alert), or that it matches nothing yet."""
    from upkeep.alerting.routing import silence_preview

    preview = silence_preview(matchers, open_alerts, checks)
    alerts, matched_checks = preview.alerts, preview.checks
    lines = []
    if alerts:
        shown = ", ".join(
            f"#{record.id} {record.check} on {record.target} ({record.state})" for record in alerts
        )
        lines.append(f"mutes {len(alerts)} open alert(s) now: {shown}")
    else:
        lines.append("mutes no open alert now")
    if matched_checks:
        lines.append(f"matches {len(matched_checks)} check(s): {', '.join(matched_checks)}")
    else:
        lines.append(
            "matches no configured check: it mutes only alerts whose fields match later "
            "(check the spelling: matchers are check, target, severity, status or a label)"
        )
    return lines


def _matchers_text(silence: Silence) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(silence.matchers.items()))


def list_silences(config_path: Path | None, *, show_all: bool, json_output: bool) -> int:
    """Print silences not yet over (every one with ``show_all``); return 0 or 2."""
    from upkeep.cli.common import console

    now = datetime.now(UTC)
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        found = store.alerts.silences(include_ended=show_all)
    if json_output:
        print_json({"silences": [silence.to_json(now) for silence in found]})
        return 0
    zone = ZoneInfo(loaded.config.timezone)
    rows: list[tuple[object, ...]] = []
    for silence in found:
        if silence.removed_at is not None:
            state = f"removed by {silence.removed_by}"
        elif silence.active(now):
            state = "active"
        else:
            state = "ended" if silence.ends_at <= now else "scheduled"
        rows.append(
            (
                str(silence.id),
                _matchers_text(silence),
                local_time(silence.starts_at, zone),
                local_time(silence.ends_at, zone),
                silence.author,
                state,
                silence.comment,
            )
        )
    if not found:
        console().print("no silences", markup=False)
        return 0
    print_table(console(), SILENCE_COLUMNS, rows, title="silences")
    return 0


def remove_silence(config_path: Path | None, silence_id: int) -> int:
    """End a silence now; return 0, or 2 if there is no such active silence."""
    from upkeep.cli.common import console

    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        _, store = opened
        removed = store.alerts.remove_silence(silence_id, by=who())
    if not removed:
        print_error(f"no active silence {silence_id}")
        return EXIT_USAGE
    console().print(f"silence {silence_id} removed", markup=False)
    return 0
