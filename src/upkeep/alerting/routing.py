"""Which routes take an alert, what mutes it, and how alerts are grouped into messages.

An alert is described by its fields: ``check``, ``target``, ``severity``, ``status`` and
its labels. Routes are tried in order; the first match takes the alert unless it says
``continue: true``, in which case the next matching route takes it too. A silence's
matchers compare these fields with shell-style patterns (``env=prod``, ``check=db-*``);
a window's ``mute:`` uses the same criteria as a route's ``match:``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from upkeep.alerting.windows import WindowCalendar
    from upkeep.config.models import MuteConfig, RouteConfig, RouteMatch

RESERVED_FIELDS = ("check", "target", "severity", "status")


@dataclass(frozen=True)
class AlertFacts:
    """What routing, muting and grouping look at."""

    check: str
    target: str
    severity: str
    status: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, str]:
        """Return labels plus the reserved fields (which win over a label of the same name)."""
        return {
            **self.labels,
            "check": self.check,
            "target": self.target,
            "severity": self.severity,
            "status": self.status,
        }


def route_matches(match: RouteMatch | MuteConfig, facts: AlertFacts) -> bool:
    """Given a route's ``match`` (or a window's ``mute``) and an alert, return whether all
    of its criteria hold; an empty match takes every alert.
    """
    if match.severity is not None and facts.severity not in match.severity:
        return False
    if match.checks is not None and facts.check not in match.checks:
        return False
    return all(facts.labels.get(key) == value for key, value in match.labels.items())


def matching_routes(routes: Sequence[RouteConfig], facts: AlertFacts) -> list[int]:
    """Given the config's routes and an alert, return the indexes of the routes that take it."""
    taken: list[int] = []
    for index, route in enumerate(routes):
        if route_matches(route.match, facts):
            taken.append(index)
            if not route.continue_:
                break
    return taken


def group_key(route_index: int, route: RouteConfig, facts: AlertFacts) -> str:
    """Given a route and an alert, return the key joining alerts sent as one message."""
    values = facts.fields()
    parts = [f"{name}={values.get(name, '')}" for name in route.group_by]
    return f"route{route_index}|" + "|".join(parts)


def parse_matchers(pairs: Sequence[str]) -> dict[str, str]:
    """Given ``key=pattern`` strings, return them as a mapping; raise ValueError if one has
    no ``=`` or an empty key.
    """
    matchers: dict[str, str] = {}
    for pair in pairs:
        key, separator, pattern = pair.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"a matcher is key=value (e.g. env=prod, check=db-*), not {pair!r}")
        matchers[key.strip()] = pattern.strip()
    return matchers


def silence_matches(matchers: Mapping[str, str], facts: AlertFacts) -> bool:
    """Given a silence's matchers and an alert, return whether every matcher's pattern
    matches the alert's field of that name (a missing label never matches).
    """
    values = facts.fields()
    return all(
        key in values and fnmatch.fnmatchcase(values[key], pattern)
        for key, pattern in matchers.items()
    )


@dataclass(frozen=True)
class ActiveSilence:
    """A silence as the muter needs it."""

    id: int
    matchers: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime


class Muter:
    """Answers "is this alert muted now, and by what?" from silences and window mutes."""

    def __init__(
        self,
        calendar: WindowCalendar,
        window_mutes: Mapping[str, MuteConfig],
        silences: Sequence[ActiveSilence],
    ) -> None:
        self._calendar = calendar
        self._window_mutes = window_mutes
        self._silences = silences

    def muted_by(self, facts: AlertFacts, moment: datetime) -> str | None:
        """Given an alert and an aware moment, return what mutes it (``silence #3``,
        ``window prod-maintenance``) or None.
        """
        for silence in self._silences:
            if silence.starts_at <= moment < silence.ends_at and silence_matches(
                silence.matchers, facts
            ):
                return f"silence #{silence.id}"
        for opening in self._calendar.open_windows(moment):
            mute = self._window_mutes.get(opening.window)
            if mute is not None and route_matches(mute, facts):
                return f"window {opening.window}"
        return None
