"""Checks upkeep raises about itself, routed like any other: today one, the store.

``upkeep:store`` is critical while results cannot be stored (the store is full,
read-only, damaged or unreachable) or the store fails its integrity check, and ok again
once it is sound and writable. Its name cannot clash with a configured check (a colon is
not allowed in names), and routes and window mutes may name it in ``checks:``.
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

    settings = config.alerting.store_failure
    return {
        STORE_CHECK: CheckConfig(
            target=STORE_CHECK,
            probe=STORE_PROBE,
            severity=settings.severity,
            warn_severity=settings.severity,
            labels=dict(settings.labels),
            description="upkeep's store: writable and sound",
        )
    }
