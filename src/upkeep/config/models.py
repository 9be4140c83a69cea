"""The shape of ``upkeep.yaml``: pydantic models for every section of the spec.

Unknown keys are errors everywhere (``extra="forbid"``). Targets are a union
discriminated by ``kind`` over the models the probe registry lists; check ``params`` are
validated against the chosen probe's own model by the loader, which knows the target.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from upkeep.config.cron import validate_cron
from upkeep.core.durations import Duration
from upkeep.core.models import (
    Reference,
    StrictModel,
    exactly_one_of,
    given_keys,
    validate_with_key_rule,
)
from upkeep.core.redaction import SecretMarker
from upkeep.probes.base import TargetBase
from upkeep.probes.registry import TARGET_KINDS
from upkeep.store.outbox import DeliveryConfig
from upkeep.store.store import DEFAULT_SCHEMA, Store, schema_problem, url_sets_search_path
from upkeep.tasks.backup.checks import DRILL_CHECK_PREFIX
from upkeep.tasks.backup.config import BackupsConfig

Severity = Literal["P1", "P2", "P3", "P4"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""What a name of a target, check, runbook, channel, window or route looks like."""
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=200)]

STORE_CHECK = "upkeep:store"
"""The check name of the store's own alert (its target is the store's URL, without
password)."""


STORE_PROBE = "store"
"""The probe name its results carry."""


SYSTEM_CHECKS = frozenset({STORE_CHECK})
"""Names the alerting side knows without a ``checks:`` entry."""

TargetName = Annotated[str, Reference(("targets",), "target")]
CheckName = Annotated[str, Reference(("checks",), "check")]
AlertCheckName = Annotated[
    str,
    Reference(
        ("checks",),
        "check",
        extra=SYSTEM_CHECKS,
        # A drill names a backup source, or a database target drilled with the defaults.
        families=((DRILL_CHECK_PREFIX, ("backups", "sources")), (DRILL_CHECK_PREFIX, ("targets",))),
    ),
]
"""A check an alert may come from: a configured one or upkeep's own (``upkeep:store``,
``upkeep:drill:<backup source>``)."""
ChannelName = Annotated[str, Reference(("channels",), "channel")]
WindowName = Annotated[str, Reference(("windows",), "window")]
RunbookName = Annotated[str, Reference(("runbooks",), "runbook")]

if TYPE_CHECKING:
    AnyTarget = TargetBase
else:
    AnyTarget = Annotated[
        Union[tuple(kind.model for kind in TARGET_KINDS.values())],  # noqa: UP007 - built at run time
        Field(discriminator="kind"),
    ]


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {value!r}; expected an IANA name such as Europe/Berlin"
        ) from None
    return value


def _longer_than_zero(value: timedelta, info: ValidationInfo) -> timedelta:
    # A field's own rule, checked with the other fields: a rule of the whole entry
    # (mode="after") would wait until every other field is valid.
    if value <= timedelta(0):
        raise ValueError(f"{info.field_name} must be longer than 0s")
    return value


def _check_schedule(value: str) -> str:
    validate_cron(value)
    return value


class CheckConfig(StrictModel):
    """A probe of a target on a schedule, with conditions mapping its metrics to a status."""

    target: TargetName = Field(description="the name of the target it probes")
    probe: str | None = Field(
        default=None, description="the target kind's probe (default: the kind's first)"
    )
    params: dict[str, Any] = Field(
        default={}, description="the probe's params (docs/probes.md lists each probe's)"
    )
    every: Duration = Field(
        default=timedelta(minutes=1),
        description="how often the daemon runs it (spread over the interval by a stable "
        "jitter); a heartbeat's check runs every 30s unless given",
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="a probe still running this long is critical (timed out)",
    )
    warn: str | None = Field(
        default=None, description="a condition on the probe's metrics that means warning"
    )
    crit: str | None = Field(
        default=None,
        description="a condition that means critical (checked first); with neither, a result "
        "is ok unless the probe fails",
    )
    severity: Severity = Field(default="P3", description="severity of the alert when critical")
    warn_severity: Severity = Field(
        default="P4", description="severity of the alert while it is only a warning"
    )
    labels: dict[str, str] = Field(
        default={}, description="labels for selecting and routing, over the target's"
    )
    description: str | None = Field(default=None, description="free text for people")
    enabled: bool = Field(
        default=True,
        description="false: validated, but neither scheduled nor chosen by labels; runs only when named",
    )
    for_: Annotated[Duration, Field(alias="for")] = Field(
        default=timedelta(0),
        description="an alert stays pending until the check has failed for this long",
    )
    after: int = Field(
        default=1, ge=1, le=1000, description="and for this many results in a row (hard state)"
    )
    clear_after: int = Field(
        default=1, ge=1, le=1000, description="ok results in a row that resolve an alert"
    )
    depends_on: list[CheckName] = Field(
        default=[],
        description="checks this one depends on: while one of them is critical, this "
        "check's alerts are suppressed",
    )

    _positive = field_validator("every", "timeout")(_longer_than_zero)


class CheckSelector(StrictModel):
    """Which checks a runbook step runs: by name, by labels (all must match), or both."""

    names: list[CheckName] = Field(default=[], description="these checks")
    labels: dict[str, str] = Field(
        default={},
        description="the checks carrying all of these labels (their own or their target's)",
    )


OnFailure = Literal["stop", "continue"]
Phase = Literal["main", "rollback", "finally"]
"""Where a runbook step belongs: ``steps``, the rollback (``on_failure`` as a list) or
``finally``."""


class WatchConfig(StrictModel):
    """A watch: the selected checks run every ``every`` for ``for``; the step fails as soon
    as one turns bad."""

    checks: CheckSelector = Field(description="which checks to watch (as a checks step selects)")
    for_: Annotated[Duration, Field(alias="for")] = Field(
        description="how long to watch; the step succeeds when this passes clean"
    )
    every: Duration = Field(
        default=timedelta(minutes=1), description="how often the checks run meanwhile"
    )
    fail_on: Literal["critical", "warning"] = Field(
        default="critical",
        description="critical: a critical or unknown result fails the step; warning: a "
        "warning does too",
    )

    @field_validator("for_", "every")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value


class StepConfig(StrictModel):
    """One runbook step: exactly one of checks, task, command, manual, approval, wait or
    watch."""

    name: str | None = Field(default=None, description="how output and records name the step")
    checks: CheckSelector | None = Field(
        default=None, description="run these checks; the step fails if one is critical or unknown"
    )
    task: str | None = Field(default=None, description="run this built-in task (below)")
    target: TargetName | None = Field(default=None, description="the target the task works on")
    with_: Annotated[dict[str, Any], Field(alias="with")] = Field(
        default={}, description="the task's params (below)"
    )
    command: list[str] | None = Field(
        default=None, description="run this argv (no shell); a non-zero exit fails the step"
    )
    env: Annotated[dict[str, str], SecretMarker()] = Field(
        default={}, description="added to the command's environment; values are secret"
    )
    manual: str | None = Field(
        default=None, description="a checklist item for a person; a run records it"
    )
    approval: str | None = Field(
        default=None,
        description="a question the run waits on until `upkeep approve RUN` (or the API) "
        "decides; a rejection stops the run",
    )
    wait: Duration | None = Field(
        default=None,
        description="pause the run this long (between rollout stages); a daemon restart "
        "resumes the wait with the time left",
    )
    watch: WatchConfig | None = Field(
        default=None,
        description="run checks every `every` for `for`; fail as soon as one turns bad",
    )
    on_failure: OnFailure | None = Field(
        default=None,
        description="stop or continue the run when this step fails (default: the runbook's; "
        "in `finally`: continue)",
    )
    timeout: Duration | None = Field(
        default=None, description="the step is cancelled and fails after this long"
    )
    retries: int = Field(default=0, ge=0, le=10, description="further attempts after a failure")

    @model_validator(mode="wrap")
    @classmethod
    def _one_action(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> StepConfig:
        return validate_with_key_rule(cls, data, handler, _one_action_problem)

    @field_validator("command")
    @classmethod
    def _has_program(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("command needs at least the program to run")
        return value

    @field_validator("wait")
    @classmethod
    def _positive_wait(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("a wait must be longer than zero")
        return value


_STEP_ACTIONS = ("checks", "task", "command", "manual", "approval", "wait", "watch")


def _one_action_problem(data: Any) -> str | None:
    actions = given_keys(data, _STEP_ACTIONS)
    if len(actions) == 1:
        return None
    found = ", ".join(actions) if actions else "none"
    return f"a step needs exactly one of {', '.join(_STEP_ACTIONS)} (found: {found})"


class RunbookConfig(StrictModel):
    """A named procedure: ordered steps, an optional schedule and window."""

    description: str | None = Field(default=None, description="free text for people")
    schedule: Annotated[str, Field(description="cron")] | None = Field(
        default=None,
        description="when the daemon runs it: 5-field cron (`0 9 * * MON`, `SAT#1`, `L`) or "
        "@daily, @weekly, @monthly, @quarterly, @yearly; none: on demand only",
    )
    timezone: str | None = Field(
        default=None, description="the schedule's IANA zone (default: the config's timezone)"
    )
    window: WindowName | None = Field(
        default=None, description="a window of `windows:`; the runbook runs only inside it"
    )
    timeout: Duration | None = Field(
        default=None,
        description="its steps are cancelled after this long (then the rollback, if any, "
        "and `finally` run)",
    )
    labels: dict[str, str] = Field(
        default={},
        description="free labels: routes' `match.runs.labels` select this runbook's run "
        "notices by them",
    )
    steps: Annotated[list[StepConfig], Field(min_length=1)] = Field(
        description="what it does, in order (at least one)"
    )
    on_alert: OnAlertConfig | None = Field(
        default=None,
        description="remediation: the leader daemon starts the runbook when a matching "
        "alert fires, within guard rails (none: never started by an alert)",
    )
    on_failure: OnFailure | list[StepConfig] = Field(
        default="stop",
        description="after a failed step: stop, or continue with the next; or a list of "
        "rollback steps: the run stops at a failed step (unless the step says continue) "
        "and, if any step failed or the runbook timed out, runs these",
    )
    finally_: Annotated[list[StepConfig], Field(alias="finally")] = Field(
        default=[],
        description="steps that always run last: after the steps and any rollback, "
        "whether they succeeded, failed or timed out (not when the run is cancelled)",
    )

    _schedule = field_validator("schedule")(
        lambda value: _check_schedule(value) if value is not None else value
    )
    _timezone = field_validator("timezone")(
        lambda value: _check_timezone(value) if value is not None else value
    )

    @property
    def policy(self) -> OnFailure:
        """Return what a failed step does to the run by default: stop or continue (a
        rollback list means stop)."""
        return self.on_failure if isinstance(self.on_failure, str) else "stop"

    @property
    def rollback(self) -> list[StepConfig]:
        """Return the rollback steps (empty unless ``on_failure`` is a list)."""
        return [] if isinstance(self.on_failure, str) else self.on_failure

    def flow(self) -> list[FlowStep]:
        """Return every step in the order a run records them: the steps, the rollback,
        then ``finally``; each with its phase and its key path inside the runbook."""
        sections: tuple[tuple[Phase, str, list[StepConfig]], ...] = (
            ("main", "steps", self.steps),
            ("rollback", "on_failure", self.rollback),
            ("finally", "finally", self.finally_),
        )
        return [
            FlowStep(phase, (key, index), step)
            for phase, key, steps in sections
            for index, step in enumerate(steps)
        ]


class FlowStep(NamedTuple):
    """One step of a runbook's flow: its phase, its key path in the runbook
    (``("steps", 2)``, ``("on_failure", 0)``, ``("finally", 1)``) and its config."""

    phase: Phase
    key: tuple[str, int]
    step: StepConfig


RunEvent = Literal["failed", "interrupted", "missed", "waiting", "succeeded", "cancelled"]
"""What a run notice reports: the run failed, its owner died (``interrupted``), a
scheduled firing was not run (``missed``), an approval step waits (``waiting``), the run
succeeded, or upkeep itself stopped it (``cancelled``)."""
DEFAULT_RUN_EVENTS: tuple[RunEvent, ...] = ("failed", "interrupted", "missed", "waiting")
"""The events a run route takes when it names none: everything someone must act on."""


class RunMatch(StrictModel):
    """Which run notices a route takes: all given criteria must hold."""

    runbooks: list[RunbookName] | None = Field(
        default=None, description="runs of these runbooks (default: any)"
    )
    labels: dict[str, str] = Field(default={}, description="labels the runbook carries")
    events: Annotated[list[RunEvent], Field(min_length=1)] = Field(
        default=list(DEFAULT_RUN_EVENTS),
        description="failed, interrupted, missed, waiting (an approval step waits), "
        "succeeded, cancelled (default: failed, interrupted, missed, waiting)",
    )


_ALERT_CRITERIA = ("severity", "labels", "checks")


def _alerts_or_runs(data: Any) -> str | None:
    if "runs" in data and given_keys(data, _ALERT_CRITERIA):
        return (
            "a route matches alerts (severity, labels, checks) or runs (runs:), not both; "
            "write two routes"
        )
    return None


class RouteMatch(StrictModel):
    """Which alerts a route takes: all given criteria must hold. With ``runs:`` instead, it
    takes run notices and no alerts; without it, alerts and no run notices."""

    severity: list[Severity] | None = Field(
        default=None, description="one severity or a list (default: any)"
    )
    labels: dict[str, str] = Field(default={}, description="labels the alert's check carries")
    checks: list[AlertCheckName] | None = Field(default=None, description="alerts of these checks")
    runs: RunMatch | None = Field(
        default=None,
        description="take run notices instead of alerts: failed or interrupted runs, "
        "missed firings, approvals waiting (`runs: {}` takes the default events of every "
        "runbook); a route without it never gets run notices",
    )

    @field_validator("severity", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("runs", mode="before")
    @classmethod
    def _empty_runs(cls, value: Any) -> Any:
        # ``runs:`` written with nothing after it still means "run notices", not alerts.
        return {} if value is None else value

    @model_validator(mode="wrap")
    @classmethod
    def _one_subject(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> RouteMatch:
        return validate_with_key_rule(cls, data, handler, _alerts_or_runs)


class OnAlertConfig(StrictModel):
    """When an alert starts a runbook (remediation), and the rails that bound it.

    Only a firing starts it (not a repeat, a change or a resolution), once per alert;
    the runbook's approval steps still wait for a person.
    """

    match: RouteMatch = Field(
        description="which alerts start it, as a route's `match:` (checks, labels, "
        "severity); at least one criterion"
    )
    max_runs: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=3, description="at most this many alert-started runs per `per`"
    )
    per: Duration = Field(
        default=timedelta(hours=1), description="the period `max_runs` counts over"
    )
    cooldown: Duration = Field(
        default=timedelta(minutes=10),
        description="no alert starts it again for this long after an alert-started run ends",
    )
    dry_run_only: bool = Field(
        default=False,
        description="record a dry run (the plan) instead of running it: to watch what "
        "remediation would do before letting it act",
    )

    @field_validator("match", mode="before")
    @classmethod
    def _alerts_only(cls, value: Any) -> Any:
        # A route may take run notices (``runs:``); what starts a runbook is an alert.
        if isinstance(value, dict) and "runs" in value:
            raise ValueError(
                "on_alert matches alerts (checks, labels, severity); `runs:` belongs to "
                "a route's match"
            )
        return value

    @field_validator("match")
    @classmethod
    def _not_every_alert(cls, value: RouteMatch) -> RouteMatch:
        if value.severity is None and value.checks is None and not value.labels:
            raise ValueError(
                "name checks, labels or severity: a runbook started by every alert would "
                "run for failures it cannot mend"
            )
        return value

    @field_validator("per")
    @classmethod
    def _positive_period(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value


# ``RunbookConfig`` is written before the route models it shares ``match`` with: its
# fields are collected again now that ``OnAlertConfig`` exists, so the loader's walk of
# references sees ``on_alert.match.checks``.
RunbookConfig.model_rebuild(force=True)


class EscalationConfig(StrictModel):
    """Notify more channels when an alert stays unacknowledged for ``after``."""

    after: Duration = Field(
        description="time since the alert fired, unacknowledged (a run route: since the "
        "approval step started waiting, undecided)"
    )
    notify: Annotated[list[ChannelName], Field(min_length=1)] = Field(
        description="channels notified then, besides the route's"
    )


class RouteConfig(StrictModel):
    """Where matching alerts go, how often they repeat and how they escalate."""

    name: Name | None = Field(
        default=None,
        description="a stable id, unique among routes: an alert's repeats and escalation "
        "steps on this route follow the name when routes are reordered or edited "
        "(default: an id made from match and notify, so changing either starts afresh)",
    )
    match: RouteMatch = Field(
        default=RouteMatch(), description="which alerts it takes (default: every alert)"
    )
    notify: Annotated[list[ChannelName], Field(min_length=1)] = Field(
        description="channels of `channels:` that get its alerts"
    )
    repeat: Duration | None = Field(
        default=None,
        description="notify again this often while the alert fires unacknowledged (a run "
        "route: while an approval waits)",
    )
    escalate: EscalationConfig | list[EscalationConfig] | None = Field(
        default=None, description="one step or a list: more channels while nobody acknowledges"
    )
    group_by: list[str] = Field(
        default=["check"],
        description="alerts with equal values of these (check, target, severity or a label) "
        "arriving within group_wait are sent as one message (run notices: runbook, event "
        "or a runbook label; `check` reads as the runbook)",
    )
    group_wait: Duration = Field(
        default=timedelta(seconds=0),
        description="how long the first alert of a group waits for others to join its message",
    )
    continue_: Annotated[bool, Field(alias="continue")] = Field(
        default=False,
        description="also try the routes after this one (routes are tried in order; the "
        "first match takes an alert unless it continues)",
    )
    fallback: ChannelName | None = Field(
        default=None,
        description="a channel that gets the notification when a channel of this route "
        "has failed fallback_after attempts (the original keeps retrying)",
    )
    fallback_after: int = Field(
        default=3, ge=1, le=100, description="failed attempts of a channel before the fallback"
    )

    @property
    def escalations(self) -> list[EscalationConfig]:
        """Given the route, return its escalation steps, earliest first."""
        if self.escalate is None:
            return []
        steps = self.escalate if isinstance(self.escalate, list) else [self.escalate]
        return sorted(steps, key=lambda step: step.after)


class MuteConfig(StrictModel):
    """Which alerts a window mutes: all given criteria must hold."""

    labels: dict[str, str] = Field(default={}, description="labels the alert's check carries")
    checks: list[AlertCheckName] | None = Field(default=None, description="alerts of these checks")
    severity: list[Severity] | None = Field(default=None, description="these severities")


class AnnounceConfig(StrictModel):
    """Notices a window sends about each of its openings, each once per opening."""

    notify: Annotated[list[ChannelName], Field(min_length=1)] = Field(
        description="channels of `channels:` that get the notices"
    )
    before: Duration | None = Field(
        default=None, description="announce each opening this long before it (none: not ahead)"
    )
    opened: bool = Field(default=True, description="announce that it opened")
    closed: bool = Field(default=True, description="announce that it closed")

    _positive = field_validator("before")(
        lambda value, info: _longer_than_zero(value, info) if value is not None else value
    )


class WindowConfig(StrictModel):
    """A maintenance window: recurring (``schedule``) or one-off (``start``), for ``duration``."""

    schedule: str | None = Field(
        default=None, description="a recurring window opens at each firing of this cron"
    )
    start: datetime | None = Field(
        default=None, description="a one-off window opens at this ISO 8601 time"
    )
    duration: Duration = Field(description="how long it stays open")
    timezone: str | None = Field(
        default=None, description="the schedule's IANA zone (default: the config's timezone)"
    )
    mute: MuteConfig | None = Field(
        default=None,
        description="alerts it mutes while open (none: runbooks may run, nothing is muted); "
        "one still firing at the end is notified then",
    )
    description: str | None = Field(default=None, description="free text for people")
    announce: AnnounceConfig | None = Field(
        default=None,
        description="notices about each opening: a set time before it, when it opens, "
        "when it closes (none: the window is silent)",
    )

    _schedule = field_validator("schedule")(
        lambda value: _check_schedule(value) if value is not None else value
    )
    _timezone = field_validator("timezone")(
        lambda value: _check_timezone(value) if value is not None else value
    )

    _duration = field_validator("duration")(_longer_than_zero)

    @model_validator(mode="wrap")
    @classmethod
    def _one_kind(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> WindowConfig:
        rule = exactly_one_of(
            ("schedule", "start"), "a window needs either schedule (recurring) or start (one-off)"
        )
        return validate_with_key_rule(cls, data, handler, rule)

    @field_validator("start")
    @classmethod
    def _in_calendar(cls, value: datetime | None) -> datetime | None:
        if value is not None and not 1970 <= value.year <= 9000:
            # The window's end (start + duration) and its timezone must stay in the calendar.
            raise ValueError("start must be a date between the years 1970 and 9000")
        return value


UnknownPolicy = Literal["up", "down", "excluded"]
CHECK_PATTERN = r"^[A-Za-z0-9_.*?\[\]!-]+$"
"""A check's name, or a shell-style pattern of names (``db-*``, ``web-?``, ``[ab]-api``)."""


class StatusComponentConfig(StrictModel):
    """A part of the service as the public sees it: a group of checks with one state."""

    name: Name = Field(
        description="its name on the page and in badge URLs (`/status/badge/<name>/...`)"
    )
    description: str | None = Field(default=None, description="free text shown under its name")
    checks: list[Annotated[str, Field(pattern=CHECK_PATTERN, max_length=200)]] = Field(
        default=[],
        description="checks it groups: names or shell-style patterns (`web-*`); a pattern "
        "takes only enabled checks",
    )
    labels: dict[str, str] = Field(
        default={},
        description="and/or the enabled checks carrying all of these labels (their own or "
        "their target's)",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _selects_something(
        cls, data: Any, handler: ValidatorFunctionWrapHandler
    ) -> StatusComponentConfig:
        def problem(given: dict[str, Any]) -> str | None:
            if given_keys(given, ("checks", "labels")):
                return None
            return "a component needs checks (names or patterns), labels, or both"

        return validate_with_key_rule(cls, data, handler, problem)

    def selects(self, name: str, labels: Mapping[str, str], *, enabled: bool) -> bool:
        """Given a check's name, its labels (target's and its own) and whether it is
        enabled, return whether this component groups it: named exactly, or (enabled)
        matched by one of its patterns or carrying all of its labels."""
        if name in self.checks:
            return True
        if not enabled:
            return False
        if any(
            _is_pattern(pattern) and fnmatch.fnmatchcase(name, pattern) for pattern in self.checks
        ):
            return True
        return bool(self.labels) and all(labels.get(k) == v for k, v in self.labels.items())


def _is_pattern(text: str) -> bool:
    return any(character in text for character in "*?[")


class StatusPageConfig(StrictModel):
    """The public status page that `upkeep serve` answers at `/status` (no credential):
    components and their state, daily uptime bars, incidents with the updates published
    for them, maintenance announcements, feeds, badges and a JSON form."""

    enabled: bool = Field(
        default=False, description="serve the page (off: /status and its parts answer 404)"
    )
    title: str = Field(default="Status", max_length=200, description="the page's title")
    description: str | None = Field(
        default=None, max_length=2000, description="a line shown under the title"
    )
    base_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="the page's public address (a custom domain, e.g. "
        "`https://status.example.com`): feed, badge and page links are built on it; "
        "default: the address each request came to",
    )
    timezone: str | None = Field(
        default=None, description="the IANA zone of day boundaries (default: the config's)"
    )
    history_days: int = Field(
        default=90, ge=1, le=365, description="days of uptime bars and of incident history"
    )
    unknown_policy: UnknownPolicy = Field(
        default="excluded",
        description="how an hour in which no check of a component reported counts: `up`, "
        "`down`, or `excluded` (left out of the uptime: neither up nor down); an incident "
        "in such an hour is downtime whatever the policy, and time before a component's "
        "first result is never counted",
    )
    publish_incidents: bool = Field(
        default=True,
        description="list incidents (component, start, end); their messages and notes are "
        "never shown, only the updates published with `upkeep incidents publish`. false: "
        "no incident list at all",
    )
    components: list[StatusComponentConfig] = Field(
        default=[], max_length=1000, description="the components shown, in this order"
    )

    _timezone = field_validator("timezone")(
        lambda value: _check_timezone(value) if value is not None else value
    )


class RetentionConfig(StrictModel):
    """How long the store keeps raw check results, hourly rollups, runbook runs, resolved
    alerts and finished notifications."""

    results: Duration = Field(
        default=timedelta(days=90), description="raw check results are kept this long"
    )
    rollups: Duration = Field(
        default=timedelta(days=2 * 365),
        description="hourly rollups of check results (what `upkeep stats` reads beyond "
        "`results`) are kept this long",
    )
    runs: Duration = Field(
        default=timedelta(days=365), description="runbook runs and their steps are kept this long"
    )
    alerts: Duration = Field(
        default=timedelta(days=2 * 365),
        description="resolved alerts (incidents) and their timelines are kept this long",
    )
    notifications: Duration = Field(
        default=timedelta(days=90),
        description="sent, dead and muted notifications are kept this long in the outbox",
    )


Percent = Annotated[float, Field(ge=0, le=100)]
LabelKey = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/-]+$")]


class ReportsConfig(StrictModel):
    """What ``upkeep report`` and the ``report.send`` task measure against."""

    uptime_target: Percent = Field(
        default=99.9,
        description="the uptime (percent) every group is held to unless `targets` names it",
    )
    group_by: list[LabelKey] = Field(
        default=[],
        max_length=8,
        description="check labels whose values form the report's groups (e.g. [env, role]); "
        "empty: one group per target",
    )
    targets: dict[Annotated[str, Field(min_length=1, max_length=200)], Percent] = Field(
        default={},
        description="uptime target (percent) per group, by its name as the report shows it "
        "(a target's name, or `label=value` with `group_by`)",
    )
    top: int = Field(
        default=10,
        ge=1,
        le=100,
        description="how many checks the slowest and most failing tables list",
    )


LEGACY_TOKEN_NAME = "default"  # noqa: S105 - a token's name, not a token
"""The name of the token given as ``engine.api_token``."""
MIN_TOKEN_LENGTH = 16
"""A token shorter than this is refused: the API is worth more than a guessable word."""
_TOKEN_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TOKEN_TEXT = re.compile(r"^[\x21-\x7e]+$")
_HOST_NAME = (
    r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$"
)


def check_api_token(value: str) -> str:
    """Given an API token setting, return it; raise ValueError if it is neither a digest
    (``sha256:`` and 64 lower-case hex digits) nor a token of at least 16 printable ASCII
    characters (a header can carry nothing else, so no client could present it)."""
    if value.startswith("sha256:"):
        if not _TOKEN_DIGEST.match(value):
            raise ValueError("a token digest is sha256: followed by 64 lower-case hex digits")
        return value
    if len(value) < MIN_TOKEN_LENGTH or not _TOKEN_TEXT.match(value):
        raise ValueError(
            f"a token needs at least {MIN_TOKEN_LENGTH} printable ASCII characters and no "
            "spaces; `upkeep init` generates one"
        )
    return value


ApiToken = Annotated[str, AfterValidator(check_api_token)]
"""An API token setting: the token, or ``sha256:<hex>`` of it."""


class HttpServerConfig(StrictModel):
    """Limits that keep clients, slow or large, from starving the daemon's HTTP server."""

    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="a request body larger than this is refused (413) before it is read",
    )
    max_connections: int = Field(
        default=256,
        ge=4,
        le=65536,
        description="open connections at most (never more than a quarter of the open-file "
        "limit); beyond it the oldest connection still sending its request head, or whose "
        "client is not reading its answer, is closed",
    )
    header_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="a connection that has not sent a whole request head this long after "
        "it opened (or after its last answer) is closed",
    )
    idle_timeout: Duration = Field(
        default=timedelta(seconds=5),
        description="a kept-alive connection that sends nothing this long is closed",
    )
    body_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="a request body that has not arrived whole this long after its head "
        "is refused (408); an answer whose client has not read any of it for this long is "
        "dropped and its connection closed",
    )

    _positive = field_validator("header_timeout", "idle_timeout", "body_timeout")(_longer_than_zero)


def _one_default_problem(data: dict[str, Any]) -> str | None:
    """Given an engine section as written, return why its tokens clash, or None."""
    tokens = data.get("api_tokens")
    if (
        given_keys(data, ("api_token",))
        and isinstance(tokens, dict)
        and LEGACY_TOKEN_NAME in tokens
    ):
        return (
            f"api_token is the token named {LEGACY_TOKEN_NAME!r}; api_tokens must not "
            "name another one so"
        )
    return None


def _number(data: dict[str, Any], key: str, model_type: type[StrictModel]) -> float | None:
    """Given an entry as written, return the number at ``key`` as the field will read it,
    its default when it is not written, or None if it is no number (its own error says so)."""
    if key not in data:
        default = model_type.model_fields[key].default
        return float(default) if isinstance(default, int | float) else None
    value = data[key]
    if isinstance(value, bool):
        return None
    try:
        return float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None


def _order_problem(
    data: dict[str, Any], keys: tuple[str, str], model_type: type[StrictModel], problem: str
) -> str | None:
    """Given an entry as written, two keys and the problem, return the problem if the first
    is not below the second (a default standing in for a key not written), else None.

    Checked on the values as written, with the fields' own errors: a rule of the whole entry
    checked after the fields would stay silent while any field of the entry is wrong.
    """
    low, high = (_number(data, key, model_type) for key in keys)
    if low is not None and high is not None and low >= high:
        return problem
    return None


class EngineConfig(StrictModel):
    """How the engine and the daemon (``upkeep serve``) behave."""

    concurrency: int = Field(
        default=256, ge=1, le=10000, description="checks running at the same time at most"
    )
    listen: str = Field(
        default="127.0.0.1:9464",
        pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$",
        description="host:port of /healthz, /metrics and the API (loopback by default; "
        "any other address needs an API token)",
    )
    drain_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="on SIGTERM, how long running steps may finish before they are cancelled",
    )
    missed_grace: Duration = Field(
        default=timedelta(hours=1),
        description="a runbook firing missed while no daemon ran still runs if this recent",
    )
    takeover_interval: Duration = Field(
        default=timedelta(seconds=5),
        description="how often a standby daemon tries to take over the schedule",
    )
    write_interval: Duration = Field(
        default=timedelta(seconds=1),
        description="the daemon writes check results in batches at most this far apart",
    )
    api_token: Annotated[ApiToken | None, SecretMarker()] = Field(
        default=None,
        description="an API token named `default` (kept for older configs; `api_tokens` "
        "names each one): the token itself or `sha256:<hex digest>` of it",
    )
    api_tokens: dict[Name, Annotated[ApiToken, SecretMarker()]] = Field(
        default={},
        description="named API tokens: every `/api/*` request needs `Authorization: Bearer "
        "<token>`, and what it changes is recorded as done by `api:<name>`; each value is "
        "the token itself or `sha256:<hex digest>` of it (`upkeep init` writes one)",
    )
    allowed_hosts: list[Annotated[str, Field(pattern=_HOST_NAME, max_length=253)]] = Field(
        default=[],
        description="host names the API answers to besides loopback, IP addresses, this "
        "machine's name and the host of alerting.public_url (a DNS-rebinding guard)",
    )
    http: HttpServerConfig = Field(
        default=HttpServerConfig(),
        description="limits of the HTTP server: body size, connections, timeouts",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _one_default(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> EngineConfig:
        # A rule over the keys written, checked with the fields' own errors (not after
        # them), so a bad concurrency does not hide it until the next run.
        return validate_with_key_rule(cls, data, handler, _one_default_problem)


class FlappingConfig(StrictModel):
    """Nagios-style flap detection over a check's last results."""

    high: float = Field(
        default=20.0, gt=0, le=100, description="percent state change that starts flapping"
    )
    low: float = Field(
        default=5.0, ge=0, lt=100, description="percent state change that ends flapping"
    )

    @model_validator(mode="wrap")
    @classmethod
    def _ordered(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> FlappingConfig:
        return validate_with_key_rule(
            cls,
            data,
            handler,
            lambda given: _order_problem(
                given, ("low", "high"), cls, "flapping.low must be lower than flapping.high"
            ),
        )


def _default_response_targets() -> dict[Severity, timedelta]:
    return {
        "P1": timedelta(minutes=15),
        "P2": timedelta(hours=1),
        "P3": timedelta(hours=4),
        "P4": timedelta(hours=24),
    }


class StoreFailureConfig(StrictModel):
    """What happens while the store cannot take results: the alert that says so, and where
    alerting keeps its state until the store is back (the spill)."""

    severity: Severity = Field(
        default="P1", description="severity of the `upkeep:store` alert (store unwritable)"
    )
    labels: dict[str, str] = Field(
        default={}, description="labels of the `upkeep:store` alert, for routes and silences"
    )
    spill_dir: str | None = Field(
        default=None,
        description="private directory of the spill file (relative to the config file); "
        "default: /run/upkeep as root, else $XDG_RUNTIME_DIR/upkeep, /dev/shm or the "
        "temporary directory, preferring one on another file system than the store; "
        "memory if none is usable",
    )
    integrity_interval: Duration = Field(
        default=timedelta(hours=1),
        description="how often the store's integrity is checked (SQLite: PRAGMA quick_check)",
    )

    _positive = field_validator("integrity_interval")(_longer_than_zero)


class AlertingConfig(StrictModel):
    """Alerting defaults: response targets, flapping, delivery and links."""

    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="the daemon's public address; messages link to runs and alerts there",
    )
    response_targets: dict[Severity, Duration] = Field(
        default_factory=_default_response_targets,
        description="how soon an alert of each severity should be acknowledged; messages "
        "and `upkeep alerts` say when it falls due (the ones not given keep their default)",
    )
    flapping: FlappingConfig = Field(
        default=FlappingConfig(), description="when a check counts as flapping"
    )
    delivery: DeliveryConfig = Field(
        default=DeliveryConfig(), description="how the outbox retries a notification"
    )
    store_failure: StoreFailureConfig = Field(
        default=StoreFailureConfig(), description="what happens while the store is unwritable"
    )

    @field_validator("response_targets", mode="after")
    @classmethod
    def _complete(cls, value: dict[Severity, timedelta]) -> dict[Severity, timedelta]:
        return {**_default_response_targets(), **value}


def _valid_schema(value: str) -> str:
    problem = schema_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class StoreConfig(StrictModel):
    """Where upkeep keeps results, runs, alerts and the outbox: a database URL and, for
    PostgreSQL, the schema of the store's tables. ``store:`` may be the URL alone; the
    schema is then the default."""

    url: Annotated[str, SecretMarker(part="password")] = Field(
        default="sqlite:///.upkeep/upkeep.db",
        description="`sqlite:///path` (relative to the config file's directory) or "
        "`postgresql://user[:password]@host[:port]/db`; the password is secret",
    )
    schema_name: Annotated[str, AfterValidator(_valid_schema), Field(alias="schema")] = Field(
        default=DEFAULT_SCHEMA,
        description="PostgreSQL: the schema the store's tables live in, created if missing "
        "(a plain lower-case name); a store an earlier version kept in `public` is moved "
        "into it when first opened. SQLite ignores it",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, value: Any) -> Any:
        """Take ``store: URL`` as ``store: {url: URL}``; refuse anything but a URL or a
        mapping, saying both forms."""
        if isinstance(value, str):
            return {"url": value}
        if not isinstance(value, dict | StoreConfig):
            raise ValueError("expected a database URL or a mapping {url: …, schema: …}")
        return value

    @field_validator("url", mode="after")
    @classmethod
    def _no_search_path(cls, value: str) -> str:
        if url_sets_search_path(value):
            raise ValueError(
                "the URL sets search_path in options; give the schema as store.schema instead"
            )
        return value

    def open(self, base_dir: Path) -> Store:
        """Given the config's directory, return this store opened (and migrated); raise
        ``StoreError`` if it cannot be."""
        return Store.open(self.url, base_dir, schema=self.schema_name)


class UpkeepConfig(StrictModel):
    """The whole of ``upkeep.yaml``."""

    timezone: str = Field(
        default="UTC", description="the zone of schedules, windows and the times commands print"
    )
    store: StoreConfig = Field(
        default=StoreConfig(),
        description="where results, runs, alerts and the outbox are kept: a SQLite or "
        "PostgreSQL URL, or `{url: …, schema: …}`",
    )
    retention: RetentionConfig = Field(
        default=RetentionConfig(), description="how long the store keeps what"
    )
    engine: EngineConfig = Field(
        default=EngineConfig(),
        description="the engine and the daemon: listen address, API tokens, limits",
    )
    targets: dict[Name, AnyTarget] = Field(
        default={},
        description="the things checked, by name: services, hosts, logs, backups, heartbeats",
    )
    checks: dict[Name, CheckConfig] = Field(
        default={}, description="probes of targets on a schedule, with conditions and alerting"
    )
    runbooks: dict[Name, RunbookConfig] = Field(
        default={}, description="named procedures: ordered steps, a schedule, a window"
    )
    channels: dict[Name, Annotated[str, SecretMarker()]] = Field(
        default={}, description="where notifications go, by name: Apprise URLs"
    )
    routes: list[RouteConfig] = Field(
        default=[], description="which alerts go to which channels, tried in order"
    )
    windows: dict[Name, WindowConfig] = Field(
        default={}, description="maintenance windows: when runbooks may run, what is muted"
    )
    alerting: AlertingConfig = Field(
        default=AlertingConfig(),
        description="alerting defaults: response targets, flapping, delivery",
    )
    backups: BackupsConfig = Field(
        default=BackupsConfig(),
        description="backups: the repository, a second destination, retention, sources",
    )
    status_page: StatusPageConfig = Field(
        default=StatusPageConfig(),
        description="the public status page: components, uptime bars, incidents, feeds, badges",
    )
    reports: ReportsConfig = Field(
        default=ReportsConfig(),
        description="reports: uptime targets per group and how checks are grouped",
    )

    _timezone = field_validator("timezone")(_check_timezone)
