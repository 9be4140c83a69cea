"""Check statuses with Nagios semantics: the exit code of a plugin is the status."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """The outcome of a check; the integer value is the Nagios exit code (0/1/2/3).

    ``worst`` ranks critical > unknown > warning > ok: a critical is a known failure, and
    an unknown could be anything (a critical included), so it outranks a known warning.
    """

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        """Given a status, return its lower-case name as used in config, JSON and the store."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Status:
        """Given ``ok``/``warning``/``critical``/``unknown``, return the status; raise KeyError."""
        return cls[label.upper()]


_SEVERITY_RANK = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}


def worst(statuses: list[Status] | tuple[Status, ...]) -> Status:
    """Given statuses, return the most severe (critical > unknown > warning > ok); ok if empty.

    ``upkeep check`` exits with the worst status's code, so unknown + warning exits 3.
    """
    result = Status.OK
    for status in statuses:
        if _SEVERITY_RANK[status] > _SEVERITY_RANK[result]:
            result = status
    return result
