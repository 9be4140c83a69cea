"""The alert manager: results in, alerts, timelines and queued notifications out.

``process`` takes a batch of check results (from the daemon's writer, ``upkeep check`` or a
runbook's checks step) and, in one store transaction, advances each check's state
(``state.advance``), opens, fires, changes and resolves alerts, appends their events, and
puts the notifications their routes ask for into the outbox. ``tick`` runs every few
seconds in the daemon for what time alone causes: repeats, escalation steps, lapsed
acknowledgements, the end of a mute or of a parent's outage, and missed response targets.

Nothing here sends anything: the outbox does (``notify.dispatcher``), so a notification is
stored in the same transaction as the change that caused it, and is never lost or doubled
by a crash between the two. Notification keys count per alert and route
(``a<alert>-r<slot>-n<count>-<channel>``, the slot being the route's number for that alert,
``store.alerts.RouteState``), so two processes handling the same alert at once produce the
same keys, and the outbox keeps one of each. A manager working on the spill while the
store is down (``alerting/guard.py``) prefixes its keys with the episode's (``s<episode>-a…``).

What each route has done about an alert (its notice count, when it last notified, the
escalation steps taken) is kept by the route's stable id (``routing.route_ids``), so a
reload that reorders ``routes:`` leaves every counter with its route.

Besides the configured checks it knows upkeep's own (``alerting/system.py``):
``upkeep:store``, raised while the store cannot take results or fails its integrity check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from upkeep.alerting.flapping import FLAP_HISTORY, percent_state_change
from upkeep.alerting.messages import MessageFacts, compose
from upkeep.alerting.routing import (
    ActiveSilence,
    AlertFacts,
    Muter,
    group_key,
    matching_routes,
    route_ids,
    route_matches,
)
from upkeep.alerting.state import OpenAlert, Policy, Step, Transition, advance
from upkeep.alerting.system import superseded_checks, system_checks
from upkeep.core.clock import SYSTEM_CLOCK, Clock
from upkeep.core.status import Status
from upkeep.core.text import human_duration
from upkeep.notify.message import Notification, NotificationKind
from upkeep.store.alerts import (
    AlertError,
    AlertRecord,
    AlertState,
    CheckState,
    Hold,
    Routing,
    alert_from_row,
)
from upkeep.store.locks import ALERTING_LOCK_KEY
from upkeep.store.outbox import add_notifications
from upkeep.store.remediations import queue_triggers
from upkeep.store.schema import alerts as alerts_table

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from upkeep.config.loader import LoadedConfig
    from upkeep.config.models import CheckConfig, MuteConfig
    from upkeep.core.results import CheckResult
    from upkeep.store.store import Store

logger = logging.getLogger(__name__)

MAX_DEPENDENCY_GRACE = timedelta(minutes=1)
"""At most this long a child's firing notice waits for its parents' results."""
TICK_INTERVAL_S = 2.0
"""How often the daemon runs ``tick``: the granularity of repeats and escalation steps."""


class AlertProcessingError(Exception):
    """Results were stored but their alerts were not processed; retry ``process``."""

    def __init__(self, written: int) -> None:
        super().__init__(f"{written} result(s) stored without their alert processing")
        self.written = written


@dataclass(frozen=True)
class Lifecycle:
    """An alert fired or resolved: what the daemon's log says about it once committed."""

    kind: Literal["firing", "resolved"]
    alert_id: int
    check: str
    severity: str
    status: str
    message: str

    def describe(self) -> str:
        """Return the log line: ``alert 7 firing: check web (P1, critical): <message>``
        (resolved: ``(P1, was critical)``)."""
        status = self.status if self.kind == "firing" else f"was {self.status}"
        return (
            f"alert {self.alert_id} {self.kind}: check {self.check} "
            f"({self.severity}, {status}): {self.message}"
        )


@dataclass
class AlertReport:
    """What one ``process`` or ``tick`` call did."""

    opened: int = 0
    fired: int = 0
    resolved: int = 0
    escalated: int = 0
    notifications: int = 0
    muted: int = 0
    queued: list[int] = field(default_factory=list)
    """The outbox ids of the pending notices queued (muted ones are not)."""
    events: list[str] = field(default_factory=list)
    lifecycle: list[Lifecycle] = field(default_factory=list)
    """Alerts that fired or resolved, in order (logged by the manager after the commit)."""


def _log_lifecycle(report: AlertReport, where: str) -> AlertReport:
    """Log each alert that fired or resolved in a committed pass; return the report."""
    for event in report.lifecycle:
        logger.info("%s%s", event.describe(), where)
    return report


def _same_state(before: CheckState, after: CheckState) -> bool:
    # ``last_at`` moves with every result; the rest reaches a fixed point for a check that
    # stays healthy (or broken), which is what spares the store a write per result.
    return (
        before.history == after.history
        and before.flapping == after.flapping
        and before.consecutive_bad == after.consecutive_bad
        and before.consecutive_ok == after.consecutive_ok
        and before.bad_since == after.bad_since
        and before.last_status == after.last_status
    )


def _lifecycle(
    kind: Literal["firing", "resolved"], record: AlertRecord, message: str | None = None
) -> Lifecycle:
    return Lifecycle(
        kind,
        record.id,
        record.check,
        record.severity,
        record.status.label,
        record.message if message is None else message,
    )


class _Pass:
    """One transaction's context: the connection, the time, a muter built on first use."""

    def __init__(
        self, connection: Connection, now: datetime, muter: Callable[[datetime], Muter]
    ) -> None:
        self.connection = connection
        self.now = now
        self._make_muter = muter
        self._muter: Muter | None = None
        self.report = AlertReport()
        self.run_id: int | None = None

    @property
    def muter(self) -> Muter:
        if self._muter is None:
            self._muter = self._make_muter(self.now)
        return self._muter


class AlertManager:
    """Turns results into alerts and notifications for one loaded config and store."""

    def __init__(
        self,
        loaded: LoadedConfig,
        store: Store,
        *,
        clock: Clock = SYSTEM_CLOCK,
        key_prefix: str = "",
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.store = store
        self.alerts = store.alerts
        self.clock = clock
        # A manager working on the spill while the store is down gives its notices keys of
        # their own (``s<episode>-a…``): they are copied into the store later, where alert
        # ids are assigned anew, and must never collide with the keys the store makes.
        self.key_prefix = key_prefix
        self.zone = ZoneInfo(self.config.timezone)
        # The configured checks and upkeep's own (``upkeep:store``), whose names cannot clash.
        self.checks: dict[str, CheckConfig] = {**system_checks(self.config), **self.config.checks}
        # upkeep's own checks a configured one took over: their open alerts resolve, naming it.
        self.superseded = superseded_checks(self.config)
        flapping = self.config.alerting.flapping
        self.policies = {
            name: Policy(
                hold_for=check.for_,
                after=check.after,
                clear_after=check.clear_after,
                flap_low=flapping.low,
                flap_high=flapping.high,
            )
            for name, check in self.checks.items()
        }
        self.depths = _dependency_depths(self.checks)
        self.route_ids = route_ids(self.config.routes)
        # Runbooks an alert's firing starts (``on_alert:``), with what they match.
        self.remedies = [
            (name, runbook.on_alert.match)
            for name, runbook in self.config.runbooks.items()
            if runbook.on_alert is not None
        ]
        self._where = " (in the spill: the store is down)" if key_prefix else ""

    def _committed(self, report: AlertReport) -> AlertReport:
        """Given what a committed pass did, log its alerts' lifecycle and tell the outbox
        which notices this process queued (a one-shot command waits for those only);
        return the report."""
        self.store.outbox.note_queued(report.queued)
        return _log_lifecycle(report, self._where)

    # --- results ---------------------------------------------------------------------------

    def process(self, results: Sequence[CheckResult], run_id: int | None = None) -> AlertReport:
        """Given check results (and the run that produced them, if any), advance their
        checks' alerts and queue the notifications; messages link to that run.

        Results of checks no longer in the config are ignored. Everything a batch causes is
        committed together, or (on an error, which propagates) not at all.
        """
        with self.alerts.transaction() as connection:
            report = self.process_in(connection, results, run_id)
        return self._committed(report)

    def record(
        self, results: Sequence[CheckResult], run_id: int | None = None
    ) -> tuple[int, AlertReport]:
        """Given results, store them and process their alerts in one transaction, so a
        crash keeps both or neither; return (results written, what alerting did).

        If that fails, store the results alone (a failure of alerting must not cost the
        history) and raise ``AlertProcessingError`` with the count, so the caller can retry
        the alerting part; a failure to store raises as ``Store.write_results`` does.
        """
        report = AlertReport()

        def alerting(connection: Connection) -> None:
            nonlocal report
            report = self.process_in(connection, results, run_id)

        try:
            written = self.store.write_results(
                results, run_id, then=alerting, lock_key=ALERTING_LOCK_KEY
            )
        except Exception as error:
            logger.warning(
                "storing results with their alerts failed, storing them alone: %s",
                self.loaded.redactor.redact(f"{type(error).__name__}: {error}"),
            )
            written = self.store.write_results(results, run_id)
            raise AlertProcessingError(written) from error
        return written, self._committed(report)

    def process_in(
        self, connection: Connection, results: Sequence[CheckResult], run_id: int | None = None
    ) -> AlertReport:
        """``process`` inside a transaction the caller holds, with the alerting lock taken
        at its start."""
        known = [result for result in results if result.check in self.checks]
        if not known:
            return AlertReport()
        # Parents before children, then by time: a child's firing in this batch sees its
        # parent's result of this batch, whatever order the results came in.
        known.sort(key=lambda result: (self.depths[result.check], result.at))
        names = {result.check for result in known}
        parents = {parent for name in names for parent in self.checks[name].depends_on}
        work = _Pass(connection, self.clock.now(), self._muter_factory)
        work.run_id = run_id
        states = self.alerts.states(connection, names | parents)
        stored = set(states)
        before = dict(states)
        open_alerts = self.alerts.open_alerts(connection, names)
        for result in known:
            state = states.get(result.check) or self._new_state(result.check)
            alert = open_alerts.get(result.check)
            step = advance(
                state,
                OpenAlert(alert.state, alert.status) if alert else None,
                result.status,
                result.at,
                self.policies[result.check],
            )
            states[result.check] = step.state
            if step.transitions:
                updated = self._apply(work, result, alert, step, states)
                if updated is None:
                    open_alerts.pop(result.check, None)
                else:
                    open_alerts[result.check] = updated
        # A check with no stored state is taken as healthy for ever: one whose results are
        # ok stays at that fixed point and costs no write, from its very first result.
        changed = [
            state
            for name, state in states.items()
            if name in names and not _same_state(before.get(name) or self._new_state(name), state)
        ]
        self.alerts.save_states(connection, changed, stored)
        return work.report

    def _apply(
        self,
        work: _Pass,
        result: CheckResult,
        alert: AlertRecord | None,
        step: Step,
        states: dict[str, CheckState],
    ) -> AlertRecord | None:
        """Record one result's transitions on its check's alert; return the alert after them
        (None once resolved).
        """
        connection = work.connection
        check = self.checks[result.check]
        transitions = step.transitions
        at = result.at
        was_firing = alert is not None and alert.state == AlertState.FIRING
        status = step.alert_status or result.status
        alert_id = self._open_or_update(work, result, alert, step, status)
        if alert_id is None:
            return None
        record = self._reload(connection, alert_id)

        if Transition.CHANGE in transitions and alert is not None:
            self.alerts.add_event(
                connection,
                alert_id,
                at,
                "changed",
                f"{alert.status.label} -> {status.label}: {record.message}",
            )
            if was_firing and not record.flapping and record.held is None:
                self._notify(work, record, "firing", detail=f"was {alert.status.label}")
        if Transition.FLAP_START in transitions:
            percent = percent_state_change(step.state.history)
            self.alerts.update_alert(connection, alert_id, flapping=True)
            self.alerts.add_event(
                connection, alert_id, at, "flapping", f"started flapping ({percent:.0f}% change)"
            )
            record = self._reload(connection, alert_id)
        if Transition.FIRE in transitions:
            self.alerts.update_alert(
                connection, alert_id, state=AlertState.FIRING, fired_at=at, escalation_base=at
            )
            self.alerts.add_event(connection, alert_id, at, "firing", record.message)
            work.report.fired += 1
            record = self._reload(connection, alert_id)
            work.report.lifecycle.append(_lifecycle("firing", record))
            if record.ack_expires_at is not None and record.ack_expires_at <= work.now:
                # An acknowledgement given while pending that lapsed before it fired would
                # re-escalate two seconds after the firing notice: it is simply over.
                self.alerts.update_alert(
                    connection, alert_id, acked_by=None, acked_at=None, ack_expires_at=None
                )
                record = self._reload(connection, alert_id)
            blocking = self._critical_parent(check, states)
            self._ask_remediation(work, record, blocking)
            if blocking is not None:
                self._suppress(work, record, blocking)
                return self._reload(connection, alert_id)
            if not record.flapping:
                # A parent's probe may take longer to fail than this child's: the notice
                # waits that long, and ``tick`` mutes it if the parent turns critical.
                self._notify(work, record, "firing", delay=self._dependency_grace(check))
        if Transition.FLAP_START in transitions and record.held is None:
            self._notify(
                work,
                record,
                "flapping",
                detail="started flapping: notices of each flip are held until it settles",
            )
        if Transition.FLAP_STOP in transitions:
            self.alerts.update_alert(connection, alert_id, flapping=False)
            self.alerts.add_event(connection, alert_id, at, "flapping_stopped")
            record = self._reload(connection, alert_id)
            if Transition.RESOLVE not in transitions and record.held is None:
                self._notify(work, record, "firing", detail="stopped flapping and still failing")
        if Transition.RESOLVE in transitions:
            self._resolve(work, record, at)
            return None
        return self._reload(connection, alert_id)

    def _ask_remediation(self, work: _Pass, record: AlertRecord, blocking: str | None) -> None:
        """Record, with the firing, a trigger of each runbook whose ``on_alert`` matches the
        alert: pending, for the leader to start, or suppressed at once while the alert is
        held (a critical parent, or a mute: someone is at work on it).

        A manager working on the spill records none: runs are recorded in the store only,
        and the spill's alerts are copied back without their triggers.
        """
        if self.key_prefix or not self.remedies:
            return
        facts = self._facts(record)
        wanted = [name for name, match in self.remedies if route_matches(match, facts)]
        if not wanted:
            return
        reason: str | None = None
        if blocking is not None:
            reason = f"held: depends on {blocking}, which is critical"
        else:
            muted_by = work.muter.muted_by(facts, work.now)
            if muted_by is not None:
                reason = f"held: muted by {muted_by}"
        queue_triggers(
            work.connection,
            alert_id=record.id,
            check=record.check,
            fired_at=record.fired_at or work.now,
            source_run=work.run_id,
            asks=[(name, reason) for name in wanted],
            now=work.now,
        )

    def _open_or_update(
        self,
        work: _Pass,
        result: CheckResult,
        alert: AlertRecord | None,
        step: Step,
        status: Status,
    ) -> int | None:
        """Open the check's alert if this result opens one, else bring the open one up to
        date; return its id, or None if there is no alert to speak of.
        """
        check = self.checks[result.check]
        columns: dict[str, Any] = {"last_result_at": result.at}
        if status is not Status.OK:
            # A resolving result keeps the alert's last failure as its status and severity,
            # so the recovery notice goes where the failure went.
            columns["status"] = status
            columns["severity"] = self._severity(check, status)
            columns["message"] = self.loaded.redactor.redact(result.message)
        if alert is not None:
            self.alerts.update_alert(work.connection, alert.id, **columns)
            return alert.id
        if Transition.OPEN not in step.transitions or status is Status.OK:
            return None
        alert_id = self.alerts.insert_alert(
            work.connection,
            check=result.check,
            target=result.target,
            labels=dict(result.labels),
            state=AlertState.PENDING,
            opened_at=step.state.bad_since or result.at,
            flapping=False,
            routing=Routing(),
            response_missed=False,
            **columns,
        )
        self.alerts.add_event(work.connection, alert_id, result.at, "opened", columns["message"])
        work.report.opened += 1
        return alert_id

    def _resolve(self, work: _Pass, record: AlertRecord, at: datetime) -> None:
        """Close an alert at ``at``; notify its recovery only if its firing was notified."""
        connection = work.connection
        self.alerts.update_alert(connection, record.id, state=AlertState.RESOLVED, resolved_at=at)
        outage = human_duration(at - record.opened_at)
        self.alerts.add_event(connection, record.id, at, "resolved", f"ok again after {outage}")
        work.report.resolved += 1
        work.report.lifecycle.append(_lifecycle("resolved", record, f"ok again after {outage}"))
        if record.fired_at is not None and record.routing.any_sent:
            self._notify(work, self._reload(connection, record.id), "resolved")

    def _supersede(self, work: _Pass, record: AlertRecord, successor: str) -> None:
        """Close an alert of upkeep's own check that configured check ``successor`` took
        over, saying so (in its timeline, the log and, if its firing was notified, a
        resolved notice): nothing else would ever resolve it."""
        connection, now = work.connection, work.now
        why = f"superseded by check {successor}, which reports this from now on"
        self.alerts.update_alert(connection, record.id, state=AlertState.RESOLVED, resolved_at=now)
        self.alerts.add_event(connection, record.id, now, "resolved", why)
        work.report.resolved += 1
        work.report.lifecycle.append(_lifecycle("resolved", record, why))
        if record.fired_at is not None and record.routing.any_sent:
            self._notify(work, self._reload(connection, record.id), "resolved", ended=why)

    # --- time ------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> AlertReport:
        """Given the time (now by default), do what time alone causes to open alerts:
        lapsed acknowledgements, released mutes and dependencies, repeats, escalation steps
        and missed response targets, and resolve alerts of checks no longer configured.
        """
        moment = now or self.clock.now()
        if not self.alerts.any_open():
            # Most ticks find nothing to do: they need not take the store's write lock.
            return AlertReport()
        with self.alerts.transaction() as connection:
            work = _Pass(connection, moment, self._muter_factory)
            open_alerts = self.alerts.open_alerts(connection)
            if not open_alerts:
                return work.report
            parents = {
                parent
                for record in open_alerts.values()
                if record.check in self.checks
                for parent in self.checks[record.check].depends_on
            } | {record.suppressed_by for record in open_alerts.values() if record.suppressed_by}
            states = self.alerts.states(connection, parents)
            for record in open_alerts.values():
                self._tick_one(work, record, states)
        return self._committed(work.report)

    def _tick_one(self, work: _Pass, record: AlertRecord, states: dict[str, CheckState]) -> None:
        connection, now = work.connection, work.now
        if record.check in self.superseded:
            self._supersede(work, record, self.superseded[record.check])
            return
        if record.check not in self.checks:
            self.alerts.update_alert(
                connection, record.id, state=AlertState.RESOLVED, resolved_at=now
            )
            self.alerts.add_event(
                connection, record.id, now, "resolved", "the check is no longer in the config"
            )
            work.report.resolved += 1
            work.report.lifecycle.append(
                _lifecycle("resolved", record, "the check is no longer in the config")
            )
            return
        if record.state != AlertState.FIRING:
            return
        if record.routing.legacy:
            # State stored by route position before route ids: adopted now, under the
            # routes at those positions in this config, and kept by id from here on.
            self.alerts.update_alert(connection, record.id, routing=self._routing(record))
            record = self._reload(connection, record.id)
        if record.held is None:
            blocking = self._critical_parent(self.checks[record.check], states)
            if blocking is not None:
                self._suppress(work, record, blocking)
                return
        if record.acked_by and record.ack_expires_at and record.ack_expires_at <= now:
            lapsed_by = record.acked_by
            routing = self._routing(record).restarted()
            self.alerts.update_alert(
                connection,
                record.id,
                acked_by=None,
                acked_at=None,
                ack_expires_at=None,
                ack_comment=None,
                escalation_base=now,
                routing=routing,
            )
            self.alerts.add_event(
                connection,
                record.id,
                now,
                "unacknowledged",
                f"the acknowledgement by {record.acked_by} lapsed",
            )
            record = self._reload(connection, record.id)
            if record.held is None:
                self._notify(
                    work,
                    record,
                    "escalation",
                    detail=f"the acknowledgement by {lapsed_by} lapsed",
                )
                record = self._reload(connection, record.id)
        if record.held == Hold.DEPENDENCY:
            parent = states.get(record.suppressed_by or "")
            if parent is not None and parent.last_status is Status.CRITICAL:
                return
            parent_name = record.suppressed_by or "its parent"
            self._release(work, record, suppressed_by=None)
            self.alerts.add_event(
                connection, record.id, now, "unsuppressed", f"{parent_name} recovered"
            )
            record = self._reload(connection, record.id)
            self._notify(
                work, record, "firing", detail=f"{parent_name} recovered; this check still fails"
            )
            record = self._reload(connection, record.id)
        if record.held == Hold.MUTED:
            if work.muter.muted_by(self._facts(record), now) is not None:
                return
            self._release(work, record)
            self.alerts.add_event(connection, record.id, now, "unmuted", "the mute ended")
            record = self._reload(connection, record.id)
            self._notify(work, record, "unmuted", detail="the mute ended and it is still firing")
            record = self._reload(connection, record.id)
            if record.held is not None:
                return
        if record.flapping or record.held is not None:
            return
        self._repeat_and_escalate(work, record)

    def _repeat_and_escalate(self, work: _Pass, record: AlertRecord) -> None:
        connection, now = work.connection, work.now
        facts = self._facts(record)
        routes = matching_routes(self.config.routes, facts)
        acked = record.acked_by is not None
        for index in routes:
            route = self.config.routes[index]
            last = self._routing(record).state(self.route_ids[index], index).last
            if (
                not acked
                and route.repeat is not None
                and last is not None
                and now - last >= route.repeat
            ):
                self._notify(work, record, "repeat", routes=[index])
                record = self._reload(connection, record.id)
        if acked or record.fired_at is None:
            return
        base = record.escalation_base or record.fired_at
        for index in routes:
            route = self.config.routes[index]
            route_id = self.route_ids[index]
            steps = route.escalations
            done = self._routing(record).state(route_id, index).steps
            for number in range(done, len(steps)):
                escalation = steps[number]
                if now - base < escalation.after:
                    break
                detail = (
                    f"unacknowledged for {human_duration(now - base)}: "
                    f"escalation step {number + 1} of {len(steps)}"
                )
                self._notify(
                    work,
                    record,
                    "escalation",
                    routes=[index],
                    channels=escalation.notify,
                    detail=detail,
                )
                record = self._reload(connection, record.id)
                routing = self._routing(record)
                taken = routing.state(route_id, index).model_copy(update={"steps": number + 1})
                self.alerts.update_alert(
                    connection, record.id, routing=routing.with_state(route_id, taken)
                )
                self.alerts.add_event(connection, record.id, now, "escalated", detail)
                work.report.escalated += 1
                record = self._reload(connection, record.id)
        target = self.config.alerting.response_targets.get(record.severity)  # type: ignore[call-overload]
        if (
            target is not None
            and record.first_acked_at is None
            and not record.response_missed
            and now - base > target
        ):
            detail = f"response target {human_duration(target)} for {record.severity} missed"
            self.alerts.update_alert(connection, record.id, response_missed=True)
            self.alerts.add_event(connection, record.id, now, "response_missed", detail)
            without_escalation = [
                index for index in routes if not self.config.routes[index].escalations
            ]
            if without_escalation:
                self._notify(
                    work,
                    self._reload(connection, record.id),
                    "escalation",
                    routes=without_escalation,
                    detail=detail,
                )

    # --- acknowledgement -----------------------------------------------------------------

    def acknowledge(
        self,
        alert_id: int,
        *,
        author: str,
        duration: timedelta | None = None,
        comment: str = "",
        now: datetime | None = None,
    ) -> AlertRecord:
        """Given an open alert, acknowledge it (for ``duration``, or until it resolves);
        return the alert. Escalation stops; a lapsed acknowledgement re-escalates.

        Raise ``AlertError`` if there is no such open alert.
        """
        moment = now or self.clock.now()
        if duration is not None and duration <= timedelta(0):
            raise AlertError("an acknowledgement's duration must be longer than 0s")
        return self.alerts.acknowledge(
            alert_id,
            author=author,
            at=moment,
            expires_at=moment + duration if duration is not None else None,
            comment=self.loaded.redactor.redact(comment),
        )

    # --- helpers -------------------------------------------------------------------------

    def _new_state(self, check: str) -> CheckState:
        """Return the state of a check never seen failing: a full history of ok results,
        recovered, so its first ok result changes nothing (and is not written)."""
        return CheckState(
            check,
            history="o" * FLAP_HISTORY,
            consecutive_ok=self.policies[check].clear_after if check in self.policies else 1,
        )

    def _severity(self, check: CheckConfig, status: Status) -> str:
        return check.warn_severity if status is Status.WARNING else check.severity

    def _suppress(self, work: _Pass, record: AlertRecord, parent: str) -> None:
        """Hold a firing alert while its parent is critical: its notices still waiting are
        muted, and repeats and escalation pause until the parent recovers.
        """
        self.alerts.update_alert(
            work.connection, record.id, suppressed_by=parent, held=Hold.DEPENDENCY
        )
        muted = self.alerts.mute_pending_notices(work.connection, record.id, f"dependency {parent}")
        detail = f"depends on {parent}, which is critical"
        if muted:
            detail += f"; {muted} waiting notice(s) muted"
        self.alerts.add_event(work.connection, record.id, work.now, "suppressed", detail)

    def _release(self, work: _Pass, record: AlertRecord, **columns: Any) -> None:
        """End a hold (mute or dependency). Nobody could act while nobody was told, so the
        escalation steps and the response target count from now.
        """
        routing = self._routing(record).restarted()
        self.alerts.update_alert(
            work.connection,
            record.id,
            held=None,
            escalation_base=work.now,
            routing=routing,
            **columns,
        )

    def _dependency_grace(self, check: CheckConfig) -> timedelta:
        """Return how long a child's firing notice waits for its parents' results: the
        longest parent timeout, at most ``MAX_DEPENDENCY_GRACE``."""
        timeouts = [
            self.checks[parent].timeout for parent in check.depends_on if parent in self.checks
        ]
        return min(max(timeouts, default=timedelta(0)), MAX_DEPENDENCY_GRACE)

    def _critical_parent(self, check: CheckConfig, states: dict[str, CheckState]) -> str | None:
        for parent in check.depends_on:
            state = states.get(parent)
            if state is not None and state.last_status is Status.CRITICAL:
                return parent
        return None

    def _reload(self, connection: Connection, alert_id: int) -> AlertRecord:
        return alert_from_row(
            connection.execute(select(alerts_table).where(alerts_table.c.id == alert_id)).one()
        )

    def _routing(self, record: AlertRecord) -> Routing:
        """Return an alert's per-route state keyed by route id (state stored by position
        before route ids is adopted under the routes at those positions now)."""
        return record.routing.adopt(self.route_ids)

    def _facts(self, record: AlertRecord) -> AlertFacts:
        return AlertFacts(
            record.check, record.target, record.severity, record.status.label, record.labels
        )

    def _muter_factory(self, now: datetime) -> Muter:
        from upkeep.alerting.windows import WindowCalendar
        from upkeep.config.models import MuteConfig

        one_offs = self.store.runs.list_windows(ending_after=now - timedelta(days=1))
        mutes: dict[str, MuteConfig] = {
            name: window.mute for name, window in self.config.windows.items() if window.mute
        }
        for one_off in one_offs:
            if one_off.mute:
                mutes[one_off.name] = MuteConfig.model_validate(one_off.mute)
        silences = [
            ActiveSilence(silence.id, silence.matchers, silence.starts_at, silence.ends_at)
            for silence in self.alerts.silences(now=now)
        ]
        return Muter(WindowCalendar(self.config, one_offs), mutes, silences)

    def _notify(
        self,
        work: _Pass,
        record: AlertRecord,
        kind: NotificationKind,
        *,
        routes: list[int] | None = None,
        channels: list[str] | None = None,
        detail: str = "",
        delay: timedelta = timedelta(0),
        ended: str | None = None,
    ) -> None:
        """Queue ``kind`` notices of an alert on its routes (or the given ones), to the
        routes' channels (or the given ones); a muted alert's notices are recorded as muted
        and the alert is held until the mute ends. ``ended`` says why a resolved alert
        ended when it is not that its check is ok again.
        """
        facts = self._facts(record)
        taken = matching_routes(self.config.routes, facts) if routes is None else routes
        if not taken:
            return
        now = work.now
        muted_by = work.muter.muted_by(facts, now)
        title, body, level = compose(
            kind,
            MessageFacts(
                record.id,
                record.check,
                record.target,
                record.severity,
                record.status,
                record.message,
                record.labels,
                record.opened_at,
                record.acked_by,
                work.run_id,
                record.resolved_at,
            ),
            now=now,
            zone=self.zone,
            public_url=self.config.alerting.public_url,
            detail=detail,
            ended=ended,
        )
        title, body = self.loaded.redactor.redact(title), self.loaded.redactor.redact(body)
        routing = self._routing(record)
        queued: set[str] = set()
        for index in taken:
            route = self.config.routes[index]
            route_id = self.route_ids[index]
            state = routing.state(route_id, index)
            targets = channels or route.notify
            if kind == "repeat":
                # A reminder while the last notice to that channel has not gone out yet (the
                # channel is down) would only pile up: one undelivered notice is enough.
                targets = [
                    channel
                    for channel in targets
                    if not self.alerts.has_undelivered(work.connection, record.id, channel)
                ]
                if not targets:
                    # The interval starts again: the next reminder is a whole one away.
                    routing = routing.with_state(route_id, state.model_copy(update={"last": now}))
                    continue
            count = state.notices + 1
            notifications = [
                Notification(
                    key=f"{self.key_prefix}a{record.id}-r{state.slot}-n{count}-{channel}",
                    channel=channel,
                    kind=kind,
                    group_key=group_key(route_id, route, facts),
                    title=title,
                    body=body,
                    level=level,
                    severity=record.severity,
                    alert_id=record.id,
                    fallback=route.fallback,
                    fallback_after=route.fallback_after if route.fallback else None,
                )
                for channel in targets
            ]
            inserted = add_notifications(
                work.connection,
                notifications,
                now,
                deliver_after=self._group_due(
                    work, route.group_wait, notifications, now + max(route.group_wait, delay)
                ),
                muted_by=muted_by,
            )
            changes: dict[str, Any] = {"notices": count}
            if channels is None:
                # Only a notice to the route's own channels restarts its repeat interval;
                # an escalation to others does not remind the people the route notifies.
                changes["last"] = now
            queued.update(notification.channel for notification in notifications)
            if muted_by is None:
                changes["sent"] = state.sent + 1
                work.report.notifications += len(inserted)
                work.report.queued += inserted
            else:
                work.report.muted += len(inserted)
            routing = routing.with_state(route_id, state.model_copy(update=changes))
        columns: dict[str, Any] = {"routing": routing}
        if muted_by is not None and kind != "resolved":
            columns["held"] = Hold.MUTED
        self.alerts.update_alert(work.connection, record.id, **columns)
        if muted_by is not None:
            self.alerts.add_event(
                work.connection, record.id, now, "muted", f"{kind} notice muted by {muted_by}"
            )
        elif queued:
            self.alerts.add_event(
                work.connection,
                record.id,
                now,
                "notified",
                f"{kind} to {', '.join(sorted(queued))}",
            )

    def _group_due(
        self,
        work: _Pass,
        group_wait: timedelta,
        notifications: Sequence[Notification],
        default: datetime,
    ) -> datetime:
        """Return when new notices of a group are due: with the group's first notice still
        waiting (so alerts arriving within ``group_wait`` of it go out with it, as one
        message), else ``default``.
        """
        if group_wait <= timedelta(0) or not notifications:
            return default
        first = notifications[0]
        waiting = self.alerts.group_due(work.connection, first.channel, first.group_key, work.now)
        return min(waiting, default) if waiting is not None else default


def _dependency_depths(checks: Mapping[str, CheckConfig]) -> dict[str, int]:
    """Given the checks, return each one's depth in the dependency graph (0: no parents);
    the loader has refused cycles, and an unknown parent counts as none.
    """
    depths: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in depths:
            return depths[name]
        check = checks.get(name)
        parents = [p for p in (check.depends_on if check else []) if p in checks and p not in seen]
        value = 1 + max((depth(p, seen | {name}) for p in parents), default=-1)
        depths[name] = value
        return value

    for name in checks:
        depth(name, frozenset())
    return depths
