"""Groups of checks: a health score, the share of a set of checks that is ok.

A ``group`` target selects checks of the config by name (``checks:``, names or globs)
and by labels (``match_labels:``, every one must match the check's labels); given both,
a check must match both. Its ``health`` probe reads the newest stored result of each
member and returns how many are ok, warning, critical and unknown, and ``healthy_percent``
(ok out of all members), so conditions such as ``healthy_percent < 90`` judge the group.

The rules, in one place:

* **Members** are the enabled checks the selector matches, less every check of a group
  target (the group's own check and other groups: no score counts a score). They are
  fixed when the config loads; a selector that matches no member is a config error.
* **Stale** results count as unknown: a member's newest result older than ``max_age``
  (by default three times that member's own ``every``), or none at all.
* **Maintenance windows** change nothing here: a member is counted by the status it
  stored. Windows mute notifications, not measurements; put the group's check in the
  same window to mute its alerts while the members are worked on.
* **Without a store** (``upkeep check --no-store``) there are no results to read: the
  group is unknown, and says so.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, ValidatorFunctionWrapHandler, model_validator

from upkeep.core.durations import Duration
from upkeep.core.models import StrictModel, some_of, validate_with_key_rule
from upkeep.core.status import Status
from upkeep.core.text import human_duration
from upkeep.io.threads import run_blocking
from upkeep.probes.base import (
    CheckInfo,
    MetricSpec,
    Probe,
    ProbeContext,
    ProbeOutcome,
    TargetBase,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from upkeep.store.store import StoredResult

STALE_INTERVALS = 3
"""Without ``max_age``, a member's result is stale once older than this many of its
intervals: one missed run is a hiccup, three are a check that no longer runs."""
NAMES_SHOWN = 5
"""How many members of each status a message names before it says "and N more"."""


@dataclass(frozen=True)
class Member:
    """A check a group counts: its name and how old its newest result may be."""

    name: str
    max_age: timedelta


class GroupTarget(TargetBase):
    """A set of the config's checks, judged together (a health score)."""

    kind: Literal["group"] = "group"
    checks: list[str] = Field(
        default=[],
        description="names or globs (`api-*`) of the checks in the group; each must match "
        "at least one check",
    )
    match_labels: dict[str, str] = Field(
        default={},
        description="labels a check must all carry (its target's and its own) to be in the "
        "group; with `checks`, a check must match both",
    )
    max_age: Duration | None = Field(
        default=None,
        description="a member whose newest result is older than this counts as unknown; by "
        f"default {STALE_INTERVALS} times that member's own `every`",
    )
    # Set when the config loads (``HealthProbe.bind_checks``): the checks counted.
    _members: tuple[Member, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _selects_something(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> GroupTarget:
        rule = some_of(
            ("checks", "match_labels"),
            "a group selects its checks: give checks (names, globs), match_labels or both",
        )
        return validate_with_key_rule(cls, data, handler, rule)

    @property
    def members(self) -> tuple[Member, ...]:
        """Return the checks this group counts, as bound when the config loaded."""
        return self._members


def _selected(target: GroupTarget, check: CheckInfo) -> bool:
    """Given a group and a check, return whether the group's selector matches the check
    (an empty selector, ``checks: []`` alone, matches none)."""
    if not target.checks and not target.match_labels:
        return False
    if any(check.labels.get(key) != value for key, value in target.match_labels.items()):
        return False
    return not target.checks or any(
        fnmatch.fnmatchcase(check.name, pattern) for pattern in target.checks
    )


class HealthProbe(Probe[GroupTarget, StrictModel]):
    """The share of a group's checks that is ok, from their newest stored results."""

    target_kind: ClassVar[str] = "group"
    name: ClassVar[str] = "health"
    reads_results: ClassVar[bool] = True
    summary: ClassVar[str] = (
        "A health score: how many of the group's checks are ok, warning, critical or unknown, "
        "from their newest stored results, and the share that is ok. Members are the enabled "
        "checks the group selects, less checks of group targets (its own included); a result "
        "older than `max_age`, or none, is unknown; a member in a maintenance window counts "
        "by the status it stored (windows mute notices, not measurements). Without a store "
        "the group is unknown."
    )
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("healthy_percent", "number", "members whose newest result is ok, in % of all"),
        MetricSpec("ok", "number", "members whose newest result is ok"),
        MetricSpec("warning", "number", "members whose newest result is a warning"),
        MetricSpec("critical", "number", "members whose newest result is critical"),
        MetricSpec("unknown", "number", "members unknown, stale or without a result"),
        MetricSpec("total", "number", "members counted"),
    )

    def bind_checks(
        self, target: GroupTarget, checks: Sequence[CheckInfo]
    ) -> list[tuple[tuple[str | int, ...], str]]:
        """Given a group and every check of the config, fix the group's members (enabled
        checks it selects that are not of a group target) and return each problem: a name
        or glob in ``checks`` that matches no check, or a selector that selects no member."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for index, pattern in enumerate(target.checks):
            if not any(fnmatch.fnmatchcase(check.name, pattern) for check in checks):
                glob = any(character in pattern for character in "*?[")
                said = f"the pattern {pattern!r} matches no check" if glob else "no check named"
                problems.append((("checks", index), said if glob else f"{said} {pattern!r}"))
        selected = [check for check in checks if _selected(target, check)]
        members = tuple(
            Member(check.name, target.max_age or STALE_INTERVALS * check.every)
            for check in selected
            if check.enabled and check.target_kind != self.target_kind
        )
        if not members and not problems:
            where: tuple[str | int, ...] = ("match_labels",) if target.match_labels else ("checks",)
            if not selected:
                said = "the group selects no check"
            else:
                said = (
                    f"the group selects only {', '.join(sorted(c.name for c in selected))}: "
                    "disabled checks and group checks are not counted"
                )
            problems.append((where, said))
        target._members = members
        return problems

    async def run(
        self, target: GroupTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a group, read its members' newest results from the store and count them;
        without a store, or with no members, the group is unknown."""
        from sqlalchemy.exc import SQLAlchemyError

        del params
        if not target.members:
            return ProbeOutcome(
                {}, message="the group has no checks to count", status=Status.UNKNOWN
            )
        store = context.store
        if store is None:
            return ProbeOutcome(
                {},
                message="a group's checks are read from the store, and this run has none",
                status=Status.UNKNOWN,
            )
        try:
            latest = await run_blocking(store.latest, timeout_s=context.timeout_s)
        except SQLAlchemyError as error:
            return ProbeOutcome(
                {},
                message=f"cannot read results from the store: {type(error).__name__}",
                status=Status.UNKNOWN,
            )
        return score(target.members, latest, context.clock.now())


def score(
    members: Sequence[Member], latest: Mapping[str, StoredResult], now: datetime
) -> ProbeOutcome:
    """Given a group's members, the newest stored result of each check and the time now,
    return the counts per status and ``healthy_percent``; a member without a result, or
    with one older than its ``max_age``, is unknown."""
    names: dict[Status, list[str]] = {status: [] for status in Status}
    reasons: list[str] = []
    for member in members:
        result = latest.get(member.name)
        if result is None:
            names[Status.UNKNOWN].append(member.name)
            reasons.append(f"{member.name} has no result yet")
            continue
        age = now - result.at
        if age > member.max_age:
            names[Status.UNKNOWN].append(member.name)
            reasons.append(
                f"{member.name}'s newest result is {human_duration(age)} old "
                f"(older than {human_duration(member.max_age)})"
            )
            continue
        names[result.status].append(member.name)
    total = len(members)
    ok = len(names[Status.OK])
    metrics: dict[str, Any] = {
        "healthy_percent": round(100 * ok / total, 3) if total else 0.0,
        "ok": ok,
        "warning": len(names[Status.WARNING]),
        "critical": len(names[Status.CRITICAL]),
        "unknown": len(names[Status.UNKNOWN]),
        "total": total,
    }
    parts = [f"{ok}/{total} ok ({metrics['healthy_percent']:g}%)"]
    for status in (Status.CRITICAL, Status.WARNING, Status.UNKNOWN):
        listed = sorted(names[status])
        if listed:
            more = f" and {len(listed) - NAMES_SHOWN} more" if len(listed) > NAMES_SHOWN else ""
            parts.append(f"{status.label}: {', '.join(listed[:NAMES_SHOWN])}{more}")
    if reasons:
        parts.append("; ".join(reasons[:NAMES_SHOWN]))
    return ProbeOutcome(metrics, message="; ".join(parts))
