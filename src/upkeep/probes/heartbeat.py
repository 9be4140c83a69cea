"""Heartbeats: cron jobs report in, and a job that does not is a failing check.

A ``heartbeat`` target is a job that pings upkeep (``/ping/<id>``, or ``upkeep ping``)
when it starts, succeeds or fails. It is expected every ``period`` or at each firing of
its cron ``schedule`` (in its timezone, else the config's); a job not heard from by then
is **late** (warning) for ``grace``, then **down** (critical). A failure ping is
**failed** (critical) until the next success; a started run that has not finished within
``max_runtime`` is **down**. A heartbeat that never pinged is **new** (ok) until its first
expected time plus grace, counted from when upkeep first judged it, then down.

The probe reads the pings from the store (``ProbeContext.store``): the daemon's route
writes them there, so any process with the store can judge them. Its id is the ping URL's
credential: it is a secret (masked everywhere), and the store keeps only its SHA-256.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidatorFunctionWrapHandler, field_validator, model_validator

from upkeep.core.durations import Duration
from upkeep.core.models import StrictModel, exactly_one_of, validate_with_key_rule
from upkeep.core.redaction import SecretMarker
from upkeep.core.results import MetricValue
from upkeep.core.status import Status
from upkeep.core.text import human_duration
from upkeep.probes.base import MetricSpec, Probe, ProbeContext, ProbeOutcome, TargetBase

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from upkeep.store.pings import PingSummary

HEARTBEAT_ID_PATTERN = r"^[A-Za-z0-9_-]{22,128}$"
"""A heartbeat id: 22 to 128 letters, digits, ``-`` and ``_`` (a UUID qualifies, and so
does ``secrets.token_urlsafe(16)``): long enough that it cannot be guessed."""
DEFAULT_GRACE = timedelta(hours=1)
"""How long a job may be late before it is down, unless the target says."""
HEARTBEAT_EVERY = timedelta(seconds=30)
"""How often a heartbeat's check runs when it does not say (``every:``): a missed deadline
alerts within this much of it."""

HeartbeatState = Literal["new", "up", "started", "late", "down", "failed"]
STATE_STATUS: dict[str, Status] = {
    "new": Status.OK,
    "up": Status.OK,
    "started": Status.OK,
    "late": Status.WARNING,
    "down": Status.CRITICAL,
    "failed": Status.CRITICAL,
}
"""The status each state is, by itself (no condition needs writing)."""


class HeartbeatTarget(TargetBase):
    """A job that reports in: expected every ``period`` or at each ``schedule`` firing."""

    cron_fields: ClassVar[tuple[str, ...]] = ("schedule",)
    zone_fields: ClassVar[tuple[str, ...]] = ("timezone",)

    kind: Literal["heartbeat"] = "heartbeat"
    id: Annotated[str, SecretMarker()] = Field(
        pattern=HEARTBEAT_ID_PATTERN,
        description="the heartbeat's id, the credential in its ping URL `/ping/<id>`: 22 to "
        "128 letters, digits, `-` and `_` (a UUID: `python3 -c 'import uuid; "
        "print(uuid.uuid4())'`); secret",
    )
    period: Duration | None = Field(
        default=None, description="the job pings at least this often (or give `schedule`)"
    )
    schedule: str | None = Field(
        default=None,
        description="the job's cron expression (5 fields); it is expected at each firing",
    )
    timezone: str | None = Field(
        default=None, description="the schedule's IANA zone (default: the config's timezone)"
    )
    grace: Duration = Field(
        default=DEFAULT_GRACE,
        description="how long after its expected time a job is late (warning) before it is "
        "down (critical)",
    )
    max_runtime: Duration | None = Field(
        default=None,
        description="a run started (`/start`) and not finished within this is down; while it "
        "runs within it, the job is not late",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _one_rhythm(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> HeartbeatTarget:
        rule = exactly_one_of(
            ("period", "schedule"),
            "a heartbeat needs either period (a duration) or schedule (a cron expression)",
        )
        return validate_with_key_rule(cls, data, handler, rule)

    @field_validator("period", "grace", "max_runtime")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; expected an IANA name such as Europe/Berlin"
            ) from None
        return value


def heartbeat_digests(targets: Mapping[str, TargetBase]) -> dict[str, tuple[str, ...]]:
    """Given the config's targets, return the digest (``store.pings.heartbeat_digest``) of
    each heartbeat id with the names of the targets that have it."""
    from upkeep.store.pings import heartbeat_digest

    index: dict[str, tuple[str, ...]] = {}
    for name, target in targets.items():
        if isinstance(target, HeartbeatTarget):
            digest = heartbeat_digest(target.id)
            index[digest] = (*index.get(digest, ()), name)
    return index


@dataclass(frozen=True)
class Judgement:
    """A heartbeat's state at one moment, with its figures and the reason in words."""

    state: HeartbeatState
    metrics: dict[str, MetricValue]
    message: str

    @property
    def status(self) -> Status:
        """Return the status the state is."""
        return STATE_STATUS[self.state]


def _ago(now: datetime, moment: datetime) -> str:
    return f"{human_duration(now - moment)} ago"


def expected_after(
    target: HeartbeatTarget,
    reference: datetime,
    next_firing: Callable[[str, str, datetime], datetime] | None,
) -> datetime:
    """Given a target, the time it last reported (or was first seen) and the cron firing
    function, return when it is next expected; raise RuntimeError if it has a schedule and
    no firing function was given."""
    if target.period is not None:
        return reference + target.period
    if target.schedule is None:
        raise RuntimeError("a heartbeat has a period or a schedule (the model ensures it)")
    if next_firing is None:
        raise RuntimeError("cron schedules need ProbeContext.next_firing")
    return next_firing(target.schedule, target.timezone or "UTC", reference)


def judge_heartbeat(
    target: HeartbeatTarget,
    pings: PingSummary,
    first_seen: datetime,
    now: datetime,
    next_firing: Callable[[str, str, datetime], datetime] | None = None,
) -> Judgement:
    """Given a target, its pings, when it was first seen, the time and the cron firing
    function, return its state:

    * a run started and not finished: ``down`` past ``max_runtime``; ``started`` within it
      (the deadline waits for it); without ``max_runtime`` the deadline still holds;
    * the newest completion a failure (no run since): ``failed``;
    * else by the deadline, the next expected time after the last success (or after
      ``first_seen`` if there was none) plus ``grace``: ``up`` (``new`` without a success,
      ``started`` while running) before the expected time, ``late`` within the grace,
      ``down`` after it.
    """
    values: dict[str, MetricValue] = {}
    newest = pings.newest
    if newest is not None:
        values["last_ping_age_s"] = round((now - newest.received_at).total_seconds(), 3)
    completion = pings.completion
    if completion is not None:
        if completion.exit_code is not None:
            values["last_exit_code"] = completion.exit_code
        elif completion.kind == "success":
            values["last_exit_code"] = 0
        if pings.run_start is not None:
            duration = completion.received_at - pings.run_start.received_at
            values["last_duration_s"] = round(duration.total_seconds(), 3)
    start = pings.start
    running = start is not None and (
        completion is None
        or (start.received_at, start.id) > (completion.received_at, completion.id)
    )
    reference = pings.success.received_at if pings.success is not None else first_seen
    deadline = expected_after(target, reference, next_firing)
    values["deadline_in_s"] = round((deadline + target.grace - now).total_seconds(), 3)

    def done(state: HeartbeatState, message: str) -> Judgement:
        return Judgement(state, {"state": state, **values}, message)

    if running and start is not None:
        running_for = now - start.received_at
        values["running_s"] = round(running_for.total_seconds(), 3)
        if target.max_runtime is not None:
            if running_for > target.max_runtime:
                return done(
                    "down",
                    f"started {_ago(now, start.received_at)} and not finished within "
                    f"max_runtime {human_duration(target.max_runtime)}",
                )
            return done(
                "started",
                f"running for {human_duration(running_for)} "
                f"(max_runtime {human_duration(target.max_runtime)})",
            )
    elif completion is not None and completion.kind == "fail":
        code = f" with exit code {completion.exit_code}" if completion.exit_code else ""
        return done("failed", f"the last run failed{code} {_ago(now, completion.received_at)}")
    last = (
        f"last success {_ago(now, pings.success.received_at)}"
        if pings.success is not None
        else f"no success yet (first seen {_ago(now, first_seen)})"
    )
    if now > deadline + target.grace:
        return done(
            "down",
            f"{last}; expected by {deadline.isoformat(timespec='seconds')}, "
            f"{human_duration(now - deadline)} late (grace {human_duration(target.grace)})",
        )
    if now > deadline:
        return done(
            "late",
            f"{last}; {human_duration(now - deadline)} late, down in "
            f"{human_duration(deadline + target.grace - now)}",
        )
    if running and start is not None:
        return done("started", f"running for {human_duration(now - start.received_at)}; {last}")
    state: HeartbeatState = "up" if pings.success is not None else "new"
    return done(state, f"{last}; next expected in {human_duration(deadline - now)}")


class StatusProbe(Probe[HeartbeatTarget, StrictModel]):
    """Whether a job reported in on time, and how its last run went."""

    target_kind: ClassVar[str] = "heartbeat"
    name: ClassVar[str] = "status"
    summary: ClassVar[str] = (
        "Whether the job pinged on time: up (ok), new (ok: never pinged, before its first "
        "deadline), started (ok: running within max_runtime), late (warning: past its "
        "expected time, within grace), down (critical: past grace, or running past "
        "max_runtime), failed (critical: its last run failed). Reads the pings from the store."
    )
    default_every: ClassVar[timedelta | None] = HEARTBEAT_EVERY
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("state", "string", "new, up, started, late, down or failed"),
        MetricSpec(
            "last_ping_age_s", "number", "seconds since the last start, success or failure ping"
        ),
        MetricSpec(
            "last_duration_s",
            "number",
            "seconds from the last run's start ping to its success or failure ping",
        ),
        MetricSpec(
            "last_exit_code", "number", "the last run's exit code (0 for a plain success ping)"
        ),
        MetricSpec("running_s", "number", "seconds the current run has been going (while running)"),
        MetricSpec(
            "deadline_in_s",
            "number",
            "seconds until the job is down if it does not report (negative: overdue)",
        ),
    )

    async def run(
        self, target: HeartbeatTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a heartbeat target, read its pings from the store and return its state;
        without a store (``upkeep check --no-store``) the state is unknown."""
        from sqlalchemy.exc import SQLAlchemyError

        from upkeep.store.pings import heartbeat_digest

        store = context.store
        if store is None:
            return ProbeOutcome(
                {},
                message="heartbeats are read from the store, and this run has none",
                status=Status.UNKNOWN,
            )
        now = context.clock.now()
        digest = heartbeat_digest(target.id)
        try:
            first_seen = await asyncio.to_thread(store.pings.first_seen, digest, now)
            summary = await asyncio.to_thread(store.pings.summary, digest)
        except SQLAlchemyError as error:
            return ProbeOutcome(
                {},
                message=f"cannot read the pings from the store: {type(error).__name__}",
                status=Status.UNKNOWN,
            )
        judgement = judge_heartbeat(target, summary, first_seen, now, context.next_firing)
        return ProbeOutcome(judgement.metrics, message=judgement.message, status=judgement.status)
