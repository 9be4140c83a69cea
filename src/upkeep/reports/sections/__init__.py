"""The report's sections, in the order they are shown: one module each, listed in
``SECTIONS``. A later capability (database findings, security findings, SLOs, forecasts)
adds its module and one entry here; no other section changes.
"""

from __future__ import annotations

from upkeep.reports.model import SectionKind
from upkeep.reports.sections import (
    backups,
    certificates,
    checks,
    incidents,
    logs,
    overview,
    runbooks,
)

__all__ = [
    "SECTIONS",
    "backups",
    "certificates",
    "checks",
    "common",
    "incidents",
    "logs",
    "overview",
    "runbooks",
]

SECTIONS: tuple[SectionKind, ...] = (
    overview.SECTION,
    incidents.SECTION,
    checks.SECTION,
    runbooks.SECTION,
    backups.SECTION,
    logs.SECTION,
    certificates.SECTION,
)
"""Every section kind, in report order; names are unique (a test holds it)."""
