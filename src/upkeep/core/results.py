"""A check result: what one execution of one check measured and what it means."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from upkeep.core.status import Status

MetricValue = float | int | bool | str


@dataclass(frozen=True)
class CheckResult:
    """One execution of one check: what was measured and what it means."""

    check: str
    target: str
    probe: str
    status: Status
    metrics: dict[str, MetricValue]
    message: str
    duration_ms: float
    at: datetime
    condition: str | None = None
    severity: str = "P3"
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the SPEC's JSON shape of a result (``at`` as ISO 8601 with offset)."""
        return {
            "check": self.check,
            "target": self.target,
            "status": self.status.label,
            "metrics": self.metrics,
            "message": self.message,
            "duration_ms": round(self.duration_ms, 3),
            "at": self.at.isoformat(),
        }
