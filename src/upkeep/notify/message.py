"""What the alerting side hands to the outbox: one notification for one channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

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
