"""Commands with Nagios plugin semantics: the exit code is the status, perfdata are metrics.

Any of the thousands of existing Nagios/Icinga/monitoring-plugins checks can be a
target. The plugin contract (https://www.monitoring-plugins.org/doc/guidelines.html):

* exit code 0/1/2/3 is OK/WARNING/CRITICAL/UNKNOWN; anything else is UNKNOWN;
* the first line of output is the message, up to an optional ``|``;
* after that ``|`` come performance data, ``'label'=value[UOM];[warn];[crit];[min];[max]``
  separated by spaces, and more of them after the first ``|`` on a later line and on
  every line after it.

The parsing below is pure so it can be tested without running anything.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from upkeep.core.models import StrictModel
from upkeep.core.redaction import SecretMarker
from upkeep.core.results import MetricValue
from upkeep.core.status import Status, worst
from upkeep.io.process import ProcessStartError, run_process
from upkeep.probes.base import (
    MetricSpec,
    Probe,
    ProbeContext,
    ProbeOutcome,
    TargetBase,
    TargetUnreachable,
)

EXIT_STATUS = {0: Status.OK, 1: Status.WARNING, 2: Status.CRITICAL, 3: Status.UNKNOWN}
"""Nagios exit codes; any other code (a crash, a signal) means UNKNOWN."""

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_ONLY = re.compile(rf"^{_NUMBER}$")
# Some plugins print a decimal comma under a non-C locale; in perfdata a comma is never a
# separator, so reading it as a decimal point loses nothing.
_VALUE = re.compile(r"^([-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?)(\S*)$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NOT_IDENTIFIER_CHARS = re.compile(r"[^A-Za-z0-9_]+")


class CommandTarget(TargetBase):
    """A program run as argv (never through a shell) whose exit code is a Nagios status.

    ``env`` entries are added to upkeep's environment for the command; their values are
    secrets and never appear in output. A relative program with a slash (``./check.sh``)
    is relative to the config file's directory; a bare name is looked up on ``PATH``.
    """

    path_fields: ClassVar[tuple[str, ...]] = ("command",)

    kind: Literal["command"] = "command"
    command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    env: Annotated[dict[str, str], SecretMarker(), Field(default_factory=dict)]


# ---------------------------------------------------------------------------------------
# Ranges and perfdata (pure functions)


@dataclass(frozen=True)
class NagiosRange:
    """A threshold range; a value alerts when it is outside ``start..end`` (inside with ``@``)."""

    start: float
    end: float
    inside: bool = False

    def alerts(self, value: float) -> bool:
        """Given a value, return True if it breaches this threshold."""
        within = self.start <= value <= self.end
        return within if self.inside else not within


def _range_number(text: str, what: str, whole: str) -> float:
    if not _NUMBER_ONLY.match(text):
        raise ValueError(f"{whole!r} is not a Nagios range: {what} {text!r} is not a number")
    return float(text)


def parse_range(text: str) -> NagiosRange:
    """Given Nagios range syntax, return the range; raise ValueError if it is malformed.

    ``10`` is 0..10, ``10:`` is 10..infinity, ``~:10`` is -infinity..10, ``10:20`` is
    10..20, ``:10`` is 0..10; a value alerts when outside. A leading ``@`` inverts it:
    ``@10:20`` alerts when 10 <= value <= 20. The start must not exceed the end.
    """
    body = text.strip()
    inside = body.startswith("@")
    if inside:
        body = body[1:]
    if not body:
        raise ValueError(f"{text!r} is not a Nagios range: it is empty")
    if ":" in body:
        start_text, end_text = body.split(":", 1)
        if start_text == "~":
            start = -math.inf
        elif start_text == "":
            start = 0.0
        else:
            start = _range_number(start_text, "start", text)
        end = math.inf if end_text == "" else _range_number(end_text, "end", text)
    else:
        start, end = 0.0, _range_number(body, "end", text)
    if start > end:
        raise ValueError(f"{text!r} is not a Nagios range: start {start:g} exceeds end {end:g}")
    return NagiosRange(start, end, inside)


@dataclass(frozen=True)
class PerfDatum:
    """One performance data item as the plugin wrote it, with the unit split off."""

    label: str
    value: float | int
    uom: str = ""
    warn: str | None = None
    crit: str | None = None
    minimum: float | None = None
    maximum: float | None = None


def _optional_float(text: str | None) -> float | None:
    if text is None or not _NUMBER_ONLY.match(text.strip()):
        return None
    return float(text)


def _parse_datum(label: str, field: str) -> PerfDatum | None:
    parts = field.split(";")
    match = _VALUE.match(parts[0])
    if match is None:
        return None  # "U" (undetermined) or garbage: no number to report.
    number_text, uom = match.groups()
    number_text = number_text.replace(",", ".")
    value: float | int = (
        int(number_text) if re.fullmatch(r"[-+]?\d+", number_text) else float(number_text)
    )
    padded = [*parts[1:5], *([""] * (4 - len(parts[1:5])))]
    warn, crit, minimum, maximum = (part.strip() or None for part in padded)
    return PerfDatum(
        label=label,
        value=value,
        uom=uom,
        warn=warn,
        crit=crit,
        minimum=_optional_float(minimum),
        maximum=_optional_float(maximum),
    )


def parse_perfdata(text: str) -> list[PerfDatum]:
    """Given the performance data part of plugin output, return its items in order.

    Items are separated by whitespace. A label in single quotes may contain spaces; a
    doubled quote inside it stands for one quote. Items that are malformed, have no
    label, or whose value is ``U`` (undetermined) are skipped: a plugin's sloppy perfdata
    should not hide the rest. Thresholds are kept as written; see ``parse_range``.
    """
    items: list[PerfDatum] = []
    index, length = 0, len(text)
    while index < length:
        if text[index].isspace():
            index += 1
            continue
        if text[index] == "'":
            cursor = index + 1
            chars: list[str] = []
            while cursor < length:
                if text[cursor] == "'":
                    if text.startswith("''", cursor):
                        chars.append("'")
                        cursor += 2
                        continue
                    break
                chars.append(text[cursor])
                cursor += 1
            if cursor >= length:
                break  # Unterminated quote: nothing after it can be trusted.
            label = "".join(chars)
            cursor += 1
        else:
            cursor = index
            while cursor < length and text[cursor] != "=" and not text[cursor].isspace():
                cursor += 1
            label = text[index:cursor]
        if cursor >= length or text[cursor] != "=":
            # No "=" right after the label: skip this word and resynchronise on the next.
            while cursor < length and not text[cursor].isspace():
                cursor += 1
            index = cursor
            continue
        end = cursor + 1
        while end < length and not text[end].isspace():
            end += 1
        datum = _parse_datum(label, text[cursor + 1 : end]) if label else None
        if datum is not None:
            items.append(datum)
        index = end
    return items


@dataclass(frozen=True)
class PluginOutput:
    """Plugin output split the Nagios way."""

    message: str
    long_text: str
    perfdata: str


def split_plugin_output(output: str) -> PluginOutput:
    """Given a plugin's stdout, return its message, long text and all perfdata text.

    The message is the first line up to ``|``. Perfdata are what follows that ``|``, plus,
    from the first later line containing ``|``, what follows it and every line after.
    """
    lines = output.splitlines()
    if not lines:
        return PluginOutput("", "", "")
    message, bar, first_perf = lines[0].partition("|")
    perf_parts = [first_perf] if bar else []
    long_lines: list[str] = []
    rest = lines[1:]
    for position, line in enumerate(rest):
        text, bar, more = line.partition("|")
        if bar:
            long_lines.append(text)
            perf_parts.append(more)
            perf_parts.extend(rest[position + 1 :])
            break
        long_lines.append(line)
    return PluginOutput(
        message.strip(), "\n".join(long_lines).strip(), " ".join(perf_parts).strip()
    )


def metric_alias(label: str) -> str | None:
    """Given a perfdata label, return an identifier to use in conditions, or None.

    The rule: a label that already is an identifier (``[A-Za-z_][A-Za-z0-9_]*``, such as
    ``time`` or ``load1``) needs no alias. Otherwise every run of other characters becomes
    ``_`` and leading/trailing ``_`` are dropped (``/var/log`` -> ``var_log``,
    ``'cpu usage %'`` -> ``cpu_usage``); a label made only of slashes, the root file
    system, becomes ``root``; a result starting with a digit gets a leading ``_``
    (``5xx rate`` -> ``_5xx_rate``). A label with nothing usable left has no alias.
    """
    if _IDENTIFIER.match(label):
        return None
    if label and set(label) == {"/"}:
        return "root"
    alias = _NOT_IDENTIFIER_CHARS.sub("_", label).strip("_")
    if not alias:
        return None
    if alias[0].isdigit():
        alias = "_" + alias
    return alias


def threshold_status(datum: PerfDatum) -> tuple[Status, str]:
    """Given a perfdata item, return its status by its own warn/crit ranges and why.

    Critical is tested first. A malformed range is ignored (the plugin's exit code still
    stands); with no breached range the status is OK and the reason empty.
    """
    for status, text in ((Status.CRITICAL, datum.crit), (Status.WARNING, datum.warn)):
        if text is None:
            continue
        try:
            breached = parse_range(text).alerts(float(datum.value))
        except ValueError:
            continue
        if breached:
            return (
                status,
                f"{datum.label}={datum.value:g}{datum.uom} breaches {status.label} {text}",
            )
    return Status.OK, ""


def perfdata_metrics(items: list[PerfDatum], reserved: frozenset[str]) -> dict[str, MetricValue]:
    """Given perfdata items, return metric values by label, plus identifier aliases.

    The first item with a label wins over later duplicates; labels in ``reserved`` (the
    probe's own metrics, such as ``exit_code``) are skipped. An alias (``metric_alias``)
    is added only when no label or earlier alias already uses that name.
    """
    metrics: dict[str, MetricValue] = {}
    labels = {item.label for item in items}
    for item in items:
        if item.label in reserved or item.label in metrics:
            continue
        metrics[item.label] = item.value
    for item in items:
        alias = metric_alias(item.label)
        if (
            alias is not None
            and item.label in metrics
            and alias not in labels
            and alias not in reserved
            and alias not in metrics
        ):
            metrics[alias] = metrics[item.label]
    return metrics


# ---------------------------------------------------------------------------------------
# Probe


class RunProbe(Probe[CommandTarget, StrictModel]):
    """Run a Nagios-compatible plugin and report its status and performance data."""

    target_kind: ClassVar[str] = "command"
    name: ClassVar[str] = "run"
    summary: ClassVar[str] = "Run a Nagios plugin: exit code is the status, perfdata are metrics."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("exit_code", "number", "the command's exit code (0 ok, 1 warn, 2 crit, 3 unk)"),
    )
    dynamic_metrics: ClassVar[bool] = True

    async def run(
        self, target: CommandTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a command, run it within the timeout and return exit_code and perfdata.

        The status is the worst (critical > unknown > warning > ok, see ``status.worst``)
        of the exit-code status and every perfdata item's own warn/crit thresholds, so a
        plugin that exits UNKNOWN stays unknown when a perfdata warn threshold is breached,
        and becomes critical only when a crit threshold is. The message is the first output line before ``|`` (stderr's
        first line when stdout is empty). Raise TargetUnreachable if the program cannot be
        started or does not finish within the timeout.
        """
        argv = list(target.command)
        try:
            result = await run_process(
                argv, timeout_s=context.timeout_s, env=dict(target.env) or None
            )
        except ProcessStartError as error:
            raise TargetUnreachable(context.redactor.redact(str(error))) from error
        if result.timed_out or result.exit_code is None:
            raise TargetUnreachable(
                context.redactor.redact(f"{argv[0]} timed out after {context.timeout_s:g}s")
            )
        exit_code = result.exit_code
        exit_status = EXIT_STATUS.get(exit_code, Status.UNKNOWN)
        output = split_plugin_output(result.stdout)
        items = parse_perfdata(output.perfdata)

        reasons: list[str] = []
        statuses = [exit_status]
        for item in items:
            status, reason = threshold_status(item)
            if status is not Status.OK:
                statuses.append(status)
                reasons.append(reason)
        # The plugin's own UNKNOWN is not lowered to a warning by a breached warn range:
        # a plugin that could not measure properly may report anything as its value.
        status = worst(statuses)

        message = output.message or _first_line(result.stderr)
        if not message:
            message = (
                f"killed by signal {-exit_code}, no output"
                if exit_code < 0
                else f"exit code {exit_code}, no output"
            )
        if status is not exit_status and reasons:
            message += "; perfdata: " + ", ".join(reasons)

        metrics: dict[str, MetricValue] = {"exit_code": exit_code}
        metrics.update(perfdata_metrics(items, self.metric_names()))
        return ProbeOutcome(metrics, message=context.redactor.redact(message), status=status)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
