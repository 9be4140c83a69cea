"""After a backup, a verification or a drill: run the source's checks now.

A failed backup or a missed objective must alert through the routes at once, not at the
check's next interval, so every operation on a source ends by running every configured
check on a ``backup`` target of that source. The backup tasks run them through their
runbook (``TaskContext.run_check``), the ``upkeep backup`` commands through the pipeline
(``engine/pipeline.py``); both through ``check_source``, with one error policy: the
operation's outcome stands. A check that cannot run, or whose result the store does not
take, is logged and reported with the operation's output, never raised over it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from upkeep.tasks.base import CheckRunnerFunction, WholeConfig

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
