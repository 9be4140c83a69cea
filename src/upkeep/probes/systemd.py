"""A systemd unit on the local host: its state, restarts, main process and how long it has
been so, read from ``systemctl show`` (machine-readable ``Key=Value`` lines, never the
human output of ``systemctl status``) through the subprocess seam.

Timestamps are asked for as Unix times (``--timestamp=unix``, systemd 248 and later);
an older systemctl that refuses the option is asked again without it, and its default
form (``Mon 2026-12-07 18:10:03 UTC``) is read when its zone is UTC or a numeric offset.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, ClassVar

from pydantic import Field

from upkeep.core.models import StrictModel
from upkeep.core.results import MetricValue
from upkeep.core.status import Status
from upkeep.core.text import human_duration
from upkeep.io.process import ProcessStartError, run_process
from upkeep.probes.base import (
    MetricSpec,
    Probe,
    ProbeContext,
    ProbeOutcome,
    TargetUnreachable,
)
from upkeep.probes.host import HostTarget

SYSTEMCTL = "systemctl"
"""The program asked, looked up on ``PATH``."""
PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "NRestarts",
    "MainPID",
    "StateChangeTimestamp",
    "ActiveEnterTimestamp",
    "LoadError",
)
"""The properties read; everything the probe says comes from these."""
UNIT_PATTERN = r"^[A-Za-z0-9:_.@\\-]{1,255}$"
"""A unit name as systemd accepts it (letters, digits, ``:_.@-`` and ``\\`` escapes)."""

ACTIVE_STATUS: dict[str, Status] = {
    "active": Status.OK,
    "reloading": Status.OK,
    "activating": Status.WARNING,
    "deactivating": Status.WARNING,
    "inactive": Status.CRITICAL,
    "failed": Status.CRITICAL,
}
"""The status each ActiveState is by itself (``inactive`` is ok for a unit that may stop)."""


class SystemdParams(StrictModel):
    """Params of the systemd probe: the unit, and whether it may be stopped."""

    unit: Annotated[str, Field(pattern=UNIT_PATTERN)] = Field(
        description="the unit's name; `.service` is added when it has no type suffix "
        "(`nginx` is `nginx.service`)"
    )
    may_be_inactive: bool = Field(
        default=False,
        description="a unit that is inactive (stopped cleanly: a oneshot job between runs, a "
        "timer's service) is ok rather than critical",
    )


class SystemdProbe(Probe[HostTarget, SystemdParams]):
    """A unit's state as systemd reports it."""

    target_kind: ClassVar[str] = "host"
    name: ClassVar[str] = "systemd"
    summary: ClassVar[str] = (
        "A systemd unit (`systemctl show`): active, failed or restarting, restarts, main PID "
        "and time in its state. By itself: active is ok; activating (an auto-restart) and "
        "deactivating a warning; failed, inactive and a unit that does not exist critical. "
        "Without systemctl (or systemd) it is unknown."
    )
    Params: ClassVar[type[StrictModel]] = SystemdParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("active", "bool", "the unit is active (ActiveState=active)"),
        MetricSpec(
            "active_state",
            "string",
            "ActiveState: active, reloading, inactive, failed, activating, deactivating",
        ),
        MetricSpec(
            "sub_state",
            "string",
            "SubState, the unit type's own state: running, dead, auto-restart…",
        ),
        MetricSpec(
            "load_state", "string", "LoadState: loaded, not-found, masked, bad-setting, error"
        ),
        MetricSpec("restarts", "number", "NRestarts: automatic restarts since it was started"),
        MetricSpec("main_pid", "number", "MainPID: the service's main process, 0 when none"),
        MetricSpec("in_state_s", "number", "seconds since the last state change"),
        MetricSpec("active_for_s", "number", "seconds since it became active (only when active)"),
    )

    async def run(
        self, target: HostTarget, params: SystemdParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a unit, return its state from ``systemctl show``; a unit that does not
        exist is critical, a host without systemctl or systemd unknown. Raise
        TargetUnreachable if systemctl does not answer within the deadline."""
        del target
        unit = unit_name(params.unit)
        argv = [SYSTEMCTL, "show", "--no-pager", f"--property={','.join(PROPERTIES)}"]
        try:
            result = await run_process(
                [*argv, "--timestamp=unix", "--", unit], timeout_s=context.timeout_s
            )
            if result.exit_code != 0 and "timestamp" in result.stderr:
                result = await run_process([*argv, "--", unit], timeout_s=context.timeout_s)
        except ProcessStartError as error:
            return ProbeOutcome(
                {}, message=f"cannot ask systemd about {unit}: {error}", status=Status.UNKNOWN
            )
        if result.timed_out:
            raise TargetUnreachable(f"systemctl did not answer within {context.timeout_s:g}s")
        if result.exit_code != 0:
            said = result.stderr.strip().splitlines()
            reason = said[0] if said else f"exit code {result.exit_code}"
            return ProbeOutcome(
                {}, message=f"systemctl show {unit} failed: {reason}", status=Status.UNKNOWN
            )
        return judge_unit(unit, parse_show(result.stdout), context.clock.now(), params)


def unit_name(unit: str) -> str:
    """Given a unit as written, return it with ``.service`` added when it has no suffix."""
    suffixes = (
        ".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target",
        ".path", ".timer", ".slice", ".scope",
    )  # fmt: skip
    return unit if unit.endswith(suffixes) else f"{unit}.service"


def parse_show(text: str) -> dict[str, str]:
    """Given ``systemctl show`` output, return its properties (``Key=Value`` per line; a
    value may itself hold ``=``)."""
    properties: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            properties[key] = value
    return properties


_DEFAULT_TIMESTAMP = re.compile(
    r"^\w{3} (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (UTC|GMT|[+-]\d{2}:?\d{2})$"
)


def parse_timestamp(value: str) -> datetime | None:
    """Given a timestamp property, return it, or None when unset (empty, ``0``, ``n/a``) or
    written in a local zone's abbreviation that cannot be read without guessing."""
    value = value.strip()
    if value.startswith("@"):
        try:
            seconds = float(value[1:])
            return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None
        except (ValueError, OverflowError, OSError):
            return None  # not a number, or a moment no datetime holds (``@inf``, ``@1e300``)
    match = _DEFAULT_TIMESTAMP.match(value)
    if match is None:
        return None
    zone = match.group(2)
    tz = UTC
    if zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        tz = timezone(offset if zone[0] == "+" else -offset)
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz)


def _number(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def judge_unit(
    unit: str, properties: dict[str, str], now: datetime, params: SystemdParams
) -> ProbeOutcome:
    """Given a unit's ``systemctl show`` properties and the time now, return its metrics
    and the status its state is by itself (``ACTIVE_STATUS``; a unit not loaded is
    critical, an inactive one ok when ``may_be_inactive``)."""
    load_state = properties.get("LoadState", "")
    active_state = properties.get("ActiveState", "")
    sub_state = properties.get("SubState", "")
    metrics: dict[str, MetricValue] = {
        "active": active_state == "active",
        "active_state": active_state,
        "sub_state": sub_state,
        "load_state": load_state,
    }
    for key, name in (("NRestarts", "restarts"), ("MainPID", "main_pid")):
        number = _number(properties.get(key))
        if number is not None:
            metrics[name] = number
    changed = parse_timestamp(properties.get("StateChangeTimestamp", ""))
    if changed is not None:
        metrics["in_state_s"] = max(0, round((now - changed).total_seconds()))
    entered = parse_timestamp(properties.get("ActiveEnterTimestamp", ""))
    if entered is not None and active_state == "active":
        metrics["active_for_s"] = max(0, round((now - entered).total_seconds()))

    if load_state in ("not-found", "masked", "bad-setting", "error") or not load_state:
        # LoadError is a D-Bus error name and its text: `org.…NoSuchUnit "Unit x not found."`.
        error = properties.get("LoadError", "").strip().partition(" ")[2].strip('"')
        detail = f" ({error})" if error and load_state != "not-found" else ""
        said = {
            "not-found": f"unit {unit} does not exist",
            "masked": f"unit {unit} is masked",
            "": f"systemctl said nothing about {unit}",
        }.get(load_state, f"unit {unit} could not be loaded ({load_state})")
        return ProbeOutcome(metrics, message=said + detail, status=Status.CRITICAL)

    status = ACTIVE_STATUS.get(active_state, Status.UNKNOWN)
    if active_state == "inactive" and params.may_be_inactive:
        status = Status.OK
    message = f"{unit} {active_state} ({sub_state})"
    if changed is not None:
        message += f" for {human_duration(now - changed)}"
    if properties.get("Result") not in (None, "", "success"):
        message += f", result {properties['Result']}"
    restarts = metrics.get("restarts")
    if isinstance(restarts, int) and restarts:
        message += f", {restarts} restart{'s' if restarts != 1 else ''}"
    return ProbeOutcome(metrics, message=message, status=status)
