"""Which routes take an alert, what mutes it, and how alerts are grouped into messages.

An alert is described by its fields: ``check``, ``target``, ``severity``, ``status`` and
its labels. Routes are tried in order; the first match takes the alert unless it says
``continue: true``, in which case the next matching route takes it too. A silence's
matchers compare these fields with shell-style patterns (``env=prod``, ``check=db-*``);
a window's ``mute:`` uses the same criteria as a route's ``match:``.

A route has a stable id (``route_ids``), which its per-alert state (repeats, escalation
steps, notice counts) and its group keys are keyed by: its ``name:``, or else a digest of
what it is (its match and its channels), so moving a route in ``routes:`` keeps its
state, and changing what it matches or notifies makes it a new route with fresh state.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from upkeep.core.redaction import published

if TYPE_CHECKING:
    from upkeep.alerting.windows import WindowCalendar
    from upkeep.config.loader import CompiledCheck
    from upkeep.config.models import MuteConfig, RouteConfig, RouteMatch
    from upkeep.store.alerts import AlertRecord

RESERVED_FIELDS = ("check", "target", "severity", "status")
MATCHER_HINT = published("e.g. env=prod, check=db-*")
"""Our own example matchers: a secret ``prod`` must not garble them."""


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
    of its criteria hold; an empty match takes every alert, a run route (``runs:``) none.
    """
    if getattr(match, "runs", None) is not None:
        return False
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


DIGEST_PREFIX = "match:"
"""The id of a route without a name starts with this (a name cannot hold ``:``)."""


def route_digest(route: RouteConfig) -> str:
    """Given a route, return the digest of its definition: its match criteria and its
    channels, as sets (the order they are written in does not matter)."""
    definition: dict[str, object] = {
        "severity": sorted(route.match.severity) if route.match.severity is not None else None,
        "checks": sorted(route.match.checks) if route.match.checks is not None else None,
        "labels": dict(sorted(route.match.labels.items())),
        "notify": sorted(set(route.notify)),
    }
    runs = route.match.runs
    if runs is not None:
        # Only run routes carry this key: an alert route's digest (and state) is unchanged.
        definition["runs"] = {
            "runbooks": sorted(runs.runbooks) if runs.runbooks is not None else None,
            "labels": dict(sorted(runs.labels.items())),
            "events": sorted(set(runs.events)),
        }
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return DIGEST_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def route_ids(routes: Sequence[RouteConfig]) -> list[str]:
    """Given the config's routes, return the stable id of each, in order: its ``name``
    (unique: the loader refuses duplicates), else its digest; unnamed routes with the
    same definition are told apart by their order among themselves (``#2``, ``#3``)."""
    ids: list[str] = []
    seen: dict[str, int] = {}
    for route in routes:
        if route.name is not None:
            ids.append(route.name)
            continue
        digest = route_digest(route)
        seen[digest] = seen.get(digest, 0) + 1
        ids.append(digest if seen[digest] == 1 else f"{digest}#{seen[digest]}")
    return ids


class Described(Protocol):
    """What grouping reads of an alert or a run notice: its fields by name."""

    def fields(self) -> dict[str, str]:
        """Return the fields ``group_by`` may name."""
        ...


def group_key(route_id: str, route: RouteConfig, facts: Described) -> str:
    """Given a route (and its id) and an alert (or a run notice), return the key joining
    those sent as one message. The route's part is a digest of its id: as stable as the id, and short."""
    values = facts.fields()
    parts = [f"{name}={values.get(name, '')}" for name in route.group_by]
    token = hashlib.sha256(route_id.encode()).hexdigest()[:16]
    return f"route-{token}|" + "|".join(parts)


def parse_matchers(pairs: Sequence[str]) -> dict[str, str]:
    """Given ``key=pattern`` strings, return them as a mapping; raise ValueError if one has
    no ``=`` or an empty key.
    """
    matchers: dict[str, str] = {}
    for pair in pairs:
        key, separator, pattern = pair.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"a matcher is key=value ({MATCHER_HINT}), not {pair!r}")
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
class SilencePreview:
    """What a silence's matchers select now: the open alerts it would mute and the
    configured checks whose alerts it would mute."""

    alerts: list[AlertRecord]
    checks: list[str]


def silence_preview(
    matchers: Mapping[str, str],
    open_alerts: Iterable[AlertRecord],
    configured: Iterable[CompiledCheck],
) -> SilencePreview:
    """Given matchers (``key`` to shell-style pattern), the open alerts and the configured
    checks, return what a silence with those matchers would select now: the open alerts
    ``silence_matches`` mutes, and the checks whose alerts it would mute (a ``status``
    matcher is left out for checks, whose status is only known once they alert).

    ``upkeep silence add``, ``GET /api/silences/preview`` and the dashboard's silence form
    all show this one answer.
    """
    selected = [
        record
        for record in open_alerts
        if silence_matches(
            matchers,
            AlertFacts(
                record.check, record.target, record.severity, record.status.label, record.labels
            ),
        )
    ]
    check_matchers = {key: value for key, value in matchers.items() if key != "status"}
    names = sorted(
        check.name
        for check in configured
        if silence_matches(
            check_matchers,
            AlertFacts(check.name, check.target_name, check.severity, "", check.labels),
        )
    )
    return SilencePreview(selected, names)


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
