"""The shapes of the API's answers that several routes share: runs, alerts with their
timelines and notifications, silences, a removal. Declared so the OpenAPI schema says
what each answer holds (and schemathesis holds every answer to it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    """The base of every declared answer: a key the code adds but the model does not
    declare fails the answer's validation (a 500 the tests and the fuzzer catch), so the
    schema never silently drops or hides a field."""

    model_config = ConfigDict(extra="forbid")


class StepModel(Answer):
    """One step of a run."""

    position: int = Field(description="0-based")
    number: int = Field(description="1-based, as `upkeep approve --step` takes it")
    name: str
    kind: str
    phase: Literal["main", "rollback", "finally"] = Field(
        description="main (the runbook's steps), rollback (its `on_failure` list) or finally"
    )
    status: str
    started_at: str | None
    finished_at: str | None
    attempts: int
    output: str | None
    detail: Any = Field(description="what the step's kind records (a plan, figures)")
    decision: str | None
    decided_by: str | None
    decided_at: str | None


class RunModel(Answer):
    """A runbook run with its steps (`upkeep runs show --json`)."""

    id: int
    runbook: str
    trigger: str = Field(description="`schedule`, `cli`, `api` or `alert`")
    triggered_by: str | None = Field(
        description="who started it: a user or token, or `alert:<id> <check>`"
    )
    alert_id: int | None = Field(
        default=None, description="the alert whose firing started it (trigger `alert`)"
    )
    status: str
    dry_run: bool
    scheduled_for: str | None
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    message: str | None
    steps: list[StepModel]


class AlertModel(Answer):
    """An alert (`upkeep alerts --json`)."""

    id: int
    check: str
    target: str
    severity: str
    labels: dict[str, str]
    state: str = Field(description="`pending`, `firing` or `resolved`")
    status: str
    message: str
    opened_at: str
    fired_at: str | None
    resolved_at: str | None
    last_result_at: str
    flapping: bool
    suppressed_by: str | None
    held: str | None = Field(description="why its notices wait: `muted` or `dependency`")
    acked_by: str | None
    acked_at: str | None
    ack_expires_at: str | None
    ack_comment: str | None
    first_acked_at: str | None
    escalation_base: str | None
    response_missed: bool


class EventModel(Answer):
    """An entry of an alert's timeline."""

    at: str
    kind: str
    detail: str
    author: str | None


class DeliveryModel(Answer):
    """What happened to one notification of an alert."""

    channel: str
    kind: str
    status: str
    attempts: int
    sent_at: str | None
    next_attempt_at: str | None
    last_error: str | None
    muted_by: str | None


class AlertDetail(AlertModel):
    """An alert with its timeline and the notifications sent for it."""

    timeline: list[EventModel]
    notifications: list[DeliveryModel]


class SilenceAdded(Answer):
    """The silence added."""

    id: int
    ends_at: str


class SilenceModel(Answer):
    """A silence, with whether it mutes now."""

    id: int
    matchers: dict[str, str]
    starts_at: str
    ends_at: str
    author: str
    comment: str
    active: bool
    removed_by: str | None


class Removed(Answer):
    """What was removed."""

    id: int
    removed: bool
