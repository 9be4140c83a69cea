"""Rendering results for people: a table readable at a glance, and the summary line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from upkeep.status import Status

if TYPE_CHECKING:
    from rich.table import Table

    from upkeep.engine.results import CheckResult

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
        # Text, not str: rich would read "[/dev/sda1]" in a plugin's message as markup,
        # dropping it or failing on it.
        table.add_row(
            Text(result.status.label.upper(), style=STYLE[result.status]),
            Text(result.check),
            Text(result.target),
            Text(value),
            Text(result.message),
            Text(milliseconds),
        )
    return table


def summary_line(statuses: Sequence[Status]) -> str:
    """Given statuses, return ``N checks: a ok, b warning, ... — health 93%``."""
    counts = Counter(statuses)
    parts = [f"{counts[status]} {status.label}" for status in Status if counts[status]]
    health = 100.0 * counts[Status.OK] / len(statuses) if statuses else 100.0
    return f"{len(statuses)} checks: {', '.join(parts) or 'none'} - health {health:.0f}%"
