"""After a backup, a verification or a drill: run the source's checks now.

A failed backup or a missed objective must alert through the routes at once, not at the
check's next interval, so every operation on a source ends by running every configured
check on a ``backup`` target of that source. A drill also alerts without any such check:
its verdict is the result of upkeep's own check ``upkeep:drill:<source>`` (``drill_result``:
critical when the drill failed or missed an objective, ok when it passed, so the alert
resolves on the next passing drill), unless a configured ``drill`` check of the source
already says the same: then upkeep's own is not in force, and an alert of it still open
resolves as superseded by that check (``alerting/manager.py``) at the next tick. The backup tasks run them through their
runbook (``TaskContext.run_check``), the ``upkeep backup`` commands through the pipeline
(``engine/pipeline.py``); both through ``check_source``, with one error policy: the
operation's outcome stands. A check that cannot run, or whose result the store does not
take, is logged and reported with the operation's output, never raised over it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from upkeep.core.results import CheckResult, MetricValue
from upkeep.core.status import Status

if TYPE_CHECKING:
    from upkeep.core.redaction import Redactor
    from upkeep.tasks.backup.service import DrillReport
    from upkeep.tasks.base import CheckRunnerFunction, WholeConfig

DRILL_CHECK_PREFIX = "upkeep:drill:"
"""upkeep's own drill check of a source is this and the source's name (a colon is not
allowed in configured names, so it never clashes with one)."""
DRILL_PROBE = "drill"
DRILL_SEVERITY = "P2"
"""The severity of a failed drill's alert: a backup that may not restore in time."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceChecks:
    """What running a source's checks found: the status of each check that ran and was
    recorded, and the problems met, one sentence each."""

    statuses: dict[str, str]
    problems: list[str]

    def summary(self) -> str:
        """Return one line for an operation's output: what was checked, with what status,
        then every problem (empty if the source has no checks)."""
        parts = [f"{name} ({status})" for name, status in self.statuses.items()]
        checked = [f"checked {', '.join(parts)}"] if parts else []
        return "; ".join([*checked, *self.problems])


def source_checks(config: WholeConfig, source: str) -> list[str]:
    """Given the config and a backup source's name, return the names of the checks on a
    ``backup`` target of that source, in config order."""
    names = []
    for name, check in config.checks.items():
        target = config.targets.get(check.target)
        if (
            target is not None
            and target.kind == "backup"
            and getattr(target, "source", None) == source
        ):
            names.append(name)
    return names


def drill_check_name(source: str) -> str:
    """Return the name of upkeep's own drill check of ``source``."""
    return f"{DRILL_CHECK_PREFIX}{source}"


def drill_checks(config: WholeConfig, source: str) -> list[str]:
    """Given the config and a source, return the configured checks that run the ``drill``
    probe on a ``backup`` target of ``source``, in config order."""
    return [
        name for name in source_checks(config, source) if config.checks[name].probe == DRILL_PROBE
    ]


def has_drill_check(config: WholeConfig, source: str) -> bool:
    """Return whether a configured check runs the ``drill`` probe on a ``backup`` target of
    ``source``: then that check alerts on the drill, upkeep's own is not in force
    (``alerting.system.system_checks``) and an alert of it resolves as superseded."""
    return bool(drill_checks(config, source))


def drill_result(
    config: WholeConfig, report: DrillReport, redactor: Redactor
) -> CheckResult | None:
    """Given the config, a drill's report and the redactor, return the result of upkeep's
    own drill check of the source: critical if the drill failed or missed an objective,
    ok if it passed; None if a configured ``drill`` check of the source reports it."""
    source = report.source
    if has_drill_check(config, source):
        return None
    if report.passed:
        message = f"drill of {source} passed"
    else:
        message = f"drill of {source} failed: " + "; ".join(report.problems)
    metrics: dict[str, MetricValue] = {"passed": report.passed}
    for key in ("rto_s", "rpo_s"):
        value = getattr(report, key)
        if value is not None:
            metrics[key] = value
    return CheckResult(
        check=drill_check_name(source),
        target=source,
        probe=DRILL_PROBE,
        status=Status.OK if report.passed else Status.CRITICAL,
        metrics=metrics,
        message=redactor.redact(message)[:2000],
        duration_ms=(report.finished_at - report.started_at).total_seconds() * 1000,
        at=report.finished_at,
        severity=DRILL_SEVERITY,
        labels={"backup": source},
    )


async def check_source(
    config: WholeConfig, source: str, run_check: CheckRunnerFunction
) -> SourceChecks:
    """Given the config, a source and a way to run one check by name now and record its
    result (raising if either fails), run each of the source's checks; return their
    statuses and the problems met.

    Never raises for a check that fails to run or to be recorded: that is logged as a
    warning and returned as a problem, and the other checks still run.
    """
    from upkeep.store.store import error_reason

    statuses: dict[str, str] = {}
    problems: list[str] = []
    for name in source_checks(config, source):
        try:
            result = await run_check(name)
        except Exception as error:  # noqa: BLE001 - the operation's own outcome must stand
            problem = f"check {name} of {source} not recorded: {error_reason(error)}"
            logger.warning("%s", problem)
            problems.append(problem)
            continue
        statuses[name] = result.status.label
    return SourceChecks(statuses, problems)
