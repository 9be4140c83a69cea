"""The task contract: every maintenance action honours ``Task`` and is listed in ``registry``.

A task changes something (deletes old files, restarts a service, rotates a log). It
declares:

* ``name`` — how a runbook step addresses it (``task: files.cleanup``);
* ``Params`` — a pydantic model of the step's ``with:`` (unknown keys are errors; secret
  fields carry ``SecretMarker`` so masking and docs come from the same declaration);
* ``target_kinds`` — which target kinds it accepts (empty: it takes no target);
* ``validate`` — cross-field rules the model cannot express, checked by ``upkeep validate``;
* ``plan`` — the dry run: what it would change, changing nothing. A task whose effect
  cannot be known in advance says so (``TaskPlan.predictable = False``) rather than
  pretending nothing would happen;
* ``run`` — the change itself, returning what it did and the phases it went through.

``run`` raises ``TaskFailed`` for an expected failure (the message is shown to people) and
lets any other exception escape (the runbook records it as a task bug).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Literal,
    Protocol,
    TypeVar,
    runtime_checkable,
)

from upkeep.core.models import StrictModel
from upkeep.probes.base import TargetBase

if TYPE_CHECKING:
    from upkeep.core.redaction import Redactor
    from upkeep.core.results import CheckResult
    from upkeep.io.http import HttpClient
    from upkeep.store.store import Store
    from upkeep.tasks.backup.config import BackupsConfig


class TaskFailed(Exception):  # noqa: N818 - reads as an outcome, like TimeoutError
    """The task could not do its job; the message says why and is shown to people."""


@dataclass(frozen=True)
class Change:
    """One change a task made or would make: ``action`` on ``subject``, with details."""

    action: str
    subject: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        """Return the change as a JSON-ready mapping."""
        return {"action": self.action, "subject": self.subject, "detail": self.detail}


@dataclass
class TaskPlan:
    """The dry run of a task: the changes it would make, or why they cannot be known."""

    changes: list[Change] = field(default_factory=list)
    predictable: bool = True
    note: str = ""

    def summary(self) -> str:
        """Return one line for people: what would change, or why that cannot be said."""
        if not self.predictable:
            return (
                f"effect cannot be predicted: {self.note}"
                if self.note
                else "effect cannot be predicted"
            )
        if not self.changes:
            return self.note or "nothing to change"
        head = f"would make {len(self.changes)} change(s)"
        return f"{head}: {self.note}" if self.note else head

    def as_dict(self) -> dict[str, Any]:
        """Return the plan as a JSON-ready mapping (stored with the run)."""
        return {
            "predictable": self.predictable,
            "note": self.note,
            "changes": [change.as_dict() for change in self.changes],
        }


PhaseStatus = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class Phase:
    """One recorded phase of a task (``stop``, ``wait``, ``kill``, ``start``, ``verify``)."""

    name: str
    status: PhaseStatus
    started_at: datetime
    duration_ms: float
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Return the phase as a JSON-ready mapping."""
        return {
            "name": self.name,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "duration_ms": round(self.duration_ms, 3),
            "message": self.message,
        }


@dataclass
class TaskOutcome:
    """What a task did: the changes made, the phases, a message and optional figures."""

    changes: list[Change] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    message: str = ""
    figures: dict[str, float | int | str | bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the outcome as a JSON-ready mapping (stored with the step)."""
        return {
            "message": self.message,
            "changes": [change.as_dict() for change in self.changes],
            "phases": [phase.as_dict() for phase in self.phases],
            "figures": self.figures,
        }


class PhaseRecorder:
    """Times and records named phases; a failing phase is recorded before it propagates."""

    def __init__(self, outcome: TaskOutcome) -> None:
        self._outcome = outcome

    async def run(self, name: str, action: Callable[[], Awaitable[str]]) -> str:
        """Given a phase name and an action returning a message, run it and record it.

        Return the action's message; re-raise its exception after recording ``failed``.
        """
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        try:
            message = await action()
        except BaseException as error:
            self._outcome.phases.append(
                Phase(
                    name, "failed", started_at, (time.perf_counter() - started) * 1000, str(error)
                )
            )
            raise
        self._outcome.phases.append(
            Phase(name, "ok", started_at, (time.perf_counter() - started) * 1000, message)
        )
        return message

    def skip(self, name: str, message: str) -> None:
        """Record a phase that did not need to run, with the reason."""
        self._outcome.phases.append(Phase(name, "skipped", datetime.now(UTC), 0.0, message))


CheckRunnerFunction = Callable[[str], Awaitable["CheckResult"]]
ResultsRecorder = Callable[[list["CheckResult"]], Awaitable[None]]


class ConfiguredCheck(Protocol):
    """What a task reads of a configured check: the target it measures and the probe."""

    @property
    def target(self) -> str:
        """Return the target's name."""
        ...

    @property
    def probe(self) -> str | None:
        """Return the probe's name (None: the target kind's default probe)."""
        ...


class StoreSettings(Protocol):
    """What a task reads of the ``store:`` section: where upkeep's own store is."""

    @property
    def url(self) -> str:
        """Return the store's URL as written."""
        ...

    @property
    def schema_name(self) -> str:
        """Return the schema of a PostgreSQL store (SQLite ignores it)."""
        ...


class WholeConfig(Protocol):
    """What tasks that act on a section of the config read of it (the backup tasks).

    A protocol rather than the config model itself: tasks sit below ``upkeep.config`` in
    the layering (the config composes every task's model), so they name only what they read.
    """

    @property
    def backups(self) -> BackupsConfig:
        """Return the ``backups:`` section."""
        ...

    @property
    def targets(self) -> Mapping[str, TargetBase]:
        """Return the targets by name."""
        ...

    @property
    def checks(self) -> Mapping[str, ConfiguredCheck]:
        """Return the checks by name."""
        ...

    @property
    def timezone(self) -> str:
        """Return the config's time zone (an IANA name)."""
        ...

    @property
    def store(self) -> StoreSettings:
        """Return where upkeep's own store is."""
        ...


@dataclass(frozen=True)
class SectionContext:
    """What the loader gives a section of the config that checks itself: the rest of the
    config it may refer to, and the loader's ways of saying things."""

    targets: Mapping[str, TargetBase]
    """The targets by name (paths already resolved)."""
    resolve_path: Callable[[str], str]
    """Given a path as written, return it absolute (against the config file's directory)."""
    some_names: Callable[[Iterable[str]], str]
    """Given names, return the first few of them for a message (``a, b, ... (300 in all)``)."""


SectionT = TypeVar("SectionT")

ProblemPath = tuple[str | int, ...]
"""Where a problem is in the config: its key path from the top (``backups.sources.db``)."""


@dataclass(frozen=True)
class SectionReview(Generic[SectionT]):
    """What a section found checking itself against the rest of the config."""

    section: SectionT
    """The section as it is used from now on (its paths resolved)."""
    targets: Mapping[str, TargetBase]
    """The targets, with those the section completes (defaults it provides) replaced."""
    problems: list[tuple[ProblemPath, str]]


@runtime_checkable
class SelfCheckingSection(Protocol):
    """A section of the config owned by a slice (``backups:``), which checks itself.

    The loader calls ``review`` on every top-level section that has one, as it calls a
    probe's or a task's ``validate``, so it needs no rule of any slice; the slices sit below
    ``upkeep.config`` and know only what ``SectionContext`` gives them.
    """

    def review(self, context: SectionContext) -> SectionReview[Any]:
        """Given the rest of the config, return this section resolved, the targets it
        completes, and every problem found (key path from the top, message)."""
        ...


ReportFormat = Literal["html", "md", "pdf"]
"""The formats a report is rendered in."""


@dataclass(frozen=True)
class RenderedReport:
    """A report rendered for delivery: its title, its bytes in one format, and the HTML
    version as an e-mail body (the same document, whatever the format)."""

    title: str
    content: bytes
    media_type: str
    """``text/html; charset=utf-8``, ``text/markdown; charset=utf-8`` or ``application/pdf``."""
    filename: str
    """A file name for the report (``upkeep-weekly-2026-11-30.pdf``): no directory."""
    html: str
    """The report as self-contained HTML (inline CSS and SVG), fit for an e-mail body."""
    summary: str
    """One line for people: the period and the headline figures."""


class ReportMaker(Protocol):
    """What the ``report.send`` task uses to make a report: implemented by
    ``upkeep.reports.service.ReportService`` and handed to the task through
    ``TaskContext.reports`` by whoever builds the runbook executor (the daemon, ``upkeep
    run``). A protocol because reports sit above tasks in the layering: they read the
    whole config and the store's history, which tasks do not know."""

    def period_text(self, kind: str, now: datetime) -> str:
        """Given a report kind (daily, weekly, monthly, quarterly) and now, return the
        period it would cover, for people; raise ValueError for an unknown kind."""
        ...

    def render(self, kind: str, output_format: ReportFormat, now: datetime) -> RenderedReport:
        """Given a report kind, a format and now, return the report of the last complete
        period before now (blocking: call it from a worker thread); raise ValueError for
        an unknown kind."""
        ...

    def channel_url(self, name: str) -> str | None:
        """Given a channel's name, return its Apprise URL (a secret), or None if the
        config has no such channel."""
        ...


@dataclass
class TaskContext:
    """Everything a task may use: its deadline, the process-wide seams, and named checks."""

    timeout: timedelta
    http: HttpClient
    redactor: Redactor
    run_check: CheckRunnerFunction
    """Run a configured check by name now and return its result (``service.restart`` verifies)."""
    record_results: ResultsRecorder | None = None
    """Record results the task made itself (upkeep's own drill check) with their alerts,
    as the runbook records its checks; raise if they could not be recorded."""
    config: WholeConfig | None = None
    """The whole config, for tasks that act on a section of it (backups)."""
    store: Store | None = None
    """The store, for tasks that keep a record of their own (the backup catalog)."""
    config_path: Path | None = None
    """The config file the run was loaded from (backing up upkeep itself)."""
    reports: ReportMaker | None = None
    """Makes reports (``report.send``); None where no one provided it."""
    runbook: str | None = None
    """The runbook whose step runs the task (None outside a runbook), for tasks that read
    what an earlier run of the same step recorded (``postgres.autovacuum`` rollback)."""
    step_position: int | None = None
    """The step's position in its runbook (None outside a runbook)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def timeout_s(self) -> float:
        """Return the step's timeout in seconds, for client libraries that take floats."""
        return self.timeout.total_seconds()


TargetT = TypeVar("TargetT", bound=TargetBase | None)
ParamsT = TypeVar("ParamsT", bound=StrictModel)


class NoTaskParams(StrictModel):
    """Params model of a task that takes none."""


class Task(ABC, Generic[TargetT, ParamsT]):
    """One kind of maintenance action."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[StrictModel]] = NoTaskParams
    target_kinds: ClassVar[tuple[str, ...]] = ()
    """Target kinds the task accepts; empty means it takes no target."""
    target_required: ClassVar[bool] = False

    def validate(self, target: TargetT | None, params: ParamsT) -> list[str]:
        """Given a parsed target (or None) and params, return problems the models cannot express.

        The loader calls it in the same run as the params' own errors, so that fixing one
        never reveals another: ``target`` is None also when the step's target is missing
        or of a kind the task does not take, and ``params`` may hold defaults for values
        set aside, None for a missing required param, and break the model's own rules
        (all reported already). Each problem names every param it is about (or "target"):
        a problem naming a param set aside is left out. A rule over which keys are
        written belongs in the Params model (``validate_with_key_rule``) instead.
        """
        del target, params
        return []

    @abstractmethod
    async def plan(self, target: TargetT, params: ParamsT, context: TaskContext) -> TaskPlan:
        """Given the target, params and context, return what ``run`` would change.

        Must change nothing. Raise ``TaskFailed`` if even the plan cannot be made (a root
        that does not exist, say).
        """

    @abstractmethod
    async def run(self, target: TargetT, params: ParamsT, context: TaskContext) -> TaskOutcome:
        """Given the target, params and context, make the change and return what was done.

        Raise ``TaskFailed`` with a message for people if the task cannot do its job.
        """
