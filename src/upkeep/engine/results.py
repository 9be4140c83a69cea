"""A check result and how a probe's outcome becomes one: conditions, status, message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from upkeep.config.conditions import ConditionEvaluationError
from upkeep.core.status import Status, worst
from upkeep.probes.base import ProbeOutcome

if TYPE_CHECKING:
    from upkeep.config.loader import CompiledCheck


@dataclass(frozen=True)
class Verdict:
    """The status a result gets, why, and which condition (with its values) fired."""

    status: Status
    message: str
    condition: str | None


def judge(check: CompiledCheck, outcome: ProbeOutcome) -> Verdict:
    """Given a compiled check and the probe's outcome, return the verdict.

    ``crit`` holding → critical, else ``warn`` holding → warning, else ok. A condition
    that cannot be evaluated (missing metric, text against number) → unknown. A status the
    probe reports itself (Nagios plugins) is combined with the conditions' status, the worse
    one winning by ``status.worst`` (critical > unknown > warning > ok).
    """
    metrics = outcome.metrics
    status = Status.OK
    fired: str | None = None
    try:
        if check.crit is not None and check.crit.holds(metrics):
            status, fired = Status.CRITICAL, f"crit: {check.crit.explain(metrics)}"
        elif check.warn is not None and check.warn.holds(metrics):
            status, fired = Status.WARNING, f"warn: {check.warn.explain(metrics)}"
    except ConditionEvaluationError as error:
        # The probe's message says why a metric is missing (a JSONPath that found nothing),
        # and a status the probe found by itself (a unit that does not exist) still counts.
        why = f"; {outcome.message}" if outcome.message else ""
        own = [outcome.status] if outcome.status is not None else []
        return Verdict(
            worst([Status.UNKNOWN, *own]), f"cannot evaluate condition: {error}{why}", None
        )
    if outcome.status is not None:
        combined = worst([status, outcome.status])
        if combined is not status:
            status, fired = combined, None
    # The condition says why the status; the probe's own words say what it saw (a
    # drill's missed objective, a backup's last error), as a Nagios plugin's output does.
    said = f"{fired}: {outcome.message}" if fired and outcome.message else None
    message = said or fired or outcome.message or status.label
    return Verdict(status, message, fired)
