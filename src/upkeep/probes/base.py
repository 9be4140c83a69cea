"""The probe contract: every probe kind honours ``Probe`` and is listed in ``registry``.

A probe measures one target and returns named metrics. It declares:

* ``target_kind`` / ``name`` — how the config addresses it (``kind: postgres`` + ``probe: size``);
* ``Params`` — a pydantic model of its ``params:`` (unknown keys are errors);
* ``metrics`` — the metric names it returns, with type and unit, so conditions can be
  checked before anything runs and docs can be generated;
* ``run`` — the measurement, which raises ``TargetUnreachable`` when the target cannot be
  reached (the check becomes ``critical``) and lets any other exception escape (the
  engine turns it into ``unknown``).

Target models live beside their probes (``probes/<kind>.py``) and mark secret fields with
``SecretMarker`` so validation, docs and masking come from one declaration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import Field

from upkeep.core.clock import SYSTEM_CLOCK, Clock
from upkeep.core.models import StrictModel
from upkeep.core.results import MetricValue
from upkeep.core.status import Status

if TYPE_CHECKING:
    from upkeep.core.redaction import Redactor
    from upkeep.io.http import HttpClient
    from upkeep.store.store import Store

MetricType = Literal["number", "bool", "string"]


class TargetBase(StrictModel):
    """Fields every target kind shares.

    ``path_fields`` names the fields that hold a file-system path as written in the config;
    the loader resolves a relative one (and ``~``) against the config file's directory,
    as it does for the store and ``${file:}``. A list field is an argv: only its program
    is a path, and only when written with a slash (``./check.sh``), since a bare name is
    looked up on ``PATH``. ``required_files`` names those of them that must exist when the
    config is loaded (a CA bundle; not a log directory, which may appear later).

    ``cron_fields`` names fields holding a cron expression, which the loader checks with
    the config's one cron grammar (this layer sits below it); ``zone_fields`` names fields
    holding an IANA zone, which the loader sets to the config's ``timezone`` when left out.
    """

    path_fields: ClassVar[tuple[str, ...]] = ()
    required_files: ClassVar[tuple[str, ...]] = ()
    cron_fields: ClassVar[tuple[str, ...]] = ()
    zone_fields: ClassVar[tuple[str, ...]] = ()

    kind: str
    labels: dict[str, str] = Field(
        default={}, description="labels for selecting and routing; checks inherit them"
    )
    description: str | None = Field(default=None, description="free text for people")


class NoParams(StrictModel):
    """Params model of a probe that takes none."""


MetricUnit = Literal["ms", "s", "days", "bytes"]


def metric_unit(name: str) -> MetricUnit | None:
    """Given a metric's name, return the unit it is measured in, read from the name (the
    naming rule of every probe): ``*_ms`` milliseconds, ``*days*`` days, ``*_s`` and
    ``seconds`` seconds, ``*bytes`` bytes; None for a plain number (a count, a percent)."""
    lowered = name.lower()
    if lowered.endswith("_ms"):
        return "ms"
    if "days" in lowered:
        return "days"
    if lowered.endswith("_s") or lowered == "seconds":
        return "s"
    if lowered.endswith("bytes"):
        return "bytes"
    return None


@dataclass(frozen=True)
class MetricSpec:
    """One metric a probe returns: its name (unit in the name), type and meaning."""

    name: str
    type: MetricType
    description: str

    @property
    def unit(self) -> MetricUnit | None:
        """Return the unit the metric is measured in (``metric_unit`` of its name)."""
        return metric_unit(self.name)


@dataclass(frozen=True)
class CheckInfo:
    """A configured check as a probe that reads other checks' results sees it (the config
    layer above builds these): its name, its target's kind, its labels (its target's and
    its own), how often it runs and whether it is enabled."""

    name: str
    target_kind: str
    labels: Mapping[str, str]
    every: timedelta
    enabled: bool


class TargetUnreachable(Exception):  # noqa: N818 - reads as a state, like TimeoutError
    """The target could not be reached or refused us; the check becomes ``critical``."""


@dataclass
class ProbeOutcome:
    """What a probe measured.

    ``status`` is set only by probes whose target reports its own status (a Nagios plugin's
    exit code) or that find something no condition should be needed for (a damaged newest
    backup); the engine combines it with the check's conditions, taking the worse.
    """

    metrics: dict[str, MetricValue]
    message: str = ""
    status: Status | None = None


NextFiring = Callable[[str, str, datetime], datetime]
"""Given a cron expression, an IANA zone and a moment, return the expression's next firing
after it (the config's cron grammar, which this layer cannot import)."""


@dataclass
class ProbeContext:
    """Everything a probe run may use: the deadline and the process-wide seams; the store
    (None when the run keeps none), the clock and the cron schedule for probes that judge
    what was recorded against time (heartbeats)."""

    timeout: timedelta
    http: HttpClient
    redactor: Redactor
    extra: dict[str, Any] = field(default_factory=dict)
    store: Store | None = None
    clock: Clock = SYSTEM_CLOCK
    next_firing: NextFiring | None = None

    @property
    def timeout_s(self) -> float:
        """Return the check's timeout in seconds, for client libraries that take floats."""
        return self.timeout.total_seconds()


TargetT = TypeVar("TargetT", bound=TargetBase)
ParamsT = TypeVar("ParamsT", bound=StrictModel)


class Probe(ABC, Generic[TargetT, ParamsT]):
    """One kind of measurement of one kind of target."""

    target_kind: ClassVar[str]
    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[StrictModel]] = NoParams
    metrics: ClassVar[tuple[MetricSpec, ...]]
    # Probes whose metric names come from the target (Nagios perfdata labels) cannot have
    # their conditions checked against a fixed list; the fixed ones are still listed.
    dynamic_metrics: ClassVar[bool] = False
    # Probes whose metrics are named in their params (the SQL ``query`` probe) describe
    # them here for the docs and return them from ``metrics_for``.
    params_metrics: ClassVar[str | None] = None
    # Probes that read other checks' stored results (a group's health) say so: a run of
    # several checks runs them after the others' results are stored.
    reads_results: ClassVar[bool] = False
    # How often a check of this probe runs when it gives no ``every:`` (None: the check's
    # own default). Heartbeats run more often, so a missed deadline alerts soon after it.
    default_every: ClassVar[timedelta | None] = None

    @classmethod
    def metric_names(cls) -> frozenset[str]:
        """Return the names of the metrics this probe always declares."""
        return frozenset(spec.name for spec in cls.metrics)

    @classmethod
    def metrics_for(cls, params: StrictModel | None) -> tuple[MetricSpec, ...] | None:
        """Given a check's params (None if they are wrong), return every metric the check
        returns; None if that depends on params that are wrong (its conditions cannot be
        checked yet). The default is the fixed ``metrics``, whatever the params."""
        del params
        return cls.metrics

    def bind_checks(
        self, target: TargetT, checks: Sequence[CheckInfo]
    ) -> list[tuple[tuple[str | int, ...], str]]:
        """Given a target and every check of the config, let a probe that reads other
        checks' results (a group's health) fix which ones on the target, and return the
        problems as (key path within the target, message). The default reads none."""
        del target, checks
        return []

    def validate(self, target: TargetT, params: ParamsT) -> list[str]:
        """Given a parsed target and params, return problems the models cannot express.

        The default finds none; probes override it for cross-field rules.
        """
        del target, params
        return []

    @abstractmethod
    async def run(self, target: TargetT, params: ParamsT, context: ProbeContext) -> ProbeOutcome:
        """Given the target, params and context, measure and return the metrics.

        Raise ``TargetUnreachable`` if the target cannot be reached; any other exception
        means the probe itself failed and the check becomes ``unknown``.
        """


def metrics_from(values: Mapping[str, MetricValue]) -> dict[str, MetricValue]:
    """Given metric values, return them with floats rounded to 3 decimals for stable output."""
    return {
        key: round(value, 3) if isinstance(value, float) else value for key, value in values.items()
    }
