"""What a notification says: the severity, check, target, labels, the value against the
condition, since when, and a link when the daemon has a public URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from upkeep.core.status import Status
from upkeep.core.text import human_duration
from upkeep.notify.message import ago_marker

if TYPE_CHECKING:
    from upkeep.notify.message import NotificationKind


@dataclass(frozen=True)
class MessageFacts:
    """The alert as a message shows it."""

    alert_id: int
    check: str
    target: str
    severity: str
    status: Status
    message: str
    labels: Mapping[str, str]
    opened_at: datetime
    acked_by: str | None = None
    run_id: int | None = None
    resolved_at: datetime | None = None
    """The runbook run whose checks step produced the result, if one did."""


LEVELS = {
    Status.CRITICAL: "failure",
    Status.UNKNOWN: "warning",
    Status.WARNING: "warning",
    Status.OK: "success",
}


def _footer(facts: MessageFacts, public_url: str | None) -> list[str]:
    if not public_url:
        return [f"alert #{facts.alert_id}"]
    base = public_url.rstrip("/")
    lines = [f"alert #{facts.alert_id} · {base}/alerts/{facts.alert_id}"]
    if facts.run_id is not None:
        lines.append(f"run #{facts.run_id} · {base}/runs/{facts.run_id}")
    return lines


def _when(moment: datetime, zone: ZoneInfo) -> str:
    """Return a moment for people: local time, and how long ago at the sending."""
    local = moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"{local} ({ago_marker(moment)})"


def compose(
    kind: NotificationKind,
    facts: MessageFacts,
    *,
    now: datetime,
    zone: ZoneInfo,
    public_url: str | None,
    detail: str = "",
    ended: str | None = None,
) -> tuple[str, str, str]:
    """Given a notification kind and the alert, return (title, body, level).

    Kinds: firing, repeat, escalation, unmuted, flapping, resolved. ``detail`` is one
    extra line (which escalation step, what ended the mute, why flapping stopped);
    ``ended`` says why a resolved alert ended when it is not that its check is ok again
    (it replaces "is ok again").
    """
    labels = ", ".join(f"{key}={value}" for key, value in sorted(facts.labels.items()))
    state = facts.status.label.upper()
    subject = f"{facts.check} ({facts.target})"
    if kind == "resolved":
        outage = human_duration((facts.resolved_at or now) - facts.opened_at)
        title = f"[{facts.severity}] RESOLVED {subject} after {outage}"
        lines = [
            f"{facts.check} on {facts.target}: {ended}."
            if ended
            else f"{facts.check} on {facts.target} is ok again.",
            f"Out for {outage}, since {_when(facts.opened_at, zone)}.",
        ]
        level = "success"
    else:
        verb = {
            "firing": "FIRING",
            "repeat": "STILL FIRING",
            "escalation": "ESCALATED",
            "unmuted": "STILL FIRING",
            "flapping": "FLAPPING",
        }.get(kind, kind.upper())
        title = f"[{facts.severity}] {verb} {subject}: {state}"
        lines = [
            f"{state} {facts.check} on {facts.target}",
            facts.message,
            f"since {_when(facts.opened_at, zone)}",
        ]
        level = LEVELS[facts.status]
        if facts.acked_by:
            lines.append(f"acknowledged by {facts.acked_by}")
    if detail:
        lines.append(detail)
    if labels:
        lines.append(f"labels: {labels}")
    lines.extend(_footer(facts, public_url))
    return title, "\n".join(lines), level
