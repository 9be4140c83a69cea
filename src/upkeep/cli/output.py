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
  given as ``Text`` styles, never as markup in strings. Its width is the terminal's (or
  ``$COLUMNS``); output that goes to a pipe or a file without ``$COLUMNS`` is not wrapped
  at all (``UNWRAPPED_WIDTH``), so ``grep`` and ``awk`` see whole lines.

Tables follow one rule, applied by ``print_table`` to every table the CLI prints: a *key*
column (an id, a name, a date, a status, a number: what a person copies into the next
command or compares down the column) is as wide as its widest cell and is never cut,
wrapped or ellipsized; a *words* column (``name=value`` figures) may wrap between its
words, never inside one; *text* columns (messages, comments) take what is left and wrap.
When even the key columns do not fit, the table is printed wider than the screen (the
terminal wraps the line) rather than cutting an id.
"""

from __future__ import annotations

import functools
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO

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


UNWRAPPED_WIDTH = 10_000
"""The width of output to a pipe or a file without ``$COLUMNS``: wide enough that no line
upkeep prints is wrapped, so a script reads one record per line."""


def console_width(stream: TextIO, environment: dict[str, str] | None = None) -> int | None:
    """Given the stream a console writes to and the environment, return the width to force,
    or None to let rich measure it: None at a terminal or when ``$COLUMNS`` is a positive
    number (rich reads it), else ``UNWRAPPED_WIDTH``.

    Rich alone falls back to 80 columns for a pipe (or takes the size of whichever of
    stdin/stdout/stderr is a terminal), which cut tables and wrapped lines in ``make run``
    and ``| grep``.
    """
    columns = (os.environ if environment is None else environment).get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return None
    try:
        if stream.isatty():
            return None
    except (AttributeError, ValueError):  # a closed or odd stream: treat it as a pipe
        pass
    return UNWRAPPED_WIDTH


def make_console(*, stderr: bool = False) -> Console:
    """Return the console the CLI prints through (stdout, or stderr): markup, emoji and
    highlighting off, every rendered text escaped, as wide as the terminal or unwrapped
    into a pipe (see the module docstring)."""
    import sys

    width = console_width(sys.stderr if stderr else sys.stdout)
    return _safe_console_class()(
        stderr=stderr, markup=False, emoji=False, highlight=False, width=width
    )


ColumnKind = Literal["key", "number", "words", "text"]
TEXT_MIN_WIDTH = 20
"""The narrowest a text column is made (narrower, a message reads a word a line): when
the other columns leave less, the table grows past the screen instead."""
WORDS_MIN_WIDTH = 14
"""The narrowest a words column is made while the table still fits the screen that way
(on a narrower screen it goes down to its longest word)."""
COLUMN_GAP = 2
"""Spaces between two columns."""


@dataclass(frozen=True)
class Column:
    """One column of a table printed by ``print_table``.

    ``kind`` is ``key`` (never cut or wrapped), ``number`` (a key, right-aligned),
    ``words`` (wraps between words, never inside one) or ``text`` (free text: takes what
    the others leave and wraps).
    """

    header: str
    kind: ColumnKind = "key"


def _word_width(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(word) for word in text.split()), default=0)


def column_widths(
    columns: Sequence[Column], rows: Sequence[Sequence[Text]], width: int
) -> list[int]:
    """Given columns, rows of escaped cells and the screen width, return each column's
    content width by the rule of the module docstring: key and number columns as wide as
    their widest cell; words and text columns at their natural width when everything
    fits, else shrunk towards a comfortable minimum (``WORDS_MIN_WIDTH`` but at least the
    longest word, ``TEXT_MIN_WIDTH``) in proportion to what they would lose, and when
    even that does not fit, words columns down to their longest word. The sum (plus
    ``COLUMN_GAP`` between columns) exceeds ``width`` only when the narrowest does."""
    from rich.cells import cell_len

    natural = [
        max([cell_len(column.header), *(cell_len(row[index].plain) for row in rows)])
        for index, column in enumerate(columns)
    ]
    room = width - COLUMN_GAP * (len(columns) - 1)
    if sum(natural) <= room:
        return natural

    def minimums(comfortable: bool) -> list[int]:
        """The narrowest each column may be: comfortable, or as narrow as is whole."""
        found: list[int] = []
        for index, column in enumerate(columns):
            header = cell_len(column.header)
            if column.kind in ("key", "number"):
                found.append(natural[index])
                continue
            longest = max([_word_width(row[index].plain) for row in rows] or [0])
            words_floor = WORDS_MIN_WIDTH if comfortable else 0
            floor = TEXT_MIN_WIDTH if column.kind == "text" else words_floor
            found.append(
                max(header, longest if column.kind == "words" else 0, min(floor, natural[index]), 1)
            )
        return found

    minimum = minimums(comfortable=True)
    if sum(minimum) > room:
        minimum = minimums(comfortable=False)
    spare = room - sum(minimum)
    if spare <= 0:
        return minimum
    # Each flexible column gets back a share of the spare room in proportion to what it
    # would lose at its minimum; rounding leftovers go to the columns in order.
    losses = [natural[index] - minimum[index] for index in range(len(columns))]
    total_loss = sum(losses)
    widths = [minimum[index] + spare * losses[index] // total_loss for index in range(len(columns))]
    leftover = room - sum(widths)
    for index in range(len(columns)):
        if leftover <= 0:
            break
        if widths[index] < natural[index]:
            widths[index] += 1
            leftover -= 1
    return widths


def make_table(
    columns: Sequence[Column],
    rows: Iterable[Sequence[object]],
    width: int,
    *,
    title: str | None = None,
) -> Table:
    """Given columns, rows (values as for ``cells``) and the screen width, return a table
    laid out by the rule of the module docstring; print it with ``print_table`` (the
    table is wider than ``width`` when its key columns need it)."""
    from rich.table import Table

    escaped = [cells(*row) for row in rows]
    widths = column_widths(columns, escaped, width)
    total = sum(widths) + COLUMN_GAP * (len(columns) - 1)
    table = Table(
        title=title,
        header_style="bold",
        box=None,
        pad_edge=False,
        padding=(0, COLUMN_GAP, 0, 0),
        # Set only past the screen: a table with a width is stretched to it by rich.
        width=total if total > width else None,
    )
    for column, size in zip(columns, widths, strict=True):
        fixed = column.kind in ("key", "number")
        # "fold" everywhere: a key column is as wide as its widest cell, so it never
        # folds; were a measurement ever off, a folded id still shows every character,
        # where "ellipsis" would hide some (and "ignore" loses right-justification).
        table.add_column(
            column.header,
            width=size,
            no_wrap=fixed,
            overflow="fold",
            justify="right" if column.kind == "number" else "left",
        )
    for row in escaped:
        table.add_row(*row)
    return table


def print_table(
    out: Console,
    columns: Sequence[Column],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None = None,
) -> None:
    """Print rows as a table laid out for ``out``'s width (see ``make_table``), never
    cropped at the screen's edge."""
    out.print(make_table(columns, rows, out.width, title=title), crop=False)


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


RESULT_COLUMNS = (
    Column("status"),
    Column("check"),
    Column("target"),
    Column("value", "words"),
    Column("why", "text"),
    Column("ms", "number"),
)


def results_table(
    results: Sequence[CheckResult], condition_names: dict[str, frozenset[str]], width: int
) -> Table:
    """Given results, each check's condition metric names and the screen width, return a
    table with one row per result, worst first, laid out by ``make_table``: status, check
    and target whole, the figures wrapped between ``name=value`` pairs, the message
    wrapped in what is left. Print it with ``crop=False`` (see ``print_table``)."""
    from rich.text import Text

    order = {Status.CRITICAL: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.OK: 3}
    rows = [
        (
            # Escaped Text, not str: rich would read "[/dev/sda1]" in a plugin's message
            # as markup, and an escape sequence in it would reach the terminal.
            Text(result.status.label.upper(), style=STYLE[result.status]),
            result.check,
            result.target,
            headline_metrics(result, condition_names.get(result.check, frozenset())),
            result.message,
            f"{result.duration_ms:.0f}",
        )
        for result in sorted(results, key=lambda item: (order[item.status], item.check))
    ]
    return make_table(RESULT_COLUMNS, rows, width)


def summary_line(statuses: Sequence[Status]) -> str:
    """Given statuses, return ``N checks: a ok, b warning, ... — health 93%``."""
    counts = Counter(statuses)
    parts = [f"{counts[status]} {status.label}" for status in Status if counts[status]]
    health = 100.0 * counts[Status.OK] / len(statuses) if statuses else 100.0
    return f"{len(statuses)} checks: {', '.join(parts) or 'none'} - health {health:.0f}%"
