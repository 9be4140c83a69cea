"""Helpers shared by commands: exit codes, loading the config once, opening the store and
the pipeline, consoles, errors, local times, redacted logging."""

from __future__ import annotations

import contextlib
import getpass
import logging
import re
import sys
from collections.abc import Iterator
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from upkeep.core.redaction import Redactor

if TYPE_CHECKING:
    from rich.console import Console

    from upkeep.config.loader import LoadedConfig
    from upkeep.engine.pipeline import Pipeline
    from upkeep.store.store import Store

EXIT_USAGE = 2
"""Bad input (unknown runbook, malformed option) or a config error."""
EXIT_FAILED = 1
"""The operation ran but failed, or was refused (window closed)."""

_active = Redactor()


def active_redactor() -> Redactor:
    """Return the redactor of the config loaded in this process (empty before one is)."""
    return _active


class RedactingFilter(logging.Filter):
    """Masks known secrets in every log record before any handler formats it, and shows
    its control characters escaped (a log line quotes commands, servers and files)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from upkeep.cli.output import safe_text

        record.msg = safe_text(_active.redact(record.getMessage()), one_line=True)
        record.args = None
        return True


class StampedFormatter(logging.Formatter):
    """Formats ``<ISO time with zone> LEVEL logger: message``, the time in a given zone to
    the millisecond (``2030-01-01T10:00:00.123+01:00``): a daemon's log read days later,
    or merged with others, needs to say when each line happened, unambiguously."""

    def __init__(self, zone: tzinfo) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.zone = zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        """Given a record, return its creation time in ISO 8601 with the zone's offset."""
        del datefmt
        moment = datetime.fromtimestamp(record.created, self.zone)
        return moment.isoformat(timespec="milliseconds")


def setup_logging(level: int = logging.WARNING, *, stamped_in: tzinfo | None = None) -> None:
    """Send log records of ``level`` and above to stderr through the redacting filter;
    with ``stamped_in`` (the daemon's), each line starts with its time in that zone."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if stamped_in is not None:
        handler.setFormatter(StampedFormatter(stamped_in))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


_JSON_RAW_CONTROL = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def print_json(document: Any) -> None:
    """Print a JSON document (indented) on stdout: the ``--json`` output of every command.

    JSON escapes C0 characters itself; DEL, C1 and the bidi overrides, which it may leave
    raw, are written as ``\\uXXXX`` too (they can only stand inside strings), so the
    document is as safe to show on a terminal as the tables are.
    """
    import orjson

    text = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
    text = _JSON_RAW_CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    sys.stdout.write(text + "\n")


def console(stderr: bool = False) -> Console:
    """Return the console for stdout (or stderr): ``upkeep.cli.output.make_console``, with
    markup off and every control character escaped."""
    from upkeep.cli.output import make_console

    return make_console(stderr=stderr)


def missing_config(path: Path | None) -> str | None:
    """Given ``-c`` (or None), return what to tell a user whose config file does not exist
    (where it was looked for, and how to get one), or None if there is a file there."""
    import os

    from upkeep.config.loader import CONFIG_ENV, find_config_path

    found = find_config_path(path)
    if os.path.lexists(found):
        return None
    if path is not None:
        return f"no config file {str(found)!r} (given with -c): check the path"
    if os.environ.get(CONFIG_ENV):
        return f"no config file {str(found)!r} (from ${CONFIG_ENV}): check the variable"
    return (
        f"no config file: ./{found} does not exist here. Run `upkeep init` to write a "
        "starter config for this machine, or pass -c FILE (or set $UPKEEP_CONFIG)"
    )


def load_or_report(path: Path | None, *, check_channels: bool = False) -> LoadedConfig | None:
    """Given ``-c``, return the loaded config, or print every error to stderr and return None.

    ``check_channels`` also parses the channels' Apprise URLs (see ``load_config``).
    """
    from rich.text import Text

    from upkeep.config.errors import ConfigError
    from upkeep.config.loader import load_config

    missing = missing_config(path)
    if missing is not None:
        print_error(missing)
        return None
    try:
        loaded = load_config(path, check_channels=check_channels)
    except ConfigError as error:
        err = console(stderr=True)
        for issue in error.issues:
            # The issue quotes config text ("[/x]" in a condition); it must not be markup.
            err.print(Text.assemble(("error", "red"), " ", str(issue)), soft_wrap=True)
        err.print(f"{len(error.issues)} error(s); nothing was applied.", markup=False)
        return None
    _active.merge(loaded.redactor)
    return loaded


def try_open_store(loaded: LoadedConfig) -> tuple[Store | None, str | None]:
    """Given a config, return (its open store, None), or print why it cannot be opened and
    return (None, the reason, redacted)."""
    from upkeep.store.store import StoreError

    try:
        return loaded.config.store.open(loaded.base_dir), None
    except StoreError as error:
        reason = _active.redact(str(error))
        print_error(reason)
        return None, reason


def open_store(loaded: LoadedConfig) -> Store | None:
    """Given a config, return its open store, or print why it cannot be opened and return None."""
    return try_open_store(loaded)[0]


def new_pipeline(
    loaded: LoadedConfig, store: Store | None, open_error: str | None = None
) -> Pipeline:
    """Given a config and its store (None if it could not be opened, ``open_error`` saying
    why), return the pipeline a one-shot command records, alerts and delivers through
    (``engine/pipeline.py``). The caller closes it; the store stays the caller's."""
    from upkeep.engine.pipeline import Pipeline

    # The command prints what the pipeline reports (``print_problems``): the dispatcher's
    # own log line would say each failed delivery twice.
    logging.getLogger("upkeep.alerting.delivery").setLevel(logging.ERROR)
    return Pipeline(loaded, store, open_error=open_error)


def print_problems(problems: list[str]) -> None:
    """Print each problem a pipeline or an after-backup check reported on stderr."""
    for problem in problems:
        print_error(problem)


def print_error(message: str) -> None:
    """Print ``upkeep: message`` on stderr, redacted, every control character escaped."""
    from upkeep.cli.output import untrusted

    console(stderr=True).print(untrusted(f"upkeep: {_active.redact(message)}"))


def who() -> str:
    """Return the name of the person at this terminal, for run records and decisions."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def local_time(moment: datetime | None, zone: tzinfo, *, seconds: bool = False) -> str:
    """Given a moment (or None) and a zone (the config's ``timezone``), return it as
    ``YYYY-MM-DD HH:MM TZ`` there (``HH:MM:SS`` with ``seconds``), or ``-`` for None: the
    one form every command prints a time in."""
    if moment is None:
        return "-"
    return moment.astimezone(zone).strftime(
        "%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z"
    )


_ISO_MOMENT = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?P<seconds>:\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})"
)


def local_times_in(text: str, zone: tzinfo) -> str:
    """Given stored text (an event's detail, a run's message) and the config's zone, return
    it with every ISO 8601 moment that has an offset (``2026-03-01T08:00:00+00:00``)
    written as ``local_time`` writes it (seconds kept when it had them); other text is
    unchanged. Stored text says moments in UTC, written before a zone was known."""
    from datetime import datetime

    def replace(match: re.Match[str]) -> str:
        shown = match.group()
        try:
            moment = datetime.fromisoformat(shown.replace("Z", "+00:00"))
        except ValueError:
            return shown
        return local_time(moment, zone, seconds=match.group("seconds") is not None)

    return _ISO_MOMENT.sub(replace, text)


def load_for_command(config_path: Path | None, level: int | None = None) -> LoadedConfig | None:
    """Given ``-c``, set up logging (warnings, or ``level``) and return the loaded config,
    or print every error and return None."""
    setup_logging(logging.WARNING if level is None else level)
    return load_or_report(config_path)


@contextlib.contextmanager
def config_and_store(config_path: Path | None) -> Iterator[tuple[LoadedConfig, Store] | None]:
    """Load the config and open its store for one command; yield None if either fails
    (the reason is already printed). The store is closed when the block ends."""
    loaded = load_for_command(config_path)
    store = open_store(loaded) if loaded is not None else None
    if loaded is None or store is None:
        yield None
        return
    try:
        yield loaded, store
    finally:
        store.close()


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """Given ``k=v`` strings, return them as a dict; raise ValueError on a malformed pair."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"--label expects key=value, got {pair!r}")
        labels[key.strip()] = value.strip()
    return labels
