"""``upkeep``: the entry point. Imports stay lazy so ``upkeep --help`` answers at once.

No ``from __future__ import annotations`` here: typer reads every command's parameters on
every run, and string annotations cost it ~900 ``eval`` calls (~40 ms, a quarter of
``upkeep --help``); these annotations are evaluated once, when the module runs.
"""

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from upkeep import __version__
from upkeep.cli import options

METAVARS = {
    "config": "FILE",
    "label": "KEY=VALUE",
    "mute_label": "KEY=VALUE",
    "match": "KEY=PATTERN",
    "since": "DURATION",
    "for_": "DURATION",
    "duration": "DURATION",
    "rto": "DURATION",
    "rpo": "DURATION",
    "start": "TIME",
    "limit": "N",
    "count": "N",
    "top": "N",
    "step": "N",
    "comment": "TEXT",
    "text": "TEXT",
    "author": "NAME",
    "listen": "HOST:PORT",
    "target": "TARGET",
    "log_format": "FORMAT",
    "pattern": "REGEX",
    "status": "STATUS",
    "to": "NAME",
    "names": "CHECK",
    "check_name": "[CHECK]",
    "runbook": "RUNBOOK",
    "run_id": "RUN",
    "alert_id": "ALERT",
    "window_id": "WINDOW",
    "silence_id": "SILENCE",
    "incident_id": "INCIDENT",
    "backup_id": "BACKUP",
    "targets": "TARGET",
    "sources": "SOURCE",
    "source": "SOURCE",
    "paths": "FILE",
    "channel": "CHANNEL",
    "name": "NAME",
}
"""The metavar of each parameter by its name, so every command says DURATION, TIME, RUN or
CHECK alike (typer's own would be ``<str>``, ``<list[str]>``, ``<path>``). A parameter
with a metavar of its own keeps it; ``tests/e2e/test_readable_output.py`` checks that
every parameter of every command has one."""


def first_sentence(text: str) -> str:
    """Given a command's help, return its first sentence, whole: the summary in the
    command list (click would cut it at the screen's width with ``...``)."""
    paragraph = text.strip().split("\n\n")[0]
    flat = " ".join(paragraph.split())
    end = flat.find(". ")
    return flat if end < 0 else flat[: end + 1]


class ReadableGroup(TyperGroup):
    """A command group whose commands are listed with whole one-sentence summaries and
    whose parameters all carry a metavar from ``METAVARS``."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """Given a command's name, return the command with its summary and metavars set."""
        command = super().get_command(ctx, cmd_name)
        if command is None:
            return None
        if not command.short_help and command.help:
            command.short_help = first_sentence(command.help)
        for parameter in command.params:
            if getattr(parameter, "metavar", None) is None and parameter.name in METAVARS:
                parameter.metavar = METAVARS[parameter.name]
        return command


app = typer.Typer(
    cls=ReadableGroup,
    name="upkeep",
    help="Runbooks as code: health checks, maintenance, backups and alerts from one upkeep.yaml.",
    no_args_is_help=True,
    add_completion=False,
    # Tracebacks with locals could print secrets; errors are reported by `main` instead.
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $UPKEEP_CONFIG, else ./upkeep.yaml).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SinceOption = Annotated[
    str,
    typer.Option(
        metavar="DURATION|TIME",
        help="How far back: a duration (24h, 7d) or a time (ISO, in the config's zone).",
        parser=options.since_text,
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"upkeep {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Runbooks as code: health checks, maintenance, backups and alerts from one upkeep.yaml."""


@app.command()
def init(
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter upkeep.yaml for this machine (host checks plus local services found)."""
    from upkeep.cli.init import run_init

    raise typer.Exit(run_init(config, force=force))


@app.command()
def validate(config: ConfigOption = None) -> None:
    """Check the config; exit 0 if valid, else 2 with every error listed."""
    from upkeep.cli.check import run_validate

    raise typer.Exit(run_validate(config))


@app.command()
def check(
    names: Annotated[
        list[str] | None, typer.Argument(help="Checks to run (default: all enabled).")
    ] = None,
    label: Annotated[
        list[str] | None,
        # No parser: a bad label is reported by `check` itself with exit 3 (unknown), as
        # its exit code is the worst status and 2 would read as critical.
        typer.Option("--label", "-l", help="Only checks with label k=v (repeatable)."),
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Do not record the results.")
    ] = False,
) -> None:
    """Run checks now, store the results and print them; exit code = worst status (0/1/2/3)."""
    from upkeep.cli.check import run_check

    raise typer.Exit(
        run_check(config, names or [], label or [], json_output=json_output, store=not no_store)
    )


@app.command()
def history(
    check_name: Annotated[
        str | None,
        typer.Argument(metavar="CHECK", help="One check, or one runbook with --runs."),
    ] = None,
    since: SinceOption = "24h",
    limit: Annotated[
        int, typer.Option(help="At most this many entries.", parser=options.count)
    ] = 200,
    runs: Annotated[bool, typer.Option("--runs", help="Show runbook runs, not results.")] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show past check results (or runbook runs with --runs), newest first."""
    if runs:
        from upkeep.cli.runbooks import list_runs

        raise typer.Exit(list_runs(config, check_name, since, limit, json_output=json_output))
    from upkeep.cli.history import run_history

    raise typer.Exit(run_history(config, check_name, since, limit, json_output=json_output))


@app.command("run")
def run_command(
    runbook: Annotated[str, typer.Argument(help="The runbook to run.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what each step would do; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Run even though the runbook's window is closed.")
    ] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run a runbook now and record the run; exit 0 if it succeeded, 1 if not."""
    from upkeep.cli.runbooks import run_runbook

    raise typer.Exit(
        run_runbook(config, runbook, dry_run=dry_run, yes=yes, force=force, json_output=json_output)
    )


@app.command()
def runbooks(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """List runbooks with their schedule, window and next firing."""
    from upkeep.cli.runbooks import list_runbooks

    raise typer.Exit(list_runbooks(config, json_output=json_output))


@app.command()
def schedule(
    count: Annotated[
        int, typer.Option(help="Firings to show per schedule.", parser=options.count)
    ] = 3,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the next firings of every runbook and window, and how often checks run."""
    from upkeep.cli.runbooks import show_schedule

    raise typer.Exit(show_schedule(config, count=max(1, count), json_output=json_output))


@app.command()
def serve(
    listen: Annotated[
        str | None,
        typer.Option(
            help="host:port for /healthz and /metrics (default: engine.listen).",
            parser=options.host_port,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the daemon: scheduled checks and runbooks, /healthz, /metrics and the API."""
    from upkeep.cli.runbooks import run_serve

    raise typer.Exit(run_serve(config, listen))


runs_app = typer.Typer(cls=ReadableGroup, help="Recorded runbook runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
def runs_list(
    runbook: Annotated[str | None, typer.Argument(help="Only this runbook.")] = None,
    since: SinceOption = "7d",
    limit: Annotated[int, typer.Option(help="At most this many runs.", parser=options.count)] = 50,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """List runs newest first."""
    from upkeep.cli.runbooks import list_runs

    raise typer.Exit(list_runs(config, runbook, since, limit, json_output=json_output))


@runs_app.command("show")
def runs_show(
    run_id: Annotated[
        int, typer.Argument(metavar="ID", help="The run's id.", parser=options.record_id)
    ],
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show one run: trigger, every step's status, timing and output."""
    from upkeep.cli.runbooks import show_run

    raise typer.Exit(show_run(config, run_id, json_output=json_output))


@app.command()
def approve(
    run_id: Annotated[
        int,
        typer.Argument(
            metavar="RUN", help="The run waiting for approval.", parser=options.record_id
        ),
    ],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approve.")] = False,
    comment: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    step: Annotated[
        int | None,
        typer.Option(
            help="The step number (default: the first waiting one).", parser=options.count
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Approve (or --reject) the approval step a run is waiting on."""
    from upkeep.cli.runbooks import decide

    raise typer.Exit(decide(config, run_id, reject=reject, comment=comment, step=step))


window_app = typer.Typer(cls=ReadableGroup, help="Maintenance windows.", no_args_is_help=True)
app.add_typer(window_app, name="window")


@window_app.command("add")
def window_add(
    name: Annotated[
        str, typer.Argument(help="Window name; a config window's name adds an opening.")
    ],
    start: Annotated[
        str,
        typer.Option(
            help="ISO time (config timezone if none) or 'now'.", parser=options.moment_text
        ),
    ],
    duration: Annotated[
        str,
        typer.Option(help="How long it stays open: 30m, 2h.", parser=options.duration_text),
    ],
    comment: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    mute_label: Annotated[
        list[str] | None,
        typer.Option("--mute-label", help="Mute alerts with label k=v.", parser=options.pair_text),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Add a one-off maintenance window."""
    from upkeep.cli.runbooks import add_window

    raise typer.Exit(
        add_window(config, name, start, duration, comment=comment, mute_labels=mute_label or [])
    )


@window_app.command("list")
def window_list(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """List windows: config windows with their next opening, and one-off windows."""
    from upkeep.cli.runbooks import list_windows

    raise typer.Exit(list_windows(config, json_output=json_output))


@window_app.command("remove")
def window_remove(
    window_id: Annotated[
        int,
        typer.Argument(metavar="ID", help="A one-off window's id.", parser=options.record_id),
    ],
    config: ConfigOption = None,
) -> None:
    """Remove a one-off window."""
    from upkeep.cli.runbooks import remove_window

    raise typer.Exit(remove_window(config, window_id))


@app.command()
def prune(config: ConfigOption = None) -> None:
    """Apply the retention setting now: roll old results up into hourly buckets, drop the rest."""
    from upkeep.cli.history import run_prune

    raise typer.Exit(run_prune(config))


# --- alerts, acknowledgement and silences (issue #4) ------------------------------------------


@app.command()
def alerts(
    show_all: Annotated[
        bool, typer.Option("--all", help="Every alert opened within --since, not only open ones.")
    ] = False,
    since: Annotated[
        str,
        typer.Option(help="With --all: how far back, e.g. 7d.", parser=options.duration_text),
    ] = "7d",
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Alert state: open alerts with severity, since when, acknowledgement and what holds them."""
    from upkeep.cli.alerts import list_alerts

    raise typer.Exit(list_alerts(config, show_all=show_all, since=since, json_output=json_output))


@app.command()
def ack(
    alert_id: Annotated[
        int,
        typer.Argument(metavar="ALERT", help="The alert's id.", parser=options.record_id),
    ],
    for_: Annotated[
        str | None,
        typer.Option(
            "--for",
            help="Re-escalate if still firing after this long, e.g. 2h.",
            parser=options.duration_text,
        ),
    ] = None,
    comment: Annotated[str, typer.Option(help="What you are doing about it.")] = "",
    author: Annotated[str | None, typer.Option(help="Who acknowledges (default: you).")] = None,
    config: ConfigOption = None,
) -> None:
    """Acknowledge an alert: escalation stops (until --for lapses, if given)."""
    from upkeep.cli.alerts import acknowledge

    raise typer.Exit(acknowledge(config, alert_id, duration=for_, comment=comment, author=author))


silence_app = typer.Typer(
    cls=ReadableGroup, help="Silences: mute matching alerts for a while.", no_args_is_help=True
)
app.add_typer(silence_app, name="silence")


@silence_app.command("add")
def silence_add(
    match: Annotated[
        list[str],
        typer.Option(
            "--match",
            "-m",
            help="key=pattern (a label, check, target or severity; * globs).",
            parser=options.pair_text,
        ),
    ],
    for_: Annotated[
        str, typer.Option("--for", help="How long, e.g. 2h.", parser=options.duration_text)
    ],
    comment: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    start: Annotated[
        str,
        typer.Option(
            help="ISO time (config timezone if none) or 'now'.", parser=options.moment_text
        ),
    ] = "now",
    author: Annotated[str | None, typer.Option(help="Who (default: you).")] = None,
    config: ConfigOption = None,
) -> None:
    """Add a silence: matching alerts' notifications are recorded as muted, not sent."""
    from upkeep.cli.alerts import add_silence

    raise typer.Exit(
        add_silence(config, match, duration=for_, start=start, comment=comment, author=author)
    )


@silence_app.command("list")
def silence_list(
    show_all: Annotated[bool, typer.Option("--all", help="Ended and removed ones too.")] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """List silences that have not ended."""
    from upkeep.cli.alerts import list_silences

    raise typer.Exit(list_silences(config, show_all=show_all, json_output=json_output))


@silence_app.command("remove")
def silence_remove(
    silence_id: Annotated[
        int,
        typer.Argument(metavar="ID", help="The silence's id.", parser=options.record_id),
    ],
    config: ConfigOption = None,
) -> None:
    """End a silence now."""
    from upkeep.cli.alerts import remove_silence

    raise typer.Exit(remove_silence(config, silence_id))


# --- logs (issue #5) ------------------------------------------------------------------------

logs_app = typer.Typer(
    cls=ReadableGroup, help="Logs: rotation, retention, analysis.", no_args_is_help=True
)
app.add_typer(logs_app, name="logs")
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="List every action; change nothing.")]
LogsTargetsArgument = Annotated[
    list[str] | None,
    typer.Argument(help="Logs targets (default: every one a runbook step rotates/retains)."),
]


@logs_app.command("rotate")
def logs_rotate(
    targets: LogsTargetsArgument = None,
    dry_run: DryRunOption = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Rotate logs now, with the params of the runbook steps that rotate them (else the
    defaults: lossless copytruncate, zstd); exit 1 if a rotation failed."""
    from upkeep.cli.logs import run_log_task

    raise typer.Exit(
        run_log_task(config, "logs.rotate", targets or [], dry_run=dry_run, json_output=json_output)
    )


@logs_app.command("retain")
def logs_retain(
    targets: LogsTargetsArgument = None,
    dry_run: DryRunOption = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Apply log retention and archival now, as the runbook steps configure it; exit 1 if
    a copy could not be made or proven."""
    from upkeep.cli.logs import run_log_task

    raise typer.Exit(
        run_log_task(config, "logs.retain", targets or [], dry_run=dry_run, json_output=json_output)
    )


@logs_app.command("analyze")
def logs_analyze(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Log files (plain, .gz, .zst).")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="A logs target of the config instead of paths.")
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto, combined (access logs), json or plain.",
            parser=options.one_of("auto", "combined", "json", "plain"),
        ),
    ] = "auto",
    pattern: Annotated[
        list[str] | None,
        typer.Option(
            "--pattern", "-p", help="A regex to count (repeatable).", parser=options.regex_text
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only lines of the last 1h, 24h, 7d; an untimed line takes the previous one's.",
            parser=options.duration_text,
        ),
    ] = None,
    top: Annotated[
        int, typer.Option(help="How many endpoints to list.", parser=options.count)
    ] = 20,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Levels, patterns, security events; for access logs requests, error rate and
    p50/p95/p99 per endpoint and per 5 minutes."""
    from upkeep.cli.logs import analyze_logs

    raise typer.Exit(
        analyze_logs(
            config,
            paths or [],
            target=target,
            log_format=log_format,
            patterns=pattern or [],
            since=since,
            top=top,
            json_output=json_output,
        )
    )


# --- backups and drills (issue #6) ---------------------------------------------------------

backup_app = typer.Typer(
    cls=ReadableGroup, help="Backups: list, create, verify, restore, prune.", no_args_is_help=True
)
app.add_typer(backup_app, name="backup")


@backup_app.command("list")
def backup_list(
    source: Annotated[str | None, typer.Argument(help="One source.")] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Complete backups in the repository, with their verification; failed attempts."""
    from upkeep.cli.backup import backup_list as run

    raise typer.Exit(run(config, source, json_output=json_output))


@backup_app.command("create")
def backup_create(
    sources: Annotated[list[str] | None, typer.Argument(help="Sources (default: all).")] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Back up now: dump, zstd, encrypt (with backups.key), manifest, copy, retention;
    exit 1 if any source failed."""
    from upkeep.cli.backup import backup_create as run

    raise typer.Exit(run(config, sources or [], json_output=json_output))


@backup_app.command("verify")
def backup_verify(
    backup_id: Annotated[str, typer.Argument(help="A backup id.")],
    restore: Annotated[
        bool, typer.Option("--restore", help="Restore into a scratch copy and compare.")
    ] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Re-hash a backup against its manifest (and with --restore, restore and compare row
    counts and file hashes); exit 1 if anything differs."""
    from upkeep.cli.backup import backup_verify as run

    raise typer.Exit(run(config, backup_id, restore=restore, json_output=json_output))


@backup_app.command("restore")
def backup_restore(
    backup_id: Annotated[str, typer.Argument(help="A backup id.")],
    to: Annotated[
        str | None, typer.Option("--to", help="A source or target (default: the backup's).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    safety_backup: Annotated[
        bool,
        typer.Option(
            "--safety-backup/--no-safety-backup",
            help="Back up what is there before overwriting it.",
        ),
    ] = True,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Restore a backup (asks first, takes a safety backup, records everything).

    A Redis backup (and upkeep's own) is written to a new directory beside the config
    and not loaded: the output says how to load it."""
    from upkeep.cli.backup import backup_restore as run

    raise typer.Exit(
        run(config, backup_id, to=to, yes=yes, safety=safety_backup, json_output=json_output)
    )


@backup_app.command("prune")
def backup_prune(
    sources: Annotated[list[str] | None, typer.Argument(help="Sources (default: all).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would go and why; remove nothing.")
    ] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Apply backups.retention (restic-style keep rules; never the newest verified)."""
    from upkeep.cli.backup import backup_prune as run

    raise typer.Exit(run(config, sources or [], dry_run=dry_run, json_output=json_output))


@app.command("drill")
def drill(
    target: Annotated[str, typer.Argument(help="A backup source, or a target one backs up.")],
    rto: Annotated[
        str | None, typer.Option(help="Objective, e.g. 15m.", parser=options.duration_text)
    ] = None,
    rpo: Annotated[
        str | None, typer.Option(help="Objective, e.g. 24h.", parser=options.duration_text)
    ] = None,
    take_backup: Annotated[
        bool, typer.Option("--take-backup", help="Take a new backup first.")
    ] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Restore drill: restore the newest backup into a scratch copy, validate, measure RTO
    and RPO against the objectives, record the report; exit 1 if it did not pass."""
    from upkeep.cli.backup import run_drill

    raise typer.Exit(
        run_drill(
            config, target, rto=rto, rpo=rpo, take_backup=take_backup, json_output=json_output
        )
    )


# --- incidents and reliability figures (issue #4) ---------------------------------------------

LabelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--label",
        "-l",
        help="Only alerts/checks with label k=v (repeatable).",
        parser=options.pair_text,
    ),
]
incidents_app = typer.Typer(
    cls=ReadableGroup, help="Incidents: alerts that fired, with their timelines."
)
app.add_typer(incidents_app, name="incidents")


@incidents_app.callback(invoke_without_command=True)
def incidents_list(
    ctx: typer.Context,
    since: SinceOption = "30d",
    open_only: Annotated[bool, typer.Option("--open", help="Only unresolved incidents.")] = False,
    label: LabelOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """List incidents newest first (or: incidents show ID, note ID TEXT, publish ID TEXT)."""
    if ctx.invoked_subcommand is not None:
        return
    from upkeep.cli.incidents import list_incidents

    raise typer.Exit(
        list_incidents(config, since, label or [], open_only=open_only, json_output=json_output)
    )


@incidents_app.command("show")
def incidents_show(
    incident_id: Annotated[
        int,
        typer.Argument(metavar="ID", help="The incident's id.", parser=options.record_id),
    ],
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show one incident and its timeline."""
    from upkeep.cli.incidents import show_incident

    raise typer.Exit(show_incident(config, incident_id, json_output=json_output))


@incidents_app.command("note")
def incidents_note(
    incident_id: Annotated[
        int,
        typer.Argument(metavar="ID", help="The incident's id.", parser=options.record_id),
    ],
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The note.")],
    author: Annotated[
        str | None, typer.Option(help="Who writes it (default: the OS user).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Add a note to an incident's timeline."""
    from upkeep.cli.incidents import note_incident

    raise typer.Exit(note_incident(config, incident_id, text, author=author))


@incidents_app.command("publish")
def incidents_publish(
    incident_id: Annotated[
        int,
        typer.Argument(metavar="ID", help="The incident's id.", parser=options.record_id),
    ],
    text: Annotated[
        str, typer.Argument(metavar="TEXT", help="What the public status page should say.")
    ],
    author: Annotated[
        str | None, typer.Option(help="Who publishes it (default: the OS user).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Publish an update on an incident for the public status page (its notes and
    messages never appear there; secrets are masked)."""
    from upkeep.cli.incidents import publish_update

    raise typer.Exit(publish_update(config, incident_id, text, author=author))


@app.command()
def stats(
    since: SinceOption = "30d",
    until: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="End of the period (default now): 'now' or an ISO time.",
            parser=options.moment_text,
        ),
    ] = None,
    label: LabelOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show uptime, incidents, MTTR, MTBF, MTTA and response targets met per check and target."""
    from upkeep.cli.incidents import show_stats

    raise typer.Exit(show_stats(config, since, label or [], json_output=json_output, until=until))


# --- reports (issue #14) ---------------------------------------------------------------------


@app.command()
def report(
    kind: Annotated[
        str,
        typer.Argument(
            metavar="KIND",
            help="daily, weekly, monthly or quarterly.",
            parser=options.one_of("daily", "weekly", "monthly", "quarterly"),
        ),
    ],
    since: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION|TIME",
            help="Start of the period instead of the last complete day/week/month/quarter: "
            "a duration back from now (7d) or a time (ISO, in the config's zone).",
            parser=options.since_text,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="End of a --since period (default now): 'now' or an ISO time.",
            parser=options.moment_text,
        ),
    ] = None,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="html, md or pdf.",
            parser=options.one_of("html", "md", "pdf"),
        ),
    ] = "html",
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Write the report to FILE (default: stdout)."),
    ] = None,
    config: ConfigOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report's figures as JSON instead.")
    ] = False,
) -> None:
    """Report on the last complete day, ISO week, month or quarter (in the config's
    timezone): uptime against targets, incidents, slowest and failing checks, runs,
    backups and drills, logs, certificates."""
    from upkeep.cli.report import run_report

    raise typer.Exit(
        run_report(
            config,
            kind,
            since=since,
            until=until,
            output_format=output_format,
            out=out,
            json_output=json_output,
        )
    )


# --- notification channels and the outbox (issue #4) ------------------------------------------

notify_app = typer.Typer(
    cls=ReadableGroup, help="Notification channels and the outbox.", no_args_is_help=True
)
app.add_typer(notify_app, name="notify")


@notify_app.command("test")
def notify_test(
    channel: Annotated[str, typer.Argument(help="The channel to send a test message to.")],
    config: ConfigOption = None,
) -> None:
    """Send a test message to a channel now (not through the outbox); exit 0 if it was taken."""
    from upkeep.cli.notify import send_test

    raise typer.Exit(send_test(config, channel))


@notify_app.command("outbox")
def notify_outbox(
    status: Annotated[
        str | None,
        typer.Option(
            help="Only this status: pending, sending, sent, dead or muted.",
            parser=options.one_of(*options.OUTBOX_STATUSES),
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(help="At most this many notifications.", parser=options.count)
    ] = 50,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """List recent notifications in the outbox: channel, status, attempts, next try, last error."""
    from upkeep.cli.notify import list_outbox

    raise typer.Exit(list_outbox(config, status=status, limit=limit, json_output=json_output))


# --- accounts of the web face (issue #14) -------------------------------------------------------

user_app = typer.Typer(
    cls=ReadableGroup, help="Users who sign in to the web face.", no_args_is_help=True
)
app.add_typer(user_app, name="user")
PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of stdin instead of asking twice.",
    ),
]


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The user's name (letters, digits, . _ @ -).")],
    role: Annotated[
        str,
        typer.Option(
            metavar="ROLE",
            help="viewer (reads), operator (acks, silences, runs) or admin (approves, "
            "manages users and tokens).",
            parser=options.one_of("viewer", "operator", "admin"),
        ),
    ],
    password_stdin: PasswordStdinOption = False,
    config: ConfigOption = None,
) -> None:
    """Add a user; the password is asked for twice (never an argument)."""
    from upkeep.cli.accounts import add_user

    raise typer.Exit(add_user(config, name, role, password_stdin=password_stdin))


@user_app.command("list")
def user_list(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """List users: name, role, state, who added them and when."""
    from upkeep.cli.accounts import list_users

    raise typer.Exit(list_users(config, json_output=json_output))


@user_app.command("remove")
def user_remove(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    config: ConfigOption = None,
) -> None:
    """Remove a user and end their sessions."""
    from upkeep.cli.accounts import remove_user

    raise typer.Exit(remove_user(config, name))


@user_app.command("passwd")
def user_passwd(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    password_stdin: PasswordStdinOption = False,
    config: ConfigOption = None,
) -> None:
    """Set a user's password (asked for twice) and end their sessions."""
    from upkeep.cli.accounts import change_password

    raise typer.Exit(change_password(config, name, password_stdin=password_stdin))


token_app = typer.Typer(
    cls=ReadableGroup, help="API tokens kept in the store.", no_args_is_help=True
)
app.add_typer(token_app, name="token")


@token_app.command("add")
def token_add(
    name: Annotated[str, typer.Argument(help="The token's name (letters, digits, . _ @ -).")],
    scope: Annotated[
        str,
        typer.Option(
            metavar="SCOPES",
            help="What it may do, separated by commas: read, ack, run, approve, admin.",
        ),
    ],
    expires: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Expire after this long (90d); it never expires without it.",
            parser=options.duration_text,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Make an API token and print it once on stdout (only its SHA-256 is kept)."""
    from upkeep.cli.accounts import add_token

    raise typer.Exit(add_token(config, name, scope, expires_in=expires))


@token_app.command("list")
def token_list(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """List stored tokens: name, scopes, who made them, last use, expiry (never the token)."""
    from upkeep.cli.accounts import list_tokens

    raise typer.Exit(list_tokens(config, json_output=json_output))


@token_app.command("remove")
def token_remove(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    config: ConfigOption = None,
) -> None:
    """Revoke a stored token."""
    from upkeep.cli.accounts import remove_token

    raise typer.Exit(remove_token(config, name))


@app.command()
def ping(
    heartbeat_id: Annotated[
        str, typer.Argument(metavar="ID", help="The heartbeat's id (its `id:` in the config).")
    ],
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[-- COMMAND...]",
            help="Run this command: send a start, then its exit code with the end of its "
            "output; exit with its exit code.",
            show_default=False,
        ),
    ] = None,
    start: Annotated[bool, typer.Option("--start", help="The job started.")] = False,
    fail: Annotated[bool, typer.Option("--fail", help="The job failed.")] = False,
    log: Annotated[bool, typer.Option("--log", help="A message only (changes no state).")] = False,
    exit_code: Annotated[
        int | None,
        typer.Option(
            "--exit-code", metavar="N", help="The job's exit code: 0 success, 1-255 failure."
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            envvar="UPKEEP_URL",
            help="The daemon's address (default: alerting.public_url, else engine.listen).",
        ),
    ] = None,
    data_file: Annotated[
        str | None,
        typer.Option(
            metavar="FILE", help="Send the end (10 KiB) of this file as the log; - reads stdin."
        ),
    ] = None,
    retries: Annotated[
        int,
        typer.Option(
            metavar="N",
            parser=options.retries,
            help="Tries after a failed one, 1 s, 2 s, 4 s... apart (0 to 100).",
        ),
    ] = 5,
    config: ConfigOption = None,
) -> None:
    """Ping a heartbeat from a script or crontab: success, --start, --fail, --exit-code N.

    `upkeep ping ID -- COMMAND ARGS...` wraps a job: start, run, exit code and output.
    """
    from upkeep.cli.ping import run_ping

    raise typer.Exit(
        run_ping(
            heartbeat_id,
            start=start,
            fail=fail,
            log=log,
            exit_code=exit_code,
            url=url,
            data_file=data_file,
            retries=retries,
            config_path=config,
            command=command or [],
        )
    )


def main() -> None:
    """Run the CLI; report unexpected failures in one redacted line and exit 3 (unknown).

    SIGTERM and SIGINT end every command's process tree, unwind (a runbook run is recorded
    ``cancelled``) and exit 143 and 130 (see ``upkeep.cli.interrupts``).
    """
    from upkeep.cli import interrupts

    interrupts.install()
    try:
        app()
    except interrupts.Interrupted as interrupted:
        sys.stderr.write(f"upkeep: {interrupted}\n")
        sys.exit(interrupted.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("upkeep: interrupted\n")
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the last line of defence: never a raw traceback with secrets
        from upkeep.cli.common import active_redactor
        from upkeep.cli.output import safe_text

        reason = active_redactor().redact(f"{type(error).__name__}: {error}")
        sys.stderr.write(f"upkeep: internal error: {safe_text(reason)}\n")
        sys.exit(3)


if __name__ == "__main__":
    main()
