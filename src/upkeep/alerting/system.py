"""Checks upkeep raises about itself, routed like any other: the store, and drills.

``upkeep:store`` is critical while results cannot be stored (the store is full,
read-only, damaged or unreachable) or the store fails its integrity check, and ok again
once it is sound and writable. ``upkeep:drill:<source>`` is a restore drill's verdict
(``tasks/backup/checks.py``): critical when it failed or missed its RTO/RPO objective, ok
when it passed; it is not in force for a source that a configured ``drill`` check covers
(``superseded_checks``: an alert of it still open resolves, naming that check). Their
names cannot clash with a configured check (a colon is not allowed in names), and routes
and window mutes may name either in ``checks:`` (a drill only of a source or target that
exists).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upkeep.config.models import STORE_CHECK, STORE_PROBE

if TYPE_CHECKING:
    from upkeep.config.models import CheckConfig, UpkeepConfig


def system_checks(config: UpkeepConfig) -> dict[str, CheckConfig]:
    """Given the config, return the alerting rules of upkeep's own checks by name.

    The store alert fires on its first critical result and resolves on its first ok one:
    it is raised once, when writes start failing, not per failed batch.
    """
    from upkeep.config.models import CheckConfig
    from upkeep.tasks.backup.checks import (
        DRILL_PROBE,
        DRILL_SEVERITY,
        drill_check_name,
    )
    from upkeep.tasks.backup.registry import BACKUP_TARGET_KINDS

    settings = config.alerting.store_failure
    checks = {
        STORE_CHECK: CheckConfig(
            target=STORE_CHECK,
            probe=STORE_PROBE,
            severity=settings.severity,
            warn_severity=settings.severity,
            labels=dict(settings.labels),
            description="upkeep's store: writable and sound",
        )
    }
    # Every source a drill can name: the configured ones, and database targets (a drill
    # of a target without a backups.sources entry backs it up with the defaults).
    sources = [*config.backups.sources]
    sources += [
        name
        for name, target in config.targets.items()
        if target.kind in BACKUP_TARGET_KINDS and name not in config.backups.sources
    ]
    superseded = superseded_checks(config)
    for source in sources:
        if drill_check_name(source) in superseded:
            continue
        checks[drill_check_name(source)] = CheckConfig(
            target=source,
            probe=DRILL_PROBE,
            severity=DRILL_SEVERITY,
            warn_severity=DRILL_SEVERITY,
            labels={"backup": source},
            description=f"restore drills of {source}: pass and meet their objectives",
        )
    return checks


def superseded_checks(config: UpkeepConfig) -> dict[str, str]:
    """Given the config, return upkeep's own checks that configured checks replace, each
    with the first configured check that does: a source's drill verdict
    (``upkeep:drill:<source>``) where a configured ``drill`` check of the source exists.
    ``system_checks`` leaves them out, and the alert manager resolves an alert of one that
    is still open, saying which check took over (else nothing would ever resolve it)."""
    from upkeep.tasks.backup.checks import drill_check_name, drill_checks

    sources = {
        getattr(config.targets.get(check.target), "source", None)
        for check in config.checks.values()
    }
    superseded: dict[str, str] = {}
    for source in sorted(source for source in sources if isinstance(source, str)):
        taken_by = drill_checks(config, source)
        if taken_by:
            superseded[drill_check_name(source)] = taken_by[0]
    return superseded
