"""Rendering for people: the terminal-safe output layer, the results table, the summary line.

Text upkeep prints comes from commands, plugins, probes, log files, stored records and
servers, so none of it may reach a terminal raw: an ``ESC`` sequence can clear the screen,
retitle the window or forge a line, ``\r`` can overwrite one, and a bidi override can
reorder what a line seems to say. The rules, applied by this module:

* ``safe_text`` shows every control character escaped: C0 except newline and tab, ``\r``,
  DEL, C1 (U+0080-U+009F) and the bidi overrides and isolates (U+202A-U+202E,
  U+2066-U+2069); ``ESC[2J`` prints as ``\x1b[2J``. With ``one_line`` the newline is
  escaped too (``\n``), for fields that must stay on their line (a message in a table).
* ``untrusted`` wraps such text in a rich ``Text``: never read as markup (``[bold]`` in a
  command's output stays ``[bold]``) and escaped before layout, so columns line up.
* ``make_console`` is the only console the CLI prints through: markup, emoji codes and
  highlighting are off, and it escapes every piece of text it renders as a last line of
  defence, so a renderer that forgot ``untrusted`` still prints nothing raw. Styles are
  given as ``Text`` styles, never as markup in strings.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from upkeep.core.status import Status

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.segment import Segment
    from rich.table import Table
    from rich.text import Text

    from upkeep.core.results import CheckResult

_CONTROL = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
"""Characters never printed raw: C0 but tab and newline, DEL, C1, bidi overrides/isolates."""
_UNSAFE = re.compile(f"[{_CONTROL}]")
_UNSAFE_ONE_LINE = re.compile(f"[{_CONTROL}\n]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    named = _NAMED.get(character)
    if named is not None:
        return named
    code = ord(character)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe_text(text: str, *, one_line: bool = False) -> str:
    """Given text from anywhere, return it fit for a terminal: every control character
    (see the module docstring) shown as an escape (``\\x1b``, ``\\r``, ``\\u202e``); newline
    and tab are kept, the newline escaped too with ``one_line``."""
    return (_UNSAFE_ONE_LINE if one_line else _UNSAFE).sub(_escape, text)


def output_lines(text: str) -> list[str]:
    """Given multi-line text from anywhere, return its lines, split on ``\\n`` only:
    ``str.splitlines`` also splits on ``\\r``, C1 NEL and U+2028, which must stay visible
    (escaped) on their line instead of starting a new one."""
    return text.split("\n") if text else []


def untrusted(text: str, style: str = "", *, one_line: bool = False) -> Text:
    """Given text from anywhere and a style, return a rich ``Text`` of it escaped
    (``safe_text``) that is never read as markup."""
    from rich.text import Text

    return Text(safe_text(text, one_line=one_line), style=style)


def cells(*values: object) -> list[Text]:
    """Given a table row's values, return them as escaped one-line ``Text`` cells; a
    ``Text`` keeps its style, anything else is shown as ``str(value)``."""
    from rich.text import Text

    row = []
    for value in values:
        if isinstance(value, Text):
            row.append(untrusted(value.plain, str(value.style or ""), one_line=True))
        else:
            row.append(untrusted("" if value is None else str(value), one_line=True))
    return row


@functools.cache
def _safe_console_class() -> type[Console]:
    from rich.console import Console
    from rich.segment import Segment

    class SafeConsole(Console):
        """A console that escapes control characters in every piece of text it renders
        (rich's own control segments, such as a progress bar's cursor moves, pass)."""

        def render(
            self, renderable: RenderableType, options: ConsoleOptions | None = None
        ) -> Iterable[Segment]:
            for segment in super().render(renderable, options):
                if segment.control or not _UNSAFE.search(segment.text):
                    yield segment
                else:
                    yield Segment(safe_text(segment.text), segment.style, segment.control)

    return SafeConsole


def make_console(*, stderr: bool = False) -> Console:
    """Return the console the CLI prints through (stdout, or stderr): markup, emoji and
    highlighting off, every rendered text escaped (see the module docstring)."""
    return _safe_console_class()(stderr=stderr, markup=False, emoji=False, highlight=False)


STYLE = {
    Status.OK: "bold green",
    Status.WARNING: "bold yellow",
    Status.CRITICAL: "bold red",
    Status.UNKNOWN: "bold magenta",
}
VALUE_LIMIT = 3


def format_value(value: Any) -> str:
    """Given a metric value, return it short: floats to 3 significant decimals, bools as words."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def headline_metrics(result: CheckResult, condition_names: frozenset[str]) -> str:
    """Given a result, return its most telling metrics: the ones its conditions read, else the first few."""
    chosen = [name for name in result.metrics if name in condition_names] or list(result.metrics)[
        :VALUE_LIMIT
    ]
    return " ".join(f"{name}={format_value(result.metrics[name])}" for name in chosen[:VALUE_LIMIT])


def results_table(
    results: Sequence[CheckResult], condition_names: dict[str, frozenset[str]], width: int
) -> Table:
    """Given results, each check's condition metric names and the screen width, return a
    table with one line per result, worst first.

    Long text is cut at the edge rather than wrapped (the full message is in ``--json`` and
    ``upkeep history``), so a screenful reads at a glance at any width.
    """
    from rich.table import Table
    from rich.text import Text

    order = {Status.CRITICAL: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.OK: 3}
    rows = [
        (
            result,
            headline_metrics(result, condition_names.get(result.check, frozenset())),
            f"{result.duration_ms:.0f}",
        )
        for result in sorted(results, key=lambda item: (order[item.status], item.check))
    ]

    def fit(values: list[str], header: str, cap: int) -> int:
        return min(cap, max([len(header), *(len(value) for value in values)]))

    check_width = fit([row[0].check for row in rows], "check", 28)
    target_width = fit([row[0].target for row in rows], "target", 16)
    value_width = fit([row[1] for row in rows], "value", 32)
    ms_width = fit([row[2] for row in rows], "ms", 7)
    gaps = 2 * 5
    why_width = width - (8 + check_width + target_width + value_width + ms_width + gaps)
    # On a narrow screen the value, check and target columns give up room before "why".
    for _ in range(64):
        if why_width >= 20:
            break
        widest = max(
            ("value", value_width),
            ("check", check_width),
            ("target", target_width),
            key=lambda pair: pair[1],
        )
        if widest[1] <= 10:
            break
        if widest[0] == "value":
            value_width -= 1
        elif widest[0] == "check":
            check_width -= 1
        else:
            target_width -= 1
        why_width += 1
    why_width = max(why_width, 12)

    table = Table(header_style="bold", box=None, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column("status", width=8, no_wrap=True)
    for header, size in (
        ("check", check_width),
        ("target", target_width),
        ("value", value_width),
        ("why", why_width),
    ):
        table.add_column(header, width=size, no_wrap=True, overflow="ellipsis")
    table.add_column("ms", width=ms_width, justify="right", no_wrap=True)
    for result, value, milliseconds in rows:
        # Escaped Text, not str: rich would read "[/dev/sda1]" in a plugin's message as
        # markup, and an escape sequence in it would reach the terminal.
        table.add_row(
            *cells(
                Text(result.status.label.upper(), style=STYLE[result.status]),
                result.check,
                result.target,
                value,
                result.message,
                milliseconds,
            )
        )
    return table


def summary_line(statuses: Sequence[Status]) -> str:
    """Given statuses, return ``N checks: a ok, b warning, ... — health 93%``."""
    counts = Counter(statuses)
    parts = [f"{counts[status]} {status.label}" for status in Status if counts[status]]
    health = 100.0 * counts[Status.OK] / len(statuses) if statuses else 100.0
    return f"{len(statuses)} checks: {', '.join(parts) or 'none'} - health {health:.0f}%"
