"""``upkeep incidents`` (list, show, note, publish) and ``upkeep stats``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from upkeep.alerting.stats import incident_to_json
from upkeep.cli.common import (
    EXIT_USAGE,
    config_and_store,
    local_time,
    local_times_in,
    print_error,
    print_json,
    who,
)
from upkeep.cli.output import untrusted
from upkeep.core.text import format_percent, human_duration

if TYPE_CHECKING:
    from rich.console import Console

    from upkeep.alerting.stats import IncidentSpan, ReliabilityFigures
    from upkeep.config.loader import LoadedConfig

STATE_STYLE = {"firing": "bold red", "pending": "yellow", "resolved": "green"}
EVENT_STYLE = {
    "firing": "bold red",
    "escalated": "bold red",
    "resolved": "green",
    "acknowledged": "cyan",
    "unacknowledged": "yellow",
    "note": "bold",
    "remediation": "magenta",
}


def _parse_filters(
    since: str, label_pairs: list[str], loaded: LoadedConfig, now: datetime
) -> tuple[datetime, dict[str, str]] | None:
    from upkeep.cli.common import parse_labels
    from upkeep.core.moments import since_start

    try:
        return since_start(since, ZoneInfo(loaded.config.timezone), now), parse_labels(label_pairs)
    except ValueError as error:
        print_error(str(error))
        return None


def _acked_by(incident: IncidentSpan) -> str:
    if incident.acked_by:
        return incident.acked_by
    # The acknowledgement expired or was withdrawn; who it was is in the timeline.
    return "(expired)" if incident.first_acked_at is not None else "-"


# --- upkeep incidents ----------------------------------------------------------------------------


def list_incidents(
    config_path: Path | None,
    since: str,
    label_pairs: list[str],
    *,
    open_only: bool,
    json_output: bool,
) -> int:
    """Print the incidents overlapping ``since``..now (only unresolved ones with
    ``open_only``) newest first; return 0, or 2 on bad input or an unusable config/store."""
    from upkeep.alerting.stats import load_incidents
    from upkeep.cli.common import console

    now = datetime.now(UTC)
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        filters = _parse_filters(since, label_pairs, loaded, now)
        if filters is None:
            return EXIT_USAGE
        start, labels = filters
        incidents = load_incidents(store.engine, start, now, labels, open_only=open_only)
    incidents.reverse()
    if json_output:
        print_json([incident_to_json(incident, now) for incident in incidents])
        return 0
    from rich.text import Text

    from upkeep.cli.output import Column, print_table

    zone = ZoneInfo(loaded.config.timezone)
    columns = (
        Column("id"),
        Column("check"),
        Column("target"),
        Column("sev"),
        Column("opened"),
        Column("duration", "words"),
        Column("acked by", "words"),
        Column("state"),
    )
    rows: list[tuple[object, ...]] = []
    for incident in incidents:
        duration = human_duration(incident.duration_s(now))
        if incident.resolved_at is None:
            duration = f"ongoing ({duration})"
        rows.append(
            (
                str(incident.id),
                incident.check,
                incident.target,
                incident.severity,
                local_time(incident.opened_at, zone),
                duration,
                _acked_by(incident),
                Text(incident.state, style=STATE_STYLE.get(incident.state, "")),
            )
        )
    out = console()
    print_table(out, columns, rows)
    which = "open incident(s)" if open_only else "incident(s)"
    out.print(f"{len(incidents)} {which} since {local_time(start, zone)}", markup=False)
    return 0


def show_incident(config_path: Path | None, incident_id: int, *, json_output: bool) -> int:
    """Print one incident and its timeline; return 0, or 2 if there is no such incident."""
    from upkeep.alerting.stats import load_incident
    from upkeep.cli.common import console
    from upkeep.store.outbox import OutboxStatus

    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        incident = load_incident(store.engine, incident_id)
        events = store.alerts.events(incident_id) if incident is not None else []
        deliveries = store.outbox.for_alert(incident_id) if incident is not None else []
    if incident is None:
        print_error(f"no incident {incident_id}")
        return EXIT_USAGE
    now = datetime.now(UTC)
    if json_output:
        print_json(
            {
                **incident_to_json(incident, now),
                "timeline": [event.to_json() for event in events],
                "notifications": [row.delivery_json() for row in deliveries],
            }
        )
        return 0
    from rich.text import Text

    zone = ZoneInfo(loaded.config.timezone)
    out = console()
    header = untrusted(
        f"incident {incident.id}: {incident.check} on {incident.target} ({incident.severity}) ",
        one_line=True,
    )
    header.append(incident.state, style=STATE_STYLE.get(incident.state, ""))
    out.print(header)
    duration = human_duration(incident.duration_s(now))
    lines = [
        f"message:   {incident.message}",
        f"opened:    {local_time(incident.opened_at, zone)}",
        f"fired:     {local_time(incident.fired_at, zone)}",
        f"resolved:  {local_time(incident.resolved_at, zone)}"
        + (f" (after {duration})" if incident.resolved_at else f" (ongoing, {duration})"),
        f"acked:     {local_time(incident.first_acked_at, zone)}"
        + (f" by {incident.acked_by}" if incident.acked_by else ""),
        "labels:    " + (", ".join(f"{k}={v}" for k, v in incident.labels.items()) or "-"),
    ]
    for line in lines:
        out.print(untrusted(line, one_line=True))
    out.print("timeline:")
    for event in events:
        entry = Text(f"  {local_time(event.at, zone, seconds=True)}  ")
        entry.append(f"{event.kind:<14}", style=EVENT_STYLE.get(event.kind, ""))
        said = ""
        if event.author:
            said += f" {event.author}" + (":" if event.detail else "")
        if event.detail:
            said += f" {local_times_in(event.detail, zone)}"
        # Authors and notes come from people and API clients: one escaped line each.
        entry.append_text(untrusted(said, one_line=True))
        out.print(entry)
    if deliveries:
        out.print("notifications:", markup=False)
    for row in deliveries:
        outcome: str = row.status
        if row.status == OutboxStatus.SENT and row.sent_at:
            outcome = f"sent {local_time(row.sent_at, zone)}"
        elif row.status == OutboxStatus.MUTED:
            outcome = f"muted by {row.muted_by}"
        elif row.last_error:
            outcome = f"{row.status} after {row.attempts} attempt(s): {row.last_error}"
        out.print(untrusted(f"  {row.kind:<11} -> {row.channel:<16} {outcome}", one_line=True))
    return 0


def note_incident(
    config_path: Path | None, incident_id: int, text: str, *, author: str | None
) -> int:
    """Append a note to an incident's timeline; return 0, or 2 if there is no such incident
    or the note is empty."""
    from upkeep.cli.common import console

    if not text.strip():
        print_error("the note is empty")
        return EXIT_USAGE
    writer = author or who()
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        _, store = opened
        added = store.alerts.add_note(incident_id, text, writer, datetime.now(UTC))
    if not added:
        print_error(f"no incident {incident_id}")
        return EXIT_USAGE
    console().print(f"note added to incident {incident_id} by {writer}", markup=False)
    return 0


def publish_update(
    config_path: Path | None, incident_id: int, text: str, *, author: str | None
) -> int:
    """Publish an update on an incident for the public status page (redacted with the
    config's secrets before it is stored); return 0, or 2 if there is no such incident or
    the text is empty or too long."""
    from upkeep.cli.common import console
    from upkeep.store.updates import publish_update as store_update

    writer = author or who()
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        try:
            update = store_update(
                store.engine,
                incident_id,
                loaded.redactor.redact(text),
                writer,
                datetime.now(UTC),
            )
        except ValueError as error:
            print_error(str(error))
            return EXIT_USAGE
    if update is None:
        print_error(f"no incident {incident_id}")
        return EXIT_USAGE
    console().print(
        f"update {update.id} published on incident {incident_id} by {writer}", markup=False
    )
    return 0


# --- upkeep stats ---------------------------------------------------------------------------------


def show_stats(
    config_path: Path | None,
    since: str,
    label_pairs: list[str],
    *,
    json_output: bool,
    until: str | None = None,
) -> int:
    """Print uptime, incidents, MTTR, MTBF, MTTA and response targets met per check and per
    target over ``since``..``until`` (default now); return 0, or 2 on bad input or an
    unusable config/store."""
    from upkeep.alerting.stats import period_stats
    from upkeep.cli.common import console
    from upkeep.core.moments import start_time

    now = datetime.now(UTC)
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        filters = _parse_filters(since, label_pairs, loaded, now)
        if filters is None:
            return EXIT_USAGE
        start, labels = filters
        if until is not None:
            now = start_time(until, ZoneInfo(loaded.config.timezone), now)
        if start >= now:
            print_error(
                "--since must be in the past" if until is None else "--since must be before --until"
            )
            return EXIT_USAGE
        targets_by_severity = {
            str(severity): target
            for severity, target in loaded.config.alerting.response_targets.items()
        }
        figures = period_stats(store.engine, start, now, labels, targets_by_severity)
    checks = [figure for figure in figures if figure.scope == "check"]
    targets = [figure for figure in figures if figure.scope == "target"]
    if json_output:
        from upkeep.alerting.stats import stats_document

        print_json(stats_document(start, now, figures))
        return 0
    zone = ZoneInfo(loaded.config.timezone)
    out = console()
    if not figures:
        out.print("no checks with results in the period", markup=False)
        return 0
    for title, rows in (("check", checks), ("target", targets)):
        _print_stats_table(out, title, rows)
        out.print()
    out.print(
        f"since {local_time(start, zone)}; MTTR and MTBF over outages, MTTA over incidents "
        "that fired in the period",
        markup=False,
    )
    return 0


def _print_stats_table(out: Console, title: str, rows: list[ReliabilityFigures]) -> None:
    from rich.text import Text

    from upkeep.cli.output import Column, print_table

    columns = [Column(title)] + [
        Column(header, "number")
        for header in (
            "uptime",
            "incidents",
            "open",
            "MTTR",
            "MTBF",
            "MTTA",
            "acked",
            "response met",
        )
    ]
    table_rows: list[tuple[object, ...]] = []
    for figure in rows:
        uptime = format_percent(figure.uptime_percent)
        style = "" if figure.downtime_s == 0 else "yellow"
        judged = figure.response_met + figure.response_missed
        response = (
            f"{format_percent(figure.response_target_met_percent)} ({figure.response_met}/{judged})"
            if judged
            else "-"
        )
        table_rows.append(
            (
                figure.name,
                Text(uptime, style=style),
                str(figure.incidents),
                str(figure.open_incidents),
                *(
                    "-" if seconds is None else human_duration(seconds)
                    for seconds in (figure.mttr_s, figure.mtbf_s, figure.mtta_s)
                ),
                f"{figure.acked}/{figure.acked + figure.unacked}",
                response,
            )
        )
    print_table(out, columns, table_rows)
