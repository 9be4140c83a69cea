"""Which backups to keep: ``restic forget``'s rules, plus one of our own.

* ``keep_last``: the newest N;
* ``keep_hourly`` / ``keep_daily`` / ``keep_weekly`` / ``keep_monthly`` / ``keep_yearly``:
  for each of the last N hours/days/ISO weeks/months/years that have a backup, the newest
  backup of that period (periods without one are skipped, as restic does);
* ``keep_within``: every backup younger than this.

A backup is kept if any rule keeps it, and every kept backup says which rules keep it.
Beyond restic: the newest *verified* backup of a source is always kept, whatever the
rules say, so pruning can never leave a source with only unproven backups. Periods are
taken in the given time zone (a day is a local day).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from pydantic import Field

from upkeep.core.durations import Duration, format_duration
from upkeep.core.models import StrictModel

MAX_KEEP = 100_000
"""The most backups a keep-rule may name: far more than any repository holds."""


class RetentionRules(StrictModel):
    """Keep-rules in the manner of ``restic forget``; nothing set keeps everything."""

    keep_last: int | None = Field(
        default=None, ge=0, le=MAX_KEEP, description="the newest N backups"
    )
    keep_hourly: int | None = Field(
        default=None, ge=0, le=MAX_KEEP, description="newest of each of N hours"
    )
    keep_daily: int | None = Field(
        default=None, ge=0, le=MAX_KEEP, description="newest of each of N days"
    )
    keep_weekly: int | None = Field(
        default=None, ge=0, le=MAX_KEEP, description="newest of each of N weeks"
    )
    keep_monthly: int | None = Field(
        default=None, ge=0, le=MAX_KEEP, description="newest of each of N months"
    )
    keep_yearly: int | None = Field(
        default=None, ge=0, le=MAX_KEEP, description="newest of each of N years"
    )
    keep_within: Duration | None = Field(default=None, description="everything younger than this")

    def is_empty(self) -> bool:
        """Return whether no rule is set (then nothing is ever removed)."""
        return all(value is None for value in self.model_dump().values())


@dataclass(frozen=True)
class Candidate:
    """One backup as retention sees it."""

    id: str
    taken_at: datetime
    verified: bool = False


@dataclass
class Decision:
    """Keep or remove one backup, and why."""

    candidate: Candidate
    reasons: list[str] = field(default_factory=list)

    @property
    def keep(self) -> bool:
        """Return whether any rule keeps the backup."""
        return bool(self.reasons)


_PERIODS: tuple[tuple[str, Callable[[datetime], tuple[int, ...]]], ...] = (
    ("hourly", lambda moment: (moment.year, moment.month, moment.day, moment.hour)),
    ("daily", lambda moment: (moment.year, moment.month, moment.day)),
    ("weekly", lambda moment: moment.isocalendar()[:2]),
    ("monthly", lambda moment: (moment.year, moment.month)),
    ("yearly", lambda moment: (moment.year,)),
)


def decide(
    candidates: Sequence[Candidate], rules: RetentionRules, *, now: datetime, zone: tzinfo
) -> list[Decision]:
    """Given one source's backups, the rules, the time and the zone periods are taken in,
    return a decision per backup, newest first. With no rule set, every backup is kept."""
    ordered = sorted(candidates, key=lambda item: (item.taken_at, item.id), reverse=True)
    decisions = [Decision(candidate) for candidate in ordered]
    if rules.is_empty():
        for decision in decisions:
            decision.reasons.append("no retention rules")
        return decisions
    if rules.keep_last:
        for decision in decisions[: rules.keep_last]:
            decision.reasons.append(f"last {rules.keep_last}")
    for name, period_of in _PERIODS:
        limit = getattr(rules, f"keep_{name}")
        if not limit:
            continue
        seen: list[tuple[int, ...]] = []
        for decision in decisions:
            period = period_of(decision.candidate.taken_at.astimezone(zone))
            if period in seen:
                continue
            if len(seen) == limit:
                break
            seen.append(period)
            decision.reasons.append(f"{name} {len(seen)} of {limit}")
    if rules.keep_within is not None:
        horizon = now - rules.keep_within
        for decision in decisions:
            if decision.candidate.taken_at >= horizon:
                decision.reasons.append(f"within {format_duration(rules.keep_within)}")
    newest_verified = next((d for d in decisions if d.candidate.verified), None)
    if newest_verified is not None and not newest_verified.keep:
        newest_verified.reasons.append("newest verified backup")
    return decisions
