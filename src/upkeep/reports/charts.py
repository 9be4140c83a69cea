"""Charts as SVG text, drawn by matplotlib (its SVG backend; no display, no files).

One module draws every chart a page or a report shows, so a check's metric looks the same
on its dashboard page, in an HTML email and in a PDF. Each function is pure: given the
points, return an ``<svg>`` element as text, safe to embed in HTML (matplotlib escapes
every label it writes).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_DRAWING = threading.Lock()
"""matplotlib's text layout caches are not thread-safe; charts are drawn one at a time."""

WARNING_COLOUR = "#b45309"
CRITICAL_COLOUR = "#b91c1c"
LINE_COLOUR = "#1d4ed8"


@dataclass(frozen=True)
class Threshold:
    """A horizontal line drawn across a chart: the value, its name and its colour."""

    value: float
    label: str
    colour: str


def _svg(figure: Figure) -> str:
    """Given a figure, return it as an ``<svg>`` element (the XML prologue left out)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buffer.getvalue()
    start = text.find("<svg")
    return text[start:] if start >= 0 else text


def _figure(width_in: float, height_in: float) -> Figure:
    # matplotlib is imported on the first chart, not with the module: it costs ~0.5 s,
    # which every daemon start and every command would otherwise pay.
    import matplotlib

    matplotlib.use("svg")  # the SVG backend: no display, no GUI toolkit
    from matplotlib.figure import Figure

    # A fixed salt makes the element ids stable: the same data gives the same bytes.
    matplotlib.rcParams["svg.hashsalt"] = "upkeep"
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, small
    return Figure(figsize=(width_in, height_in), dpi=96)


def metric_chart(
    times: Sequence[datetime],
    values: Sequence[float],
    *,
    title: str,
    unit: str = "",
    thresholds: Sequence[Threshold] = (),
    width_in: float = 8.0,
    height_in: float = 2.8,
) -> str:
    """Given a metric's points (aware times, values of the same length) and the thresholds
    to draw, return a line chart as SVG text; an empty series gives a chart saying so.

    Raise ValueError if ``times`` and ``values`` differ in length.
    """
    if len(times) != len(values):
        raise ValueError("times and values must be of the same length")
    with _DRAWING:
        figure = _figure(width_in, height_in)
        axes = figure.add_subplot()
        if times:
            # matplotlib plots datetimes through its date converter; its stubs say floats.
            axes.plot(
                list(times),  # type: ignore[arg-type]
                list(values),
                color=LINE_COLOUR,
                linewidth=1.4,
                label=title,
            )
            from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

            locator = AutoDateLocator()  # type: ignore[no-untyped-call]
            axes.xaxis.set_major_locator(locator)
            axes.xaxis.set_major_formatter(
                ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
            )
        else:
            axes.text(0.5, 0.5, "no data in this period", ha="center", va="center")
        for threshold in thresholds:
            axes.axhline(
                threshold.value,
                color=threshold.colour,
                linestyle="--",
                linewidth=1.0,
                label=f"{threshold.label} {threshold.value:g}{unit}",
            )
        axes.set_title(title, fontsize=10, loc="left")
        if unit:
            axes.set_ylabel(unit)
        axes.grid(alpha=0.3)
        if times or thresholds:
            axes.legend(fontsize=8, loc="upper left", frameon=False)
        return _svg(figure)


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    unit: str = "",
    target: float | None = None,
    floor: float | None = None,
    width_in: float = 8.0,
    height_in: float = 2.8,
) -> str:
    """Given one value per label (uptime per day, failures per check), return a bar chart
    as SVG text, with ``target`` drawn as a line when given; ``floor`` starts the value
    axis there instead of at 0 (uptimes of 99.9 and 99.99 differ visibly).

    Raise ValueError if ``labels`` and ``values`` differ in length.
    """
    if len(labels) != len(values):
        raise ValueError("labels and values must be of the same length")
    with _DRAWING:
        figure = _figure(width_in, height_in)
        axes = figure.add_subplot()
        positions = list(range(len(labels)))
        axes.bar(positions, list(values), color=LINE_COLOUR)
        axes.set_xticks(positions, list(labels), rotation=45, ha="right", fontsize=7)
        if target is not None:
            axes.axhline(target, color=CRITICAL_COLOUR, linestyle="--", linewidth=1.0)
        if floor is not None:
            top = max([floor, *values, *([] if target is None else [target])])
            axes.set_ylim(floor, top + (top - floor) * 0.05 or 1.0)
        axes.set_title(title, fontsize=10, loc="left")
        if unit:
            axes.set_ylabel(unit)
        axes.grid(axis="y", alpha=0.3)
        return _svg(figure)
