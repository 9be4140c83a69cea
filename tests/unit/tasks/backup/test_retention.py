"""Retention decisions: restic forget's rules, and the newest verified backup always kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from upkeep.tasks.backup.retention import Candidate, Decision, RetentionRules, decide

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _daily(days: int, *, hour: int = 2) -> list[Candidate]:
    """One backup a day at ``hour`` for ``days`` days, plus a second one on each day."""
    found = []
    for day in range(days):
        moment = (NOW - timedelta(days=day)).replace(hour=hour, minute=0)
        found.append(Candidate(f"d{day}a", moment))
        found.append(Candidate(f"d{day}b", moment - timedelta(minutes=30)))
    return found


def _kept(decisions: list[Decision]) -> list[str]:
    return [decision.candidate.id for decision in decisions if decision.keep]


def test_without_rules_everything_is_kept() -> None:
    decisions = decide(_daily(3), RetentionRules(), now=NOW, zone=UTC)
    assert [(decision.candidate.id, decision.keep) for decision in decisions] == [
        (f"d{day}{which}", True) for day in range(3) for which in "ab"
    ]


def test_keep_last_keeps_the_newest() -> None:
    decisions = decide(_daily(3), RetentionRules(keep_last=2), now=NOW, zone=UTC)
    assert _kept(decisions) == ["d0a", "d0b"]


def test_keep_daily_keeps_the_newest_of_each_day_skipping_days_without_one() -> None:
    backups = [c for c in _daily(10) if c.id not in ("d2a", "d2b", "d3a", "d3b")]
    decisions = decide(backups, RetentionRules(keep_daily=4), now=NOW, zone=UTC)
    # days 0, 1, 4, 5: the newest of each; day 2 and 3 have none and are skipped.
    assert _kept(decisions) == ["d0a", "d1a", "d4a", "d5a"]
    reasons = {d.candidate.id: d.reasons for d in decisions}
    assert reasons["d4a"] == ["daily 3 of 4"]


def test_weekly_monthly_and_yearly_periods() -> None:
    backups = [Candidate(f"b{day}", NOW - timedelta(days=day)) for day in range(0, 800, 1)]
    decisions = decide(
        backups, RetentionRules(keep_weekly=3, keep_monthly=3, keep_yearly=3), now=NOW, zone=UTC
    )
    kept = {d.candidate.id: d.reasons for d in decisions if d.keep}
    # Dec 1 2026 is a Tuesday: Nov 30 is the same ISO week, Nov 29 the week before.
    assert kept == {
        "b0": ["weekly 1 of 3", "monthly 1 of 3", "yearly 1 of 3"],
        "b1": ["monthly 2 of 3"],
        "b2": ["weekly 2 of 3"],
        "b9": ["weekly 3 of 3"],
        "b31": ["monthly 3 of 3"],
        "b335": ["yearly 2 of 3"],
        "b700": ["yearly 3 of 3"],
    }


def test_days_are_local_days_in_the_given_zone() -> None:
    # 23:30 UTC on Nov 30 is already Dec 1 in Berlin: one local day, two UTC days.
    late = Candidate("late", datetime(2026, 11, 30, 23, 30, tzinfo=UTC))
    early = Candidate("early", datetime(2026, 11, 30, 22, 0, tzinfo=UTC))
    berlin = decide(
        [late, early], RetentionRules(keep_daily=5), now=NOW, zone=ZoneInfo("Europe/Berlin")
    )
    utc = decide([late, early], RetentionRules(keep_daily=5), now=NOW, zone=UTC)
    assert _kept(berlin) == ["late", "early"]  # 23:00 Berlin is Nov 30, 00:30 is Dec 1
    assert _kept(utc) == ["late"]


def test_keep_within_keeps_everything_younger() -> None:
    decisions = decide(_daily(5), RetentionRules(keep_within=timedelta(days=2)), now=NOW, zone=UTC)
    assert _kept(decisions) == ["d0a", "d0b", "d1a", "d1b"]


def test_the_newest_verified_backup_is_kept_whatever_the_rules_say() -> None:
    backups = _daily(5)
    backups = [Candidate(c.id, c.taken_at, verified=c.id in ("d3a", "d4a")) for c in backups]
    decisions = decide(backups, RetentionRules(keep_last=1), now=NOW, zone=UTC)
    assert _kept(decisions) == ["d0a", "d3a"]
    assert next(d for d in decisions if d.candidate.id == "d3a").reasons == [
        "newest verified backup"
    ]
