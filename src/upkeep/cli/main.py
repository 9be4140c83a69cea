"""``upkeep``: the entry point. Imports stay lazy so ``upkeep --help`` answers at once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from upkeep import __version__

app = typer.Typer(
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
        str | None, typer.Argument(metavar="[CHECK]", help="One check (default: all).")
    ] = None,
    since: Annotated[
        str, typer.Option(help="How far back: a duration (24h, 7d) or an ISO time.")
    ] = "24h",
    limit: Annotated[int, typer.Option(help="At most this many results.")] = 200,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show past results, newest first."""
    from upkeep.cli.history import run_history

    raise typer.Exit(run_history(config, check_name, since, limit, json_output=json_output))


@app.command()
def prune(config: ConfigOption = None) -> None:
    """Apply the retention setting now: roll old results up into hourly buckets, drop the rest."""
    from upkeep.cli.history import run_prune

    raise typer.Exit(run_prune(config))


def main() -> None:
    """Run the CLI; report unexpected failures in one redacted line and exit 3 (unknown)."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the last line of defence: never a raw traceback with secrets
        from upkeep.cli.common import active_redactor

        sys.stderr.write(
            f"upkeep: internal error: {active_redactor().redact(f'{type(error).__name__}: {error}')}\n"
        )
        sys.exit(3)


if __name__ == "__main__":
    main()
