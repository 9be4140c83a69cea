"""What the alerting side hands to the outbox: one notification for one channel."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from upkeep.core.text import human_duration

NotificationKind = Literal[
    "firing",  # an alert became hard (or got worse)
    "resolved",  # a fired alert recovered; the body says for how long it was out
    "repeat",  # still firing after the route's repeat interval
    "escalation",  # still unacknowledged after an escalation step's delay
    "flapping",  # the check started (or stopped) flapping: one notice, not one per flip
    "unmuted",  # still firing when the window or silence that muted it ended
    "test",  # `upkeep notify test CHANNEL`
    "fallback",  # a copy sent to a route's fallback channel after its channel kept failing
    "drill",  # a backup drill missed an objective (issue #6)
    "run",  # a run failed, was interrupted, missed, cancelled or succeeded (a run route)
    "approval",  # a run's approval step waits for a decision (a run route)
    "window",  # a maintenance window opens soon, opened or closed (its announce:)
]
NOTIFICATION_KINDS: tuple[NotificationKind, ...] = get_args(NotificationKind)


@dataclass(frozen=True)
class Notification:
    """One message for one channel, as the outbox stores it.

    ``key`` is the idempotency key: enqueuing a key twice stores it once, and every
    delivery attempt carries it. ``group_key`` joins notifications of one channel that are
    due together into one message. ``severity`` is P1..P4 (None for test messages);
    ``level`` is how the message looks where the service has colours: ``failure``,
    ``warning``, ``success`` or ``info`` (Apprise's notify types).
    """

    key: str
    channel: str
    kind: NotificationKind
    group_key: str
    title: str
    body: str
    level: str = "info"
    severity: str | None = None
    alert_id: int | None = None
    fallback: str | None = None
    fallback_after: int | None = None


_AGO = re.compile(r"\{\{ago:(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?\+00:00)\}\}")


def ago_marker(moment: datetime) -> str:
    """Given a moment, return the place in a notice's text where "N ago" is written when
    the notice is sent (``render_ago``), not when it is queued: a notice that waits in the
    outbox (a group_wait, a retry) still tells the reader how long ago it was."""
    return "{{ago:" + moment.astimezone(UTC).isoformat() + "}}"


def render_ago(text: str, now: datetime) -> str:
    """Given a notice's stored text and the moment it is sent, return it with every
    ``ago_marker`` written as ``<span> ago`` (``12s ago``)."""

    def written(match: re.Match[str]) -> str:
        moment = datetime.fromisoformat(match.group(1))
        return f"{human_duration(max(now - moment, timedelta(0)))} ago"

    return _AGO.sub(written, text)
