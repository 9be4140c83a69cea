"""Notices about runs and windows, through the same outbox, routes and delivery as alerts.

**Runs.** A route with ``match.runs`` takes run notices (and no alerts; a route without it
takes alerts and never run notices, so configs written before run notices existed keep
their behaviour). The store's run log tells ``RunNotifier.on_change`` of every run that
fails, succeeds, is cancelled, interrupted (its owner died and the leader does not
resume it: ``RunLog.sweep_orphans``) or missed (``engine/scheduler.py``), and of every
approval step that starts waiting, inside the transaction recording that change
(``RunLog.observe``): the notice commits with the change or not at all, so a crash never
loses one. Keys are made of the run, the event (and the step), the route's stable id and
the channel, so two processes, a retry or a restart enqueue each notice once (the outbox
keeps one row per key).

A waiting approval is reminded and escalated by ``RunNotifier.tick`` like an unacknowledged
alert: the route's ``repeat`` (``…-rep<k>``, k whole intervals since the step started
waiting) and ``escalate`` steps (``…-esc<n>``, n the step's number) count from the moment
the step started waiting; a decision, an expiry or the run's end stops both, since only
steps still waiting undecided are looked at. Keys derived from time make the tick
stateless: any process may run it, any number of times.

**Windows.** A window with ``announce:`` sends, through the outbox, a notice ``before``
ahead of each opening, one when it opens and one when it closes, each once per opening
(keyed by the window, the opening's start and the event). ``announce_windows`` runs on the
daemon's alert tick; a notice whose moment passed while no daemon ran is sent late only
while it still holds (an opening still ahead, a window still open, a close less than
``CLOSED_GRACE`` ago).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, get_args
from zoneinfo import ZoneInfo

from upkeep.alerting.routing import group_key, route_ids
from upkeep.alerting.windows import Opening, WindowCalendar
from upkeep.config.models import RunEvent
from upkeep.core.clock import SYSTEM_CLOCK, Clock
from upkeep.core.text import human_duration
from upkeep.notify.message import Notification, NotificationKind, ago_marker
from upkeep.store.outbox import add_notifications, group_due
from upkeep.store.runs import RunStatus, StepStatus, run_in

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from upkeep.config.loader import LoadedConfig
    from upkeep.config.models import (
        MuteConfig,
        RouteConfig,
        RunbookConfig,
        RunMatch,
        WindowConfig,
    )
    from upkeep.store.runs import RunChange, RunRecord, StepRecord
    from upkeep.store.store import Store

logger = logging.getLogger(__name__)

RUN_EVENTS: tuple[RunEvent, ...] = get_args(RunEvent)
EVENT_OF: dict[RunStatus, RunEvent] = {
    RunStatus.FAILED: "failed",
    RunStatus.INTERRUPTED: "interrupted",
    RunStatus.MISSED: "missed",
    RunStatus.WAITING: "waiting",
    RunStatus.SUCCEEDED: "succeeded",
    RunStatus.CANCELLED: "cancelled",
}
"""The event a run status is (``running`` is none)."""
CLOSED_GRACE = timedelta(hours=1)
"""A window's close is still announced this long after it (a daemon restarting late)."""
_KEY_LENGTH = 128  # outbox.key is String(128)
_LEVELS: dict[RunEvent, str] = {
    "failed": "failure",
    "interrupted": "failure",
    "missed": "failure",
    "waiting": "warning",
    "succeeded": "success",
    "cancelled": "warning",
}


def notice_key(*parts: str) -> str:
    """Given the parts naming a notice, return its outbox key: the parts joined by ``-``,
    or, past the key column's 128 characters (long runbook, window or channel names), a
    digest of them, as stable."""
    key = "-".join(parts)
    if len(key) <= _KEY_LENGTH:
        return key
    return f"{parts[0]}-{hashlib.sha256(key.encode()).hexdigest()}"


def _token(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- runs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    """What routing and grouping look at in a run notice."""

    runbook: str
    event: RunEvent
    labels: Mapping[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, str]:
        """Return the runbook's labels plus ``runbook``, ``event`` and ``check`` (the
        runbook, so a route's default ``group_by: [check]`` groups by runbook)."""
        return {**self.labels, "runbook": self.runbook, "check": self.runbook, "event": self.event}


def run_matches(match: RunMatch, facts: RunFacts) -> bool:
    """Given a route's ``match.runs`` and a run notice, return whether all its criteria hold."""
    if facts.event not in match.events:
        return False
    if match.runbooks is not None and facts.runbook not in match.runbooks:
        return False
    return all(facts.labels.get(key) == value for key, value in match.labels.items())


def matching_run_routes(routes: Sequence[RouteConfig], facts: RunFacts) -> list[int]:
    """Given the config's routes and a run notice, return the indexes of the routes that
    take it: run routes in order, the first match unless it says ``continue: true``."""
    taken: list[int] = []
    for index, route in enumerate(routes):
        runs = route.match.runs
        if runs is not None and run_matches(runs, facts):
            taken.append(index)
            if not route.continue_:
                break
    return taken


def waiting_step(record: RunRecord) -> StepRecord | None:
    """Given a run with its steps, return its approval step waiting undecided, or None."""
    return next(
        (
            step
            for step in record.steps
            if step.kind == "approval" and step.status == StepStatus.WAITING and not step.decision
        ),
        None,
    )


@dataclass(frozen=True)
class _Notice:
    """One notice of one run on one route, before it becomes rows per channel."""

    route: int
    stem: str
    """The key up to the route's part: ``run12-failed``, ``run12-s3-waiting-esc1``."""
    kind: NotificationKind
    channels: Sequence[str]
    detail: str = ""


class RunNotifier:
    """Queues the notices of runs for one loaded config: as the run log records a change
    (``on_change``) and, for approvals still waiting, on the alert tick (``tick``)."""

    def __init__(self, loaded: LoadedConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.clock = clock
        self.route_ids = route_ids(self.config.routes)
        self.zone = ZoneInfo(self.config.timezone)

    @property
    def wanted(self) -> bool:
        """Return whether any route takes run notices (else there is nothing to do)."""
        return any(route.match.runs is not None for route in self.config.routes)

    # --- as runs change -------------------------------------------------------------------

    def on_change(self, connection: Connection, changes: Sequence[RunChange]) -> list[int]:
        """Given the transaction recording run changes and the changes, queue their
        notices on the routes that take them (``RunLog.observe``'s observer) and return
        the outbox ids inserted. A dry run, a status that is no event, or a run no route
        takes queues nothing."""
        if not self.wanted:
            return []
        now = self.clock.now()
        inserted: list[int] = []
        for change in changes:
            event = EVENT_OF.get(change.status)
            record = run_in(connection, change.run_id) if event is not None else None
            if event is None or record is None or record.dry_run:
                continue
            facts = self._facts(record, event)
            step = waiting_step(record) if event == "waiting" else None
            if event == "waiting" and step is None:
                continue  # decided (or ended) before this transaction: nothing waits
            stem = (
                f"run{record.id}-s{step.position + 1}-waiting"
                if step
                else f"run{record.id}-{event}"
            )
            kind: NotificationKind = "approval" if step else "run"
            notices = [
                _Notice(index, stem, kind, self.config.routes[index].notify)
                for index in matching_run_routes(self.config.routes, facts)
            ]
            inserted += self._queue(connection, record, facts, step, notices, now)
        return inserted

    # --- as time passes -------------------------------------------------------------------

    def tick(self, store: Store) -> list[int]:
        """Given the store, queue the reminders (route ``repeat``) and escalation steps
        (route ``escalate``) due for approvals still waiting; return the outbox ids
        inserted. Each run's are written in one transaction that first reads the step again:
        a decision taken meanwhile stops them."""
        if not any(
            route.match.runs is not None and (route.repeat or route.escalations)
            for route in self.config.routes
        ):
            return []
        inserted: list[int] = []
        for waiting in store.runs.waiting_runs():
            if waiting.dry_run:
                continue
            with store.alerts.transaction() as connection:
                now = self.clock.now()
                record = run_in(connection, waiting.id)
                step = waiting_step(record) if record is not None else None
                if record is None or step is None or record.status != RunStatus.WAITING:
                    continue
                facts = self._facts(record, "waiting")
                notices = self._due_reminders(record.id, facts, step, now)
                inserted += self._queue(connection, record, facts, step, notices, now)
        return inserted

    def _due_reminders(
        self, run_id: int, facts: RunFacts, step: StepRecord, now: datetime
    ) -> list[_Notice]:
        """Return the reminders and escalation steps due now for a waiting approval, on
        every route that takes it (their keys say which: queuing one again is a no-op)."""
        since = step.started_at or now
        waited = now - since
        stem = f"run{run_id}-s{step.position + 1}-waiting"
        notices: list[_Notice] = []
        for index in matching_run_routes(self.config.routes, facts):
            route = self.config.routes[index]
            if route.repeat is not None and route.repeat > timedelta(0):
                count = int(waited / route.repeat)
                if count >= 1:
                    notices.append(
                        _Notice(
                            index,
                            f"{stem}-rep{count}",
                            "repeat",
                            route.notify,
                            f"still waiting after {human_duration(waited)}",
                        )
                    )
            steps = route.escalations
            for number, escalation in enumerate(steps, start=1):
                if waited < escalation.after:
                    break
                notices.append(
                    _Notice(
                        index,
                        f"{stem}-esc{number}",
                        "escalation",
                        escalation.notify,
                        f"undecided for {human_duration(waited)}: "
                        f"escalation step {number} of {len(steps)}",
                    )
                )
        return notices

    # --- helpers --------------------------------------------------------------------------

    def _facts(self, record: RunRecord, event: RunEvent) -> RunFacts:
        runbook = self.config.runbooks.get(record.runbook)
        return RunFacts(record.runbook, event, runbook.labels if runbook else {})

    def _queue(
        self,
        connection: Connection,
        record: RunRecord,
        facts: RunFacts,
        step: StepRecord | None,
        notices: Sequence[_Notice],
        now: datetime,
    ) -> list[int]:
        """Queue the notices of one run in the caller's transaction; return the outbox
        ids inserted (a key already there is left as it is)."""
        inserted: list[int] = []
        for notice in notices:
            route = self.config.routes[notice.route]
            route_id = self.route_ids[notice.route]
            title, body, level = compose_run(
                record,
                facts,
                step,
                self.config.runbooks.get(record.runbook),
                kind=notice.kind,
                zone=self.zone,
                public_url=self.config.alerting.public_url,
                detail=notice.detail,
            )
            title, body = self.loaded.redactor.redact(title), self.loaded.redactor.redact(body)
            group = group_key(route_id, route, facts)
            notifications = [
                Notification(
                    key=notice_key(notice.stem, _token(route_id), channel),
                    channel=channel,
                    kind=notice.kind,
                    group_key=group,
                    title=title,
                    body=body,
                    level=level,
                    fallback=route.fallback,
                    fallback_after=route.fallback_after if route.fallback else None,
                )
                for channel in notice.channels
            ]
            due = now + route.group_wait
            if route.group_wait > timedelta(0) and notifications:
                # Notices arriving while the group's first one waits go out with it.
                waiting = group_due(connection, notifications[0].channel, group, now)
                due = min(waiting, due) if waiting is not None else due
            inserted += add_notifications(connection, notifications, now, deliver_after=due)
        return inserted


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


WHY_CHARS = 200
"""How much of a failed step's last output line a run notice quotes."""


def _why(step: StepRecord) -> str:
    """Given a failed or interrupted step, return what it ended with, for a notice: a
    command's non-zero exit code and the last line of its (stored, redacted) output,
    shortened to ``WHY_CHARS``; empty when it recorded neither."""
    parts: list[str] = []
    code = step.detail.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        parts.append(f"exit {code}")
    last = next((line.strip() for line in reversed(step.output.splitlines()) if line.strip()), "")
    if last:
        parts.append(last if len(last) <= WHY_CHARS else last[: WHY_CHARS - 1] + "…")
    return " (" + "; ".join(parts) + ")" if parts else ""


def _link(public_url: str | None, run_id: int) -> str | None:
    return f"{public_url.rstrip('/')}/runs/{run_id}" if public_url else None


def compose_run(
    record: RunRecord,
    facts: RunFacts,
    step: StepRecord | None,
    runbook: RunbookConfig | None,
    *,
    kind: NotificationKind,
    zone: ZoneInfo,
    public_url: str | None,
    detail: str = "",
) -> tuple[str, str, str]:
    """Given a run (with its steps), what happened to it, its waiting approval step (for
    ``waiting``), its runbook's config (None once removed), the notice kind, the config's
    zone and public URL, return (title, body, level).

    A waiting approval says what to approve and how: the ``upkeep approve`` command as the
    CLI spells it, and the run's page on the dashboard when a public URL is configured.
    """
    event = facts.event
    subject = f"run #{record.id} of {record.runbook}"
    lines: list[str] = []
    if step is not None:
        # A run's step positions count its whole flow (steps, rollback, ``finally``).
        flow = runbook.flow() if runbook is not None else []
        config_step = flow[step.position].step if step.position < len(flow) else None
        text = (config_step.approval if config_step else None) or step.name
        verb = {"escalation": "APPROVAL ESCALATED", "repeat": "STILL WAITING"}.get(
            kind, "APPROVAL NEEDED"
        )
        title = f"{verb} {subject}: step {step.position + 1} {step.name}"
        since = step.started_at or record.started_at
        lines += [
            f"{record.runbook} waits for approval at step {step.position + 1} ({step.name}): "
            f"{text}",
            f"waiting since {_local(since, zone)} ({ago_marker(since)})",
        ]
        expires = _saved_deadline(step.detail)
        if expires is None and config_step is not None and config_step.timeout is not None:
            expires = since + config_step.timeout
        if expires is not None:
            lines.append(f"it expires {_local(expires, zone)} undecided")
        command = f"upkeep approve {record.id} --step {step.position + 1}"
        lines += [f"approve: {command}", f"reject:  {command} --reject"]
    elif event == "missed":
        scheduled = record.scheduled_for or record.started_at
        title = f"MISSED {record.runbook}: the firing of {_local(scheduled, zone)}"
        lines += [f"{record.runbook} did not run as scheduled.", record.message]
    else:
        verb = event.upper()
        took = f" after {human_duration(record.duration_s)}" if record.duration_s else ""
        title = f"{verb} {subject}{took}"
        lines.append(record.message or f"{subject} {event}")
        trigger = record.trigger + (f" by {record.triggered_by}" if record.triggered_by else "")
        lines.append(f"started {_local(record.started_at, zone)} ({trigger})")
        if record.scheduled_for is not None:
            lines.append(f"scheduled for {_local(record.scheduled_for, zone)}")
        ended = [
            f"step {s.position + 1} {s.name}: {s.status}{_why(s)}"
            for s in record.steps
            if s.status.failed or s.status == StepStatus.INTERRUPTED
        ]
        lines += ended
    if detail:
        lines.append(detail)
    if facts.labels:
        lines.append("labels: " + ", ".join(f"{k}={v}" for k, v in sorted(facts.labels.items())))
    link = _link(public_url, record.id)
    lines.append(f"run #{record.id} · {link}" if link else f"run #{record.id}")
    level = "warning" if step is not None else _LEVELS[event]
    return title, "\n".join(line for line in lines if line), level


# --- windows -----------------------------------------------------------------------------------


def _mutes(mute: MuteConfig | None) -> str:
    if mute is None:
        return "mutes nothing (runbooks may run in it)"
    parts = []
    if mute.checks is not None:
        parts.append("checks " + ", ".join(mute.checks))
    if mute.severity is not None:
        parts.append("severity " + ", ".join(mute.severity))
    if mute.labels:
        parts.append("labels " + ", ".join(f"{k}={v}" for k, v in sorted(mute.labels.items())))
    return "mutes " + ("alerts of " + "; ".join(parts) if parts else "every alert")


def compose_window(
    name: str,
    window: WindowConfig,
    opening: Opening,
    event: str,
    *,
    zone: ZoneInfo,
    runbooks: Sequence[str],
    before: timedelta | None = None,
) -> tuple[str, str, str]:
    """Given a window, one opening of it, the event (``before``, ``opened``, ``closed``),
    the window's zone, the runbooks that run in it and the lead time of ``before``,
    return (title, body, level): the name, description, start and end in the window's
    zone, and what it mutes."""
    span = f"{_local(opening.start, zone)} to {_local(opening.end, zone)}"
    if event == "before":
        lead = human_duration(before) if before is not None else "soon"
        title = f"MAINTENANCE in {lead}: {name} ({span})"
    elif event == "opened":
        title = f"MAINTENANCE STARTED: {name} until {_local(opening.end, zone)}"
    else:
        title = f"MAINTENANCE ENDED: {name}"
    lines = [
        f"maintenance window {name}: {span}",
        window.description or "",
        _mutes(window.mute),
    ]
    if runbooks:
        lines.append("runbooks that run in it: " + ", ".join(runbooks))
    if event == "closed":
        lines.append("alerts it muted that still fire are notified now")
    level = "success" if event == "closed" else "info"
    return title, "\n".join(line for line in lines if line), level


def announce_windows(
    loaded: LoadedConfig, store: Store, now: datetime, calendar: WindowCalendar | None = None
) -> list[int]:
    """Given the config, the store and the time, queue each announcement now due of each
    window with ``announce:`` (at most one of each event per opening: its key names the
    window, the opening's start and the event); return the outbox ids inserted.

    Due are: ``before`` while the next opening is at most that far ahead; ``opened``
    while an opening holds; ``closed`` for an opening that ended less than
    ``CLOSED_GRACE`` ago. ``calendar`` defaults to the config's windows plus the stored
    one-off windows (one named like a config window is an opening of it).
    """
    config = loaded.config
    announced = {name: w for name, w in config.windows.items() if w.announce is not None}
    if not announced:
        return []
    if calendar is None:
        calendar = WindowCalendar(config, store.runs.list_windows(ending_after=now - CLOSED_GRACE))
    due: list[Notification] = []
    for name, window in announced.items():
        announce = window.announce
        if announce is None:
            continue
        zone = ZoneInfo(window.timezone or config.timezone)
        runbooks = [rb for rb, runbook in config.runbooks.items() if runbook.window == name]
        events: list[tuple[str, Opening]] = []
        if announce.before is not None:
            following = calendar.next_opening(name, now)
            if following is not None and following.start - now <= announce.before:
                events.append(("before", following))
        current = calendar.opening_at(name, now)
        if announce.opened and current is not None:
            events.append(("opened", current))
        if announce.closed:
            ended = calendar.closed_within(name, now - CLOSED_GRACE, now)
            if ended is not None:
                events.append(("closed", ended))
        for event, opening in events:
            title, body, level = compose_window(
                name,
                window,
                opening,
                event,
                zone=zone,
                runbooks=runbooks,
                before=announce.before,
            )
            title, body = loaded.redactor.redact(title), loaded.redactor.redact(body)
            start = opening.start.astimezone(ZoneInfo("UTC")).strftime("%Y%m%dT%H%M%SZ")
            due += [
                Notification(
                    key=notice_key("window", name, start, event, channel),
                    channel=channel,
                    kind="window",
                    group_key=f"window-{_token(name)}",
                    title=title,
                    body=body,
                    level=level,
                )
                for channel in announce.notify
            ]
    if not due:
        return []
    with store.alerts.transaction() as connection:
        return add_notifications(connection, due, now)


def _saved_deadline(detail: Mapping[str, Any]) -> datetime | None:
    """Given a waiting step's stored detail, return the deadline the executor saved there
    (``until``: the step's own timeout or the default one), or None if there is none."""
    until = detail.get("until")
    if not isinstance(until, str):
        return None
    try:
        moment = datetime.fromisoformat(until)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
