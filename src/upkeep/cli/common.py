"""Helpers shared by commands: loading the config once, consoles, redacted logging."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from upkeep.core.redaction import Redactor

if TYPE_CHECKING:
    from rich.console import Console

    from upkeep.config.loader import LoadedConfig
    from upkeep.store.store import Store

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


def setup_logging(level: int = logging.WARNING) -> None:
    """Send warnings to stderr through the redacting filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
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


def load_or_report(path: Path | None, *, check_channels: bool = False) -> LoadedConfig | None:
    """Given ``-c``, return the loaded config, or print every error to stderr and return None.

    ``check_channels`` also parses the channels' Apprise URLs (see ``load_config``).
    """
    from rich.text import Text

    from upkeep.config.errors import ConfigError
    from upkeep.config.loader import load_config

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


def open_store(loaded: LoadedConfig) -> Store | None:
    """Given a config, return its open store, or print why it cannot be opened and return None."""
    from upkeep.store.store import Store, StoreError

    try:
        return Store.open(loaded.config.store, loaded.base_dir)
    except StoreError as error:
        console(stderr=True).print(f"upkeep: {_active.redact(str(error))}", markup=False)
        return None
