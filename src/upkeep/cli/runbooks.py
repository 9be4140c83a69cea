"""``upkeep run``, ``runbooks``, ``schedule``, ``serve``, ``runs``, ``approve`` and ``window``."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from upkeep.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    config_and_store,
    load_for_command,
    local_time,
    local_times_in,
    print_error,
    print_json,
    who,
)
from upkeep.core.text import human_duration

if TYPE_CHECKING:
    from collections.abc import Mapping

    from upkeep.alerting.windows import WindowCalendar
    from upkeep.config.loader import LoadedConfig
    from upkeep.core.clock import Clock
    from upkeep.engine.runbooks import StepReport
    from upkeep.store.runs import RunRecord
    from upkeep.store.store import Store
RUN_STATUS_STYLE = {
    "succeeded": "bold green",
    "failed": "bold red",
    "cancelled": "bold yellow",
    "interrupted": "bold yellow",
    "missed": "yellow",
    "running": "cyan",
    "waiting": "cyan",
}
STEP_STATUS_STYLE = {
    "ok": "green",
    "done": "green",
    "approved": "green",
    "planned": "cyan",
    "warning": "yellow",
    "todo": "yellow",
    "not_run": "dim",
    "failed": "bold red",
    "timed_out": "bold red",
    "rejected": "bold red",
    "expired": "bold red",
    "interrupted": "yellow",
    "cancelled": "yellow",
}


# --- upkeep run ---------------------------------------------------------------------------


def run_runbook(
    config_path: Path | None,
    name: str,
    *,
    dry_run: bool,
    yes: bool,
    force: bool,
    json_output: bool,
) -> int:
    """Run a runbook now and print each step as it ends; return 0 if it succeeded.

    Refuse (exit 1) outside the runbook's window unless ``force``; ask before a real run
    at a terminal unless ``yes``; manual items are asked at a terminal, else left ``todo``.
    """
    from upkeep.alerting.windows import WindowCalendar
    from upkeep.cli.common import console, open_store
    from upkeep.cli.interrupts import run_async

    loaded = load_for_command(config_path)
    if loaded is None:
        return EXIT_USAGE
    runbook = loaded.config.runbooks.get(name)
    if runbook is None:
        known = ", ".join(sorted(loaded.config.runbooks)) or "none defined"
        print_error(f"no runbook named {name!r} (runbooks: {known})")
        return EXIT_USAGE
    store = open_store(loaded)
    if store is None:
        return EXIT_USAGE
    try:
        now = datetime.now(UTC)
        zone = ZoneInfo(runbook.timezone or loaded.config.timezone)
        if runbook.window is not None and not dry_run:
            calendar = WindowCalendar(loaded.config, store.runs.list_windows(ending_after=now))
            if not calendar.is_open(runbook.window, now) and not force:
                opening = calendar.next_opening(runbook.window, now)
                when = local_time(opening.start, zone) if opening else "never"
                print_error(
                    f"runbook {name} runs only inside window {runbook.window}, which is closed; "
                    f"it next opens {when}. Use --force to run it now anyway."
                )
                return EXIT_FAILED
        interactive = sys.stdin.isatty() and not yes
        if not dry_run and not yes:
            if not interactive:
                print_error("not a terminal: pass --yes to run without confirmation (or --dry-run)")
                return EXIT_USAGE
            import typer

            from upkeep.cli.output import safe_text

            question = f"Run runbook {safe_text(name)} now ({len(runbook.steps)} steps)?"
            if not typer.confirm(question):
                print_error("not run")
                return EXIT_FAILED
        record = run_async(
            _execute(
                loaded, store, name, dry_run=dry_run, interactive=interactive, quiet=json_output
            )
        )
    finally:
        store.close()
    if record is None:
        print_error("the run was not recorded")
        return EXIT_FAILED
    if json_output:
        from upkeep.web.app import run_to_json

        print_json(run_to_json(record))
    else:
        from rich.text import Text

        from upkeep.cli.output import untrusted

        style = RUN_STATUS_STYLE.get(record.status, "")
        line = Text(f"run {record.id} ")
        line.append(record.status, style=style)
        line.append(f" in {human_duration(record.duration_s or 0.0)}: ")
        message = local_times_in(record.message, ZoneInfo(loaded.config.timezone))
        line.append_text(untrusted(message, one_line=True))
        console().print(line)
    return 0 if record.status == "succeeded" else EXIT_FAILED


async def _execute(
    loaded: LoadedConfig, store: Store, name: str, *, dry_run: bool, interactive: bool, quiet: bool
) -> RunRecord | None:
    from rich.text import Text

    from upkeep.cli.common import console
    from upkeep.cli.output import output_lines, safe_text, untrusted
    from upkeep.engine.runbooks import RunbookExecutor
    from upkeep.engine.runner import CheckRunner
    from upkeep.io.http import HttpClient
    from upkeep.store.runs import keep_alive, new_instance_id

    out = console()
    started: list[int] = []

    def on_start(run_id: int) -> None:
        started.append(run_id)
        if not quiet:
            mode = "dry run" if dry_run else "run"
            out.print(untrusted(f"{mode} {run_id} of runbook {name}"))

    def on_step(position: int, title: str, report: StepReport) -> None:
        if quiet:
            return
        line = Text(f"  {position + 1}. ")
        line.append(f"{report.status:<9}", style=STEP_STATUS_STYLE.get(report.status, ""))
        line.append(" ")
        line.append_text(untrusted(step_heading(title, report.detail), one_line=True))
        out.print(line)
        # The command's own output: every line escaped (no "\r" overwrites a line, no
        # escape sequence reaches the terminal), each indented under its step.
        for output_line in output_lines(report.output)[:40]:
            out.print(untrusted(f"       {output_line}", one_line=True))
        if report.status == "waiting":
            run = f" (upkeep approve {started[-1]} --step {position + 1})" if started else ""
            out.print(f"       waiting for approval{run}", markup=False, soft_wrap=True)

    async def confirm(text: str) -> bool:
        import typer

        prompt = f"  manual: {safe_text(text, one_line=True)} - done?"
        return await asyncio.to_thread(typer.confirm, prompt, default=False)

    from upkeep.cli.common import new_pipeline, print_problems
    from upkeep.reports.service import ReportService

    # Results of checks steps (and of the checks the backup tasks run) alert through the
    # routes, as in the daemon; due notices are delivered when the run ends.
    pipeline = await asyncio.to_thread(new_pipeline, loaded, store)
    instance = new_instance_id()
    http = HttpClient()
    heartbeat: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(store.runs.register_instance, instance, "cli")
        heartbeat = asyncio.create_task(
            keep_alive(store.runs, instance, lambda: "cli", loaded.redactor.redact)
        )
        executor = RunbookExecutor(
            loaded,
            store,
            http=http,
            checks=CheckRunner(
                redactor=loaded.redactor,
                http=http,
                concurrency=loaded.config.engine.concurrency,
                store=store,
            ),
            owner=instance,
            manual_confirm=confirm if interactive else None,
            on_step=on_step,
            on_start=on_start,
            alerts=pipeline.manager,
            reports=ReportService(loaded, store),
        )
        record = await executor.execute(name, trigger="cli", triggered_by=who(), dry_run=dry_run)
        if not dry_run:
            print_problems(await pipeline.tick_and_deliver_async())
        return record
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await asyncio.to_thread(store.runs.unregister_instance, instance)
        await http.close()
        await asyncio.to_thread(pipeline.close)


# --- upkeep runbooks / schedule ----------------------------------------------------------------


def list_runbooks(config_path: Path | None, *, json_output: bool) -> int:
    """Print every runbook: schedule, window, steps and next firing; return 0 or 2."""
    from upkeep.cli.common import console

    loaded = load_for_command(config_path)
    if loaded is None:
        return EXIT_USAGE
    from upkeep.engine.runbooks import runbook_summaries

    rows = runbook_summaries(loaded.config, datetime.now(UTC))
    for row in rows:
        following = row["next"]
        row["next_local"] = (
            local_time(datetime.fromisoformat(following), ZoneInfo(row["timezone"]))
            if following
            else "-"
        )
    if json_output:
        print_json(rows)
        return 0
    from upkeep.cli.output import Column, print_table

    columns = (
        Column("runbook"),
        Column("schedule"),
        Column("window"),
        Column("steps", "number"),
        Column("next firing"),
        Column("description", "text"),
    )
    print_table(
        console(),
        columns,
        [
            (
                row["runbook"],
                row["schedule"] or ("on alert" if row["on_alert"] else "manual"),
                row["window"] or "-",
                str(len(row["steps"])),
                row["next_local"],
                row["description"],
            )
            for row in rows
        ],
    )
    return 0


def show_schedule(config_path: Path | None, *, count: int, json_output: bool) -> int:
    """Print the next ``count`` firings of every runbook and window, and the check cadence."""
    from upkeep.alerting.windows import WindowCalendar
    from upkeep.cli.common import console, open_store

    loaded = load_for_command(config_path)
    if loaded is None:
        return EXIT_USAGE
    config = loaded.config
    now = datetime.now(UTC)
    store = open_store(loaded)
    one_offs = store.runs.list_windows(ending_after=now) if store is not None else []
    if store is not None:
        store.close()
    calendar = WindowCalendar(config, one_offs)
    entries = _schedule_entries(loaded, calendar, now, count)
    entries.sort(key=lambda entry: entry["at"])
    cadence: dict[str, int] = {}
    for check in loaded.checks.values():
        if check.enabled:
            key = _describe_every(check.every)
            cadence[key] = cadence.get(key, 0) + 1
    if json_output:
        print_json({"firings": entries, "checks": cadence})
        return 0
    from upkeep.cli.output import Column, print_table

    columns = (Column("when"), Column("kind"), Column("name"), Column("note", "text"))
    out = console()
    print_table(
        out,
        columns,
        [(entry["local"], entry["kind"], entry["name"], entry["note"]) for entry in entries],
    )
    summary = ", ".join(f"{number} every {every}" for every, number in sorted(cadence.items()))
    out.print(f"checks: {summary or 'none enabled'}", markup=False)
    return 0


def _schedule_entries(
    loaded: LoadedConfig, calendar: WindowCalendar, now: datetime, count: int
) -> list[dict[str, Any]]:
    """Given a config and its windows, return the next ``count`` firings of each schedule."""
    from upkeep.config.schedule import CronSchedule

    config = loaded.config
    entries: list[dict[str, Any]] = []
    for name, runbook in config.runbooks.items():
        if runbook.schedule is None:
            continue
        zone = ZoneInfo(runbook.timezone or config.timezone)
        schedule = CronSchedule(runbook.schedule, zone)
        moment = now
        for _ in range(count):
            moment = schedule.next_after(moment)
            note = ""
            if runbook.window is not None and not calendar.is_open(runbook.window, moment):
                opening = calendar.next_opening(runbook.window, moment)
                note = (
                    f"window {runbook.window} closed: deferred to {local_time(opening.start, zone)}"
                    if opening
                    else f"window {runbook.window} never opens: will be missed"
                )
            entries.append(
                {
                    "kind": "runbook",
                    "name": name,
                    "at": moment.isoformat(),
                    "local": local_time(moment, zone),
                    "note": note,
                }
            )
    for name in calendar.names():
        window = config.windows.get(name)
        zone = ZoneInfo((window.timezone if window else None) or config.timezone)
        moment = now
        current = calendar.opening_at(name, now)
        if current is not None:
            entries.append(
                {
                    "kind": "window",
                    "name": name,
                    "at": current.start.isoformat(),
                    "local": local_time(current.start, zone),
                    "note": f"open now, until {local_time(current.end, zone)}",
                }
            )
        for _ in range(count):
            opening = calendar.next_opening(name, moment)
            if opening is None:
                break
            moment = opening.start
            entries.append(
                {
                    "kind": "window",
                    "name": name,
                    "at": opening.start.isoformat(),
                    "local": local_time(opening.start, zone),
                    "note": f"until {local_time(opening.end, zone)}",
                }
            )
    return entries


def _describe_every(every: timedelta) -> str:
    seconds = every.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# --- upkeep serve ------------------------------------------------------------------------------


def run_serve(config_path: Path | None, listen: str | None, clock: Clock | None = None) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; return its exit code.

    ``clock`` is the system's unless given (only tests give another, from their own harness).
    """
    import logging

    from upkeep.cli.common import setup_logging
    from upkeep.core.clock import SYSTEM_CLOCK
    from upkeep.serve.daemon import Daemon, parse_listen
    from upkeep.store.store import StoreError
    from upkeep.web.guard import listen_refusal

    loaded = load_for_command(config_path, logging.INFO)
    if loaded is None:
        return EXIT_USAGE
    # From here on every line is stamped, in the config's zone (the one its schedules use).
    setup_logging(logging.INFO, stamped_in=ZoneInfo(loaded.config.timezone))
    try:
        host, _ = parse_listen(listen or loaded.config.engine.listen)
    except ValueError:
        where = "--listen" if listen is not None else "engine.listen"
        print_error(f"{where} expects host:port, got {listen or loaded.config.engine.listen!r}")
        return EXIT_USAGE
    refusal = listen_refusal(loaded.config.engine, host)
    if refusal is not None:
        print_error(refusal)
        return EXIT_USAGE
    try:
        return asyncio.run(Daemon(loaded, listen=listen, clock=clock or SYSTEM_CLOCK).run())
    except StoreError as error:
        print_error(str(error))
        return EXIT_USAGE
    except OSError as error:
        print_error(f"cannot serve: {error}")
        return EXIT_USAGE


# --- upkeep runs / approve ----------------------------------------------------------------------


def list_runs(
    config_path: Path | None, runbook: str | None, since: str, limit: int, *, json_output: bool
) -> int:
    """Print recorded runs newest first; return 0 or 2."""
    from upkeep.cli.common import console
    from upkeep.core.moments import since_start

    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        try:
            start = since_start(since, ZoneInfo(loaded.config.timezone), datetime.now(UTC))
        except ValueError as error:
            print_error(str(error))
            return EXIT_USAGE
        records = store.runs.list_runs(runbook=runbook, since=start, limit=limit)
    if json_output:
        from upkeep.web.app import run_to_json

        print_json([run_to_json(r) for r in records])
        return 0
    from rich.text import Text

    from upkeep.cli.output import Column, print_table

    zone = ZoneInfo(loaded.config.timezone)
    columns = (
        Column("id"),
        Column("runbook"),
        Column("status"),
        Column("trigger", "words"),
        Column("started"),
        Column("took", "number"),
        Column("message", "text"),
    )
    rows: list[tuple[object, ...]] = []
    for record in records:
        took = human_duration(record.duration_s) if record.duration_s is not None else "-"
        trigger = record.trigger + (f" ({record.triggered_by})" if record.triggered_by else "")
        if record.dry_run:
            trigger += " dry-run"
        rows.append(
            (
                str(record.id),
                record.runbook,
                Text(record.status, style=RUN_STATUS_STYLE.get(record.status, "")),
                trigger,
                local_time(record.started_at, zone),
                took,
                local_times_in(record.message, zone),
            )
        )
    out = console()
    print_table(out, columns, rows)
    out.print(f"{len(records)} run(s) since {local_time(start, zone)}", markup=False)
    return 0


def show_run(config_path: Path | None, run_id: int, *, json_output: bool) -> int:
    """Print one run with every step's status, timing and output; return 0, or 2 if unknown."""
    from upkeep.cli.common import console

    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        record = store.runs.get_run(run_id)
    if record is None:
        print_error(f"no run {run_id}")
        return EXIT_USAGE
    if json_output:
        from upkeep.web.app import run_to_json

        print_json(run_to_json(record))
        return 0
    from rich.text import Text

    from upkeep.cli.output import output_lines, untrusted

    zone = ZoneInfo(loaded.config.timezone)
    out = console()
    header = untrusted(f"run {record.id} of runbook {record.runbook}: ", one_line=True)
    header.append(record.status, style=RUN_STATUS_STYLE.get(record.status, ""))
    out.print(header)
    trigger = record.trigger + (f" by {record.triggered_by}" if record.triggered_by else "")
    lines = [
        f"trigger:   {trigger}{' (dry run)' if record.dry_run else ''}",
        f"scheduled: {local_time(record.scheduled_for, zone)}",
        f"started:   {local_time(record.started_at, zone)}",
        f"finished:  {local_time(record.finished_at, zone)}"
        + (f" ({human_duration(record.duration_s)})" if record.duration_s is not None else ""),
        f"message:   {local_times_in(record.message, zone)}",
        f"owner:     {record.owner}",
    ]
    for line in lines:
        # Each field on its own line: a message, trigger or owner (some come from API
        # clients) can neither add a line nor hide one.
        out.print(untrusted(line, one_line=True))
    for step in record.steps:
        took = (
            f" {human_duration(step.finished_at - step.started_at)}"
            if step.started_at and step.finished_at
            else ""
        )
        step_line = Text(f"{step.position + 1}. ")
        step_line.append(f"{step.status:<11}", style=STEP_STATUS_STYLE.get(step.status, ""))
        phase = f"{step.phase}: " if step.phase != "main" else ""
        described = f" {step.kind:<8} {phase}{step.name}{took}"
        if step.attempts > 1:
            described += f" ({step.attempts} attempts)"
        if step.decision:
            described += f" - {step.decision} by {step.decided_by}"
        described += exit_note(step.detail)
        step_line.append_text(untrusted(described, one_line=True))
        out.print(step_line)
        # The command's output as stored: every line escaped and indented under its step.
        for output_line in output_lines(step.output):
            out.print(untrusted(f"     {output_line}", one_line=True))
    return 0


def decide(
    config_path: Path | None, run_id: int, *, reject: bool, comment: str, step: int | None
) -> int:
    """Approve (or reject) the step a run waits on; return 0, or 2 if nothing waits."""
    from upkeep.cli.common import console
    from upkeep.store.runs import ApprovalDecision

    decision = ApprovalDecision.REJECTED if reject else ApprovalDecision.APPROVED
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        _, store = opened
        try:
            decided = store.runs.decide(
                run_id, decision, who(), comment, position=None if step is None else step - 1
            )
        except LookupError as error:
            print_error(str(error))
            return EXIT_USAGE
    console().print(
        f"run {run_id} step {decided.position + 1} ({decided.name}): {decision} by {who()}",
        markup=False,
    )
    return 0


# --- upkeep window -------------------------------------------------------------------------------


def add_window(
    config_path: Path | None,
    name: str,
    start: str,
    duration: str,
    *,
    comment: str,
    mute_labels: list[str],
) -> int:
    """Add a one-off window (``start`` ISO time or ``now``); return 0, or 2 on bad input."""
    from upkeep.cli.common import console, open_store, parse_labels
    from upkeep.core.durations import parse_duration

    loaded = load_for_command(config_path)
    if loaded is None:
        return EXIT_USAGE
    zone = ZoneInfo(loaded.config.timezone)
    from upkeep.core.moments import start_time

    try:
        starts_at = start_time(start, zone, datetime.now(UTC))
        length = parse_duration(duration)
        labels = parse_labels(mute_labels)
    except ValueError as error:
        print_error(str(error))
        return EXIT_USAGE
    store = open_store(loaded)
    if store is None:
        return EXIT_USAGE
    try:
        window = store.runs.add_window(
            name,
            starts_at,
            starts_at + length,
            created_by=who(),
            comment=comment,
            mute={"labels": labels} if labels else None,
        )
    except ValueError as error:
        print_error(str(error))
        return EXIT_USAGE
    finally:
        store.close()
    extends = " (an extra opening of the config window)" if name in loaded.config.windows else ""
    console().print(
        f"window {window.id} {name}{extends}: {local_time(window.starts_at, zone)} to "
        f"{local_time(window.ends_at, zone)}",
        markup=False,
    )
    return 0


def list_windows(config_path: Path | None, *, json_output: bool) -> int:
    """Print config windows (next opening) and one-off windows not yet over; return 0 or 2."""
    from upkeep.alerting.windows import window_rows
    from upkeep.cli.common import console

    now = datetime.now(UTC)
    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        loaded, store = opened
        one_offs = store.runs.list_windows(ending_after=now)
    zone = ZoneInfo(loaded.config.timezone)
    rows = window_rows(loaded.config, one_offs, now)
    if json_output:
        print_json(rows)
        return 0
    from rich.text import Text

    from upkeep.cli.output import Column, print_table

    columns = (
        Column("id"),
        Column("window"),
        Column("source", "words"),
        Column("state", "words"),
        Column("next opening"),
        Column("comment", "text"),
    )
    table_rows: list[tuple[object, ...]] = []

    def local(text: str | None) -> str:
        return local_time(datetime.fromisoformat(text), zone) if text else "-"

    for row in rows:
        state = f"open until {local(row['until'])}" if row["open_now"] else "closed"
        table_rows.append(
            (
                str(row["id"] or "-"),
                row["name"],
                row["source"],
                Text(state, style="bold green" if row["open_now"] else ""),
                local(row["next_opening"]),
                row["comment"],
            )
        )
    print_table(console(), columns, table_rows)
    return 0


def remove_window(config_path: Path | None, window_id: int) -> int:
    """Remove a one-off window by id; return 0, or 2 if there is none."""
    from upkeep.cli.common import console

    with config_and_store(config_path) as opened:
        if opened is None:
            return EXIT_USAGE
        _, store = opened
        removed = store.runs.remove_window(window_id, by=who())
    if not removed:
        print_error(f"no one-off window {window_id}")
        return EXIT_USAGE
    console().print(f"window {window_id} removed", markup=False)
    return 0


def exit_note(detail: Mapping[str, object]) -> str:
    """Given a step's detail, return `` (exit N)`` for a command that exited non-zero, else
    an empty text: the output alone does not say how a failed command ended."""
    code = detail.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        return f" (exit {code})"
    return ""


def step_heading(title: str, detail: Mapping[str, object]) -> str:
    """Given a step's title and detail as a run reports it, return its heading: the phase
    (rollback, finally) first, a command's non-zero exit last."""
    phase = detail.get("phase")
    return (f"{phase}: {title}" if phase else title) + exit_note(detail)
