"""The run log: runbook runs and their steps, one-off windows, schedule marks, instances.

Every write is its own short transaction, so a run's record is current at every step and a
crash leaves at most one step ``running`` — which the next leader marks ``interrupted``
once it knows the owner is gone, unless the step is one the engine can resume (a wait, a
watch, an approval: ``sweep_orphans``), in which case the leader takes the run over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from upkeep.store.remediations import claim_for_run
from upkeep.store.rows import inserted_id
from upkeep.store.schema import instances, maintenance_windows, run_steps, runs, schedule_marks

if TYPE_CHECKING:
    import threading

    from sqlalchemy import Engine
    from sqlalchemy.engine import Connection

logger = logging.getLogger(__name__)


class RunStatus(StrEnum):
    """What a run is doing, or how it ended (``runs.status``)."""

    RUNNING = "running"
    WAITING = "waiting"
    """An approval step waits for a decision."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    """Stopped by upkeep itself: a draining daemon, a signalled CLI."""
    INTERRUPTED = "interrupted"
    """Its owner died before it finished."""
    MISSED = "missed"
    """A scheduled firing nobody ran."""


class StepStatus(StrEnum):
    """What a run's step is doing, or how it ended (``run_steps.status``)."""

    PENDING = "pending"
    """Not started yet."""
    RUNNING = "running"
    WAITING = "waiting"
    """An approval step waits for a decision."""
    OK = "ok"
    WARNING = "warning"
    """A checks step whose worst result is a warning: reported, not a failure."""
    DONE = "done"
    """A manual item confirmed at the prompt."""
    TODO = "todo"
    """A manual item left for a person."""
    PLANNED = "planned"
    """A dry run's step: what it would do."""
    APPROVED = "approved"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    REJECTED = "rejected"
    EXPIRED = "expired"
    """An approval step with no decision within its timeout."""
    NOT_RUN = "not_run"
    """Left out: an earlier step failed with ``on_failure: stop``, the run ended, or no
    step failed, so the rollback was not needed."""
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"

    @property
    def failed(self) -> bool:
        """Return whether this outcome counts as a failure for ``on_failure``."""
        return self in FAILED_STEP_STATUSES


class ApprovalDecision(StrEnum):
    """What someone decided about an approval step (``run_steps.decision``)."""

    APPROVED = "approved"
    REJECTED = "rejected"


RunTrigger = Literal["schedule", "cli", "api", "alert"]
"""How a run was started: by the scheduler, by ``upkeep run``, through the API, or by an
alert that fired (``on_alert:``)."""

ACTIVE_RUN_STATUSES = (RunStatus.RUNNING, RunStatus.WAITING)
"""Run statuses that mean "not finished": a dead owner turns them into ``interrupted``."""
ACTIVE_STEP_STATUSES = (StepStatus.RUNNING, StepStatus.WAITING, StepStatus.PENDING)
FAILED_STEP_STATUSES = frozenset(
    {StepStatus.FAILED, StepStatus.TIMED_OUT, StepStatus.REJECTED, StepStatus.EXPIRED}
)
INSTANCE_STALE_AFTER = timedelta(seconds=60)
"""An instance whose heartbeat is older than this is considered dead."""
HEARTBEAT_INTERVAL_S = 15.0
"""How often a live instance refreshes its heartbeat (well inside ``INSTANCE_STALE_AFTER``)."""


RELEASED_OWNER = "released"
"""The owner of a run its daemon handed over while stopping (in a wait, watch or approval
step): no process, so the next leader takes it over at once."""


def new_instance_id() -> str:
    """Return an id for this process: host, pid and a random token (pids get reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def keep_alive(
    run_log: RunLog, instance_id: str, role: Callable[[], str], redact: Callable[[str], str]
) -> None:
    """Given a run log and this process's id, refresh its heartbeat forever (cancel to stop).

    A failed beat is logged and retried: one missed beat is harmless, while stopping would
    let another process mark this one's live runs ``interrupted``.
    """
    while True:
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)
        try:
            await asyncio.to_thread(run_log.register_instance, instance_id, role())
        except Exception as error:  # noqa: BLE001 - a store hiccup must not end the heartbeat
            logger.warning("heartbeat failed, retrying: %s", redact(str(error)))


def interrupted_end(
    sweep: datetime, heartbeat: datetime | None, recorded: datetime
) -> tuple[datetime, bool]:
    """Given the moment a sweep found a run's owner dead, the owner's last heartbeat (None:
    no instance row, as for a released run or another host's vanished process) and the
    latest moment the run recorded (its start, its steps' starts and ends), return when the
    run ended and whether that is a moment its owner was seen alive.

    The owner was alive at its last heartbeat and at whatever the run recorded, so the run
    ended at the later of the two, never after the sweep (a clock ahead of the sweeper's
    must not end a run in the future). With no heartbeat nothing says when the process
    stopped, and the sweep moment stands.
    """
    if heartbeat is None:
        return sweep, False
    return min(max(heartbeat, recorded), sweep), True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class StepRecord:
    """One step of a run as stored."""

    position: int
    name: str
    kind: str
    status: StepStatus
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    output: str
    detail: dict[str, Any]
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision: ApprovalDecision | None = None

    @property
    def phase(self) -> str:
        """Return where the step belongs: ``main`` (the runbook's steps), ``rollback`` or
        ``finally`` (kept in its detail)."""
        return str(self.detail.get("phase", "main"))


@dataclass(frozen=True)
class OrphanSweep:
    """What a sweep did with runs whose owner died: the ids it marked ``interrupted`` and
    the ids it took over to resume."""

    interrupted: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class RunRecord:
    """One run as stored, with its steps when asked for."""

    id: int
    runbook: str
    trigger: str
    triggered_by: str | None
    status: RunStatus
    dry_run: bool
    scheduled_for: datetime | None
    started_at: datetime
    finished_at: datetime | None
    owner: str
    message: str
    detail: dict[str, Any]
    steps: list[StepRecord] = field(default_factory=list)
    alert_id: int | None = None
    """The alert whose firing started it (trigger ``alert``)."""

    @property
    def duration_s(self) -> float | None:
        """Return how long the run took, or None while it runs."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class OneOffWindow:
    """A maintenance window added from the CLI or API."""

    id: int
    name: str
    starts_at: datetime
    ends_at: datetime
    mute: dict[str, Any] | None
    comment: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class RunChange:
    """A run took a status someone may need to hear about: it ``failed``, ``succeeded``,
    was ``cancelled``, ``interrupted`` or ``missed``, or started ``waiting`` for approval."""

    run_id: int
    status: RunStatus
    at: datetime


RunObserver = Callable[["Connection", Sequence[RunChange]], None]
"""Told of run changes inside the transaction that records them (``RunLog.observe``)."""


class RunLog:
    """Reads and writes the run-related tables of a store; safe to share between threads.

    An observer (``observe``) is told of every change of a run's status to waiting or to a
    final one, inside the transaction that records it: what it writes (the notices of
    ``alerting/notices.py``) commits with the change or not at all.
    """

    def __init__(self, engine: Engine, lock: threading.Lock) -> None:
        self.engine = engine
        self._lock = lock
        self._observer: RunObserver | None = None

    def observe(self, observer: RunObserver | None) -> None:
        """Given an observer (None: none), tell it from now on of every run that starts
        waiting or ends, inside the transaction recording that. It runs in a savepoint: an
        observer that raises is logged and undone, and the run's record stands."""
        self._observer = observer

    def forget(self, observer: RunObserver) -> None:
        """Given an observer, stop telling it, if it is the one told (another installed
        since stays)."""
        if self._observer == observer:
            self._observer = None

    def _tell(self, connection: Connection, changes: Sequence[RunChange]) -> None:
        observer = self._observer
        if observer is None or not changes:
            return
        try:
            with connection.begin_nested():
                observer(connection, changes)
        except Exception as error:  # noqa: BLE001 - a notice must never cost the run's record
            from upkeep.store.store import error_reason

            # One line without SQL parameters: notice texts are redacted, but not for logs.
            logger.error(
                "run notices for run(s) %s were not queued: %s",
                ", ".join(str(change.run_id) for change in changes),
                error_reason(error),
            )

    # --- instances ---------------------------------------------------------------------

    def register_instance(self, instance_id: str, role: str, now: datetime | None = None) -> None:
        """Given this process's id and role, record it (or refresh it) with a heartbeat now."""
        moment = now or datetime.now(UTC)
        host, pid, _token = instance_id.rsplit(":", 2)
        with self._lock, self.engine.begin() as connection:
            updated = connection.execute(
                update(instances)
                .where(instances.c.id == instance_id)
                .values(heartbeat_at=moment, role=role)
            ).rowcount
            if not updated:
                connection.execute(
                    insert(instances).values(
                        id=instance_id,
                        host=host,
                        pid=int(pid),
                        started_at=moment,
                        heartbeat_at=moment,
                        role=role,
                    )
                )

    def unregister_instance(self, instance_id: str) -> None:
        """Given this process's id, remove its row (a clean exit)."""
        with self._lock, self.engine.begin() as connection:
            connection.execute(delete(instances).where(instances.c.id == instance_id))

    def list_instances(self) -> list[dict[str, Any]]:
        """Return every registered instance, newest heartbeat first."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(instances).order_by(instances.c.heartbeat_at.desc()))
            return [dict(row._mapping) for row in rows]

    def owner_is_dead(self, owner: str, now: datetime | None = None) -> bool:
        """Given a run's owner id, return whether that process is certainly gone.

        Gone means: on this host with its pid no longer alive, or its heartbeat older than
        ``INSTANCE_STALE_AFTER``, or no instance row at all for another host; a released
        run (``RELEASED_OWNER``) has no owner at all.
        """
        moment = now or datetime.now(UTC)
        if owner == RELEASED_OWNER:
            return True
        try:
            host, pid_text, _token = owner.rsplit(":", 2)
            pid = int(pid_text)
        except ValueError:
            return True
        if host == socket.gethostname() and not _pid_alive(pid):
            return True
        with self.engine.connect() as connection:
            heartbeat = connection.execute(
                select(instances.c.heartbeat_at).where(instances.c.id == owner)
            ).scalar()
        if heartbeat is None:
            # A live process on this host always registers before it owns a run.
            return True
        return bool(moment - heartbeat > INSTANCE_STALE_AFTER)

    def interrupt_orphans(
        self, is_dead: Callable[[str], bool] | None = None, now: datetime | None = None
    ) -> list[int]:
        """Mark every unfinished run whose owner is dead as ``interrupted``; return their ids.

        Their unfinished steps become ``interrupted`` too, so nothing stays ``running``.
        """
        return self.sweep_orphans(is_dead=is_dead, now=now).interrupted

    def sweep_orphans(
        self,
        *,
        new_owner: str | None = None,
        resumable: Callable[[RunRecord], bool] | None = None,
        is_dead: Callable[[str], bool] | None = None,
        now: datetime | None = None,
    ) -> OrphanSweep:
        """Given this process's id and a rule saying which runs it can resume, take over
        every unfinished run of a dead owner the rule accepts (its owner becomes
        ``new_owner``) and mark every other one ``interrupted``; return both lists of ids.

        The takeover is a compare-and-set on the owner, so when several processes sweep at
        once each run goes to exactly one of them (the others see it taken and leave it).
        Without ``new_owner`` or ``resumable`` every orphan is interrupted.

        An interrupted run (and its unfinished steps) ends when its owner was last known
        alive, not when the sweep noticed (``interrupted_end``): its duration is how long the
        process worked on it. All of them are marked in one transaction, and the observer is
        told each one's end.
        """
        moment = now or datetime.now(UTC)
        check = is_dead or (lambda owner: self.owner_is_dead(owner, moment))
        with self.engine.connect() as connection:
            candidates = connection.execute(
                select(runs.c.id, runs.c.owner).where(runs.c.status.in_(ACTIVE_RUN_STATUSES))
            ).all()
        orphans = [(row.id, row.owner) for row in candidates if check(row.owner)]
        resumed: list[int] = []
        dead: list[int] = []
        for run_id, owner in orphans:
            record = self.get_run(run_id) if resumable is not None else None
            if new_owner and record is not None and resumable is not None and resumable(record):
                if self._take_over(run_id, owner, new_owner):
                    resumed.append(run_id)
                continue
            dead.append(run_id)
        if not dead:
            return OrphanSweep([], resumed)
        with self._lock, self.engine.begin() as connection:
            # The runs still unfinished now (one may have ended since the read above): only
            # those are interrupted, and only those are told.
            still = connection.execute(
                select(runs.c.id, runs.c.owner, runs.c.started_at).where(
                    runs.c.id.in_(dead), runs.c.status.in_(ACTIVE_RUN_STATUSES)
                )
            ).all()
            taken = [int(row.id) for row in still]
            heartbeats: dict[str, datetime] = {
                row.id: row.heartbeat_at
                for row in connection.execute(
                    select(instances.c.id, instances.c.heartbeat_at).where(
                        instances.c.id.in_(sorted({row.owner for row in still}))
                    )
                )
            }
            recorded: dict[int, datetime] = {}
            for row in connection.execute(
                select(run_steps.c.run_id, run_steps.c.started_at, run_steps.c.finished_at).where(
                    run_steps.c.run_id.in_(taken)
                )
            ):
                for stamp in (row.started_at, row.finished_at):
                    if stamp is not None:
                        run_id = int(row.run_id)
                        recorded[run_id] = max(recorded.get(run_id, stamp), stamp)
            changes: list[RunChange] = []
            for row in still:
                ended, seen = interrupted_end(
                    moment,
                    heartbeats.get(row.owner),
                    max(row.started_at, recorded.get(row.id, row.started_at)),
                )
                message = "the process running it stopped before it finished"
                if seen:
                    alive_at = ended.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
                    message += f" (last seen alive at {alive_at} UTC)"
                connection.execute(
                    update(runs)
                    .where(runs.c.id == row.id, runs.c.status.in_(ACTIVE_RUN_STATUSES))
                    .values(status=RunStatus.INTERRUPTED, finished_at=ended, message=message)
                )
                connection.execute(
                    update(run_steps)
                    .where(
                        run_steps.c.run_id == row.id,
                        run_steps.c.status.in_((StepStatus.RUNNING, StepStatus.WAITING)),
                    )
                    .values(status=StepStatus.INTERRUPTED, finished_at=ended)
                )
                connection.execute(
                    update(run_steps)
                    .where(run_steps.c.run_id == row.id, run_steps.c.status == StepStatus.PENDING)
                    .values(status=StepStatus.NOT_RUN)
                )
                changes.append(RunChange(int(row.id), RunStatus.INTERRUPTED, ended))
            self._tell(connection, changes)
        return OrphanSweep(dead, resumed)

    def _take_over(self, run_id: int, old_owner: str, new_owner: str) -> bool:
        """Given an unfinished run, its dead owner and this process's id, make this process
        its owner unless another process did first; return whether this one did."""
        with self._lock, self.engine.begin() as connection:
            return bool(
                connection.execute(
                    update(runs)
                    .where(
                        runs.c.id == run_id,
                        runs.c.owner == old_owner,
                        runs.c.status.in_(ACTIVE_RUN_STATUSES),
                    )
                    .values(owner=new_owner)
                ).rowcount
            )

    def release_run(self, run_id: int, owner: str) -> bool:
        """Given an unfinished run this process owns, hand it over (owner
        ``RELEASED_OWNER``) for the next leader to resume; return whether it was still
        this process's."""
        return self._take_over(run_id, owner, RELEASED_OWNER)

    # --- runs ----------------------------------------------------------------------------

    def start_run(
        self,
        *,
        runbook: str,
        trigger: RunTrigger,
        owner: str,
        steps: Sequence[tuple[str, str] | tuple[str, str, str]],
        triggered_by: str | None = None,
        scheduled_for: datetime | None = None,
        dry_run: bool = False,
        now: datetime | None = None,
        alert_id: int | None = None,
    ) -> int | None:
        """Given a runbook, its trigger and its steps (name, kind, and optionally phase:
        ``main`` unless given), record a ``running`` run.

        Return its id, or None if the scheduled firing ``(runbook, scheduled_for)`` was
        already claimed by another process (the claim is the unique key), or, for a run
        an alert starts (``alert_id``), if that alert's trigger of the runbook is not
        pending any more (started or suppressed elsewhere: ``store.remediations``).
        """
        moment = now or datetime.now(UTC)
        try:
            with self._lock, self.engine.begin() as connection:
                inserted = connection.execute(
                    insert(runs).values(
                        runbook=runbook,
                        trigger=trigger,
                        triggered_by=triggered_by,
                        status=RunStatus.RUNNING,
                        dry_run=dry_run,
                        scheduled_for=scheduled_for,
                        started_at=moment,
                        owner=owner,
                        message="",
                        detail={},
                        alert_id=alert_id,
                    )
                )
                run_id = inserted_id(inserted)
                if alert_id is not None and not claim_for_run(
                    connection,
                    runbook=runbook,
                    alert_id=alert_id,
                    run_id=run_id,
                    dry_run=dry_run,
                    now=moment,
                ):
                    raise _Unclaimed
                if steps:
                    connection.execute(
                        insert(run_steps),
                        [
                            {
                                "run_id": run_id,
                                "position": position,
                                "name": step[0],
                                "kind": step[1],
                                "status": StepStatus.PENDING,
                                "attempts": 0,
                                "output": "",
                                "detail": _phase_detail(step),
                            }
                            for position, step in enumerate(steps)
                        ],
                    )
        except _Unclaimed:
            return None
        except IntegrityError:
            if scheduled_for is None and alert_id is None:
                raise
            return None
        return int(run_id)

    def record_missed(
        self,
        runbook: str,
        scheduled_for: datetime,
        owner: str,
        reason: str,
        now: datetime | None = None,
    ) -> int | None:
        """Given a firing nobody ran, record it as ``missed`` (at ``now``, by default the
        current time); None if it was claimed already."""
        moment = now or datetime.now(UTC)
        try:
            with self._lock, self.engine.begin() as connection:
                run_id = inserted_id(
                    connection.execute(
                        insert(runs).values(
                            runbook=runbook,
                            trigger="schedule",
                            status=RunStatus.MISSED,
                            dry_run=False,
                            scheduled_for=scheduled_for,
                            started_at=moment,
                            finished_at=moment,
                            owner=owner,
                            message=reason,
                            detail={},
                        )
                    )
                )
                self._tell(connection, [RunChange(run_id, RunStatus.MISSED, moment)])
                return run_id
        except IntegrityError:
            return None

    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        message: str = "",
        detail: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        """Given a run id, record its final status, message and detail (finished at ``now``,
        by default the current time)."""
        moment = now or datetime.now(UTC)
        values: dict[str, Any] = {"status": status, "message": message, "finished_at": moment}
        if detail is not None:
            values["detail"] = detail
        # Only an unfinished run takes a final status: one already marked interrupted (its
        # owner looked dead) or cancelled keeps that record.
        with self._lock, self.engine.begin() as connection:
            changed = connection.execute(
                update(runs)
                .where(runs.c.id == run_id, runs.c.status.in_(ACTIVE_RUN_STATUSES))
                .values(**values)
            ).rowcount
            if changed:
                self._tell(connection, [RunChange(run_id, status, moment)])

    def set_run_status(self, run_id: int, status: RunStatus) -> None:
        """Given a run id, set its (unfinished) status: ``running`` or ``waiting``."""
        with self._lock, self.engine.begin() as connection:
            changed = connection.execute(
                update(runs)
                .where(runs.c.id == run_id, runs.c.status.in_(ACTIVE_RUN_STATUSES))
                .values(status=status)
            ).rowcount
            if changed and status == RunStatus.WAITING:
                self._tell(connection, [RunChange(run_id, status, datetime.now(UTC))])

    def update_step(self, run_id: int, position: int, **values: Any) -> None:
        """Given a run id and step position, update the step's columns."""
        with self._lock, self.engine.begin() as connection:
            still_active = (
                select(runs.c.id)
                .where(runs.c.id == run_id, runs.c.status.in_(ACTIVE_RUN_STATUSES))
                .scalar_subquery()
            )
            connection.execute(
                update(run_steps)
                .where(
                    run_steps.c.run_id == still_active,
                    run_steps.c.position == position,
                )
                .values(**values)
            )

    def decide(
        self,
        run_id: int,
        decision: ApprovalDecision,
        by: str,
        comment: str = "",
        position: int | None = None,
    ) -> StepRecord:
        """Given a run waiting for approval, record ``approved`` or ``rejected`` by someone.

        Return the decided step. Raise LookupError if the run has no step waiting for a
        decision (or not the given one), ValueError if ``decision`` is neither.
        """
        if decision not in tuple(ApprovalDecision):
            raise ValueError("decision must be approved or rejected")
        condition = and_(
            run_steps.c.run_id == run_id,
            run_steps.c.kind == "approval",
            run_steps.c.status == StepStatus.WAITING,
            run_steps.c.decision.is_(None),
        )
        if position is not None:
            condition = and_(condition, run_steps.c.position == position)
        with self._lock, self.engine.begin() as connection:
            row = connection.execute(
                select(run_steps).where(condition).order_by(run_steps.c.position)
            ).first()
            if row is None:
                raise LookupError(f"run {run_id} has no step waiting for approval")
            detail = dict(row.detail or {})
            if comment:
                detail["comment"] = comment
            connection.execute(
                update(run_steps)
                .where(run_steps.c.id == row.id)
                .values(
                    decision=decision,
                    decided_by=by,
                    decided_at=datetime.now(UTC),
                    detail=detail,
                )
            )
        position_decided: int = row.position
        return self.get_run_steps(run_id)[position_decided]

    def step_decision(
        self, run_id: int, position: int
    ) -> tuple[ApprovalDecision | None, str | None]:
        """Given a run and step, return (decision, decided_by) — (None, None) while undecided."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(run_steps.c.decision, run_steps.c.decided_by).where(
                    run_steps.c.run_id == run_id, run_steps.c.position == position
                )
            ).first()
        if row is None:
            return None, None
        decision = ApprovalDecision(row.decision) if row.decision is not None else None
        return decision, row.decided_by

    def waiting_runs(self) -> list[RunRecord]:
        """Return every run waiting for approval, with its steps, oldest first."""
        with self.engine.connect() as connection:
            ids = connection.execute(
                select(runs.c.id).where(runs.c.status == RunStatus.WAITING).order_by(runs.c.id)
            ).scalars()
            found = [run_in(connection, int(run_id)) for run_id in ids]
        return [record for record in found if record is not None]

    def get_run(self, run_id: int) -> RunRecord | None:
        """Given a run id, return the run with its steps, or None if there is none."""
        with self.engine.connect() as connection:
            row = connection.execute(select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            return None
        return _run_record(row, self.get_run_steps(run_id))

    def get_run_steps(self, run_id: int) -> list[StepRecord]:
        """Given a run id, return its steps in order."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(run_steps).where(run_steps.c.run_id == run_id).order_by(run_steps.c.position)
            ).all()
        return [_step_record(row) for row in rows]

    def list_runs(
        self,
        *,
        runbook: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        statuses: Sequence[RunStatus] = (),
        limit: int = 200,
    ) -> list[RunRecord]:
        """Given filters (runs started in ``[since, until)``), return runs newest first
        (without their steps)."""
        query = select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
        if runbook is not None:
            query = query.where(runs.c.runbook == runbook)
        if since is not None:
            query = query.where(runs.c.started_at >= since)
        if until is not None:
            query = query.where(runs.c.started_at < until)
        if statuses:
            query = query.where(runs.c.status.in_(list(statuses)))
        with self.engine.connect() as connection:
            return [_run_record(row, []) for row in connection.execute(query)]

    def last_scheduled(self, runbook: str) -> datetime | None:
        """Given a runbook, return the latest firing time recorded for it (run or missed)."""
        with self.engine.connect() as connection:
            value = connection.execute(
                select(runs.c.scheduled_for)
                .where(runs.c.runbook == runbook, runs.c.scheduled_for.is_not(None))
                .order_by(runs.c.scheduled_for.desc())
                .limit(1)
            ).scalar()
        return value if isinstance(value, datetime) else None

    def prune_runs(self, keep: timedelta, now: datetime | None = None) -> int:
        """Given a retention period, delete finished runs that started before it; return how many."""
        cutoff = (now or datetime.now(UTC)) - keep
        with self._lock, self.engine.begin() as connection:
            old = select(runs.c.id).where(
                runs.c.started_at < cutoff, runs.c.status.not_in(ACTIVE_RUN_STATUSES)
            )
            connection.execute(delete(run_steps).where(run_steps.c.run_id.in_(old)))
            return int(
                connection.execute(
                    delete(runs).where(
                        runs.c.started_at < cutoff, runs.c.status.not_in(ACTIVE_RUN_STATUSES)
                    )
                ).rowcount
            )

    # --- schedule marks ---------------------------------------------------------------------

    def schedule_mark(self, name: str) -> datetime | None:
        """Given a schedule's name, return up to when it was evaluated, or None if never."""
        with self.engine.connect() as connection:
            value = connection.execute(
                select(schedule_marks.c.evaluated_until).where(schedule_marks.c.name == name)
            ).scalar()
        return value if isinstance(value, datetime) else None

    def set_schedule_mark(self, name: str, until: datetime) -> None:
        """Given a schedule's name, record that it was evaluated up to ``until`` (never backwards)."""
        with self._lock, self.engine.begin() as connection:
            updated = connection.execute(
                update(schedule_marks)
                .where(
                    schedule_marks.c.name == name,
                    or_(
                        schedule_marks.c.evaluated_until < until,
                        schedule_marks.c.evaluated_until.is_(None),
                    ),
                )
                .values(evaluated_until=until)
            ).rowcount
            if updated:
                return
            exists = connection.execute(
                select(schedule_marks.c.name).where(schedule_marks.c.name == name)
            ).first()
            if exists is None:
                try:
                    with connection.begin_nested():
                        connection.execute(
                            insert(schedule_marks).values(name=name, evaluated_until=until)
                        )
                except IntegrityError:
                    pass  # another instance marked it at the same moment

    # --- one-off windows --------------------------------------------------------------------

    def add_window(
        self,
        name: str,
        starts_at: datetime,
        ends_at: datetime,
        *,
        created_by: str,
        comment: str = "",
        mute: dict[str, Any] | None = None,
    ) -> OneOffWindow:
        """Given a name and a period, record a one-off window and return it.

        A name that a config window has adds an extra opening of that window. Raise
        ValueError if the period is empty.
        """
        if ends_at <= starts_at:
            raise ValueError("a window must end after it starts")
        created_at = datetime.now(UTC)
        with self._lock, self.engine.begin() as connection:
            inserted = connection.execute(
                insert(maintenance_windows).values(
                    name=name,
                    starts_at=starts_at,
                    ends_at=ends_at,
                    mute=mute,
                    comment=comment,
                    created_by=created_by,
                    created_at=created_at,
                )
            )
            window_id = inserted_id(inserted)
        return OneOffWindow(
            window_id, name, starts_at, ends_at, mute, comment, created_by, created_at
        )

    def remove_window(self, window_id: int, *, by: str, now: datetime | None = None) -> bool:
        """Given a one-off window's id and who removes it, end it for good; return whether
        it existed and was not removed already. The row stays, marked with who removed it
        and when, so the record keeps the author of every change."""
        with self._lock, self.engine.begin() as connection:
            return bool(
                connection.execute(
                    update(maintenance_windows)
                    .where(
                        maintenance_windows.c.id == window_id,
                        maintenance_windows.c.removed_at.is_(None),
                    )
                    .values(removed_at=now or datetime.now(UTC), removed_by=by)
                ).rowcount
            )

    def list_windows(self, *, ending_after: datetime | None = None) -> list[OneOffWindow]:
        """Return one-off windows not removed (optionally only those ending after a moment),
        by start."""
        query = (
            select(maintenance_windows)
            .where(maintenance_windows.c.removed_at.is_(None))
            .order_by(maintenance_windows.c.starts_at, maintenance_windows.c.id)
        )
        if ending_after is not None:
            query = query.where(maintenance_windows.c.ends_at > ending_after)
        with self.engine.connect() as connection:
            return [
                OneOffWindow(
                    row.id,
                    row.name,
                    row.starts_at,
                    row.ends_at,
                    row.mute,
                    row.comment,
                    row.created_by,
                    row.created_at,
                )
                for row in connection.execute(query)
            ]


def _phase_detail(step: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """Given a step as ``start_run`` takes it, return its first detail: its phase, if it
    is not ``main`` (a main step's detail stays as before: empty)."""
    phase = step[2] if len(step) > 2 else "main"
    return {} if phase == "main" else {"phase": phase}


def run_in(connection: Connection, run_id: int) -> RunRecord | None:
    """Given an open connection (a transaction's: it sees what that wrote) and a run id,
    return the run with its steps, or None if there is none."""
    row = connection.execute(select(runs).where(runs.c.id == run_id)).first()
    if row is None:
        return None
    steps = connection.execute(
        select(run_steps).where(run_steps.c.run_id == run_id).order_by(run_steps.c.position)
    ).all()
    return _run_record(row, [_step_record(step) for step in steps])


def _step_record(row: Any) -> StepRecord:
    return StepRecord(
        position=row.position,
        name=row.name,
        kind=row.kind,
        status=StepStatus(row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        attempts=row.attempts,
        output=row.output,
        detail=row.detail or {},
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        decision=ApprovalDecision(row.decision) if row.decision else None,
    )


class _Unclaimed(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside ``start_run``'s transaction to roll the run back: its alert trigger
    was decided by someone else."""


def _run_record(row: Any, steps: list[StepRecord]) -> RunRecord:
    return RunRecord(
        id=row.id,
        runbook=row.runbook,
        trigger=row.trigger,
        triggered_by=row.triggered_by,
        status=RunStatus(row.status),
        dry_run=bool(row.dry_run),
        scheduled_for=row.scheduled_for,
        started_at=row.started_at,
        finished_at=row.finished_at,
        owner=row.owner,
        message=row.message,
        detail=row.detail or {},
        steps=steps,
        alert_id=row.alert_id,
    )
