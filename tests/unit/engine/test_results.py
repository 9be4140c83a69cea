from __future__ import annotations

import pytest

from tests.helpers import compiled
from upkeep.config.loader import CompiledCheck
from upkeep.core.status import Status, worst
from upkeep.engine.results import judge
from upkeep.probes.base import ProbeOutcome
from upkeep.probes.host import HostTarget, MemoryProbe


def check(warn: str | None = None, crit: str | None = None) -> CompiledCheck:
    return compiled("memory", MemoryProbe, HostTarget(kind="host"), warn=warn, crit=crit)


@pytest.mark.parametrize(
    ("used", "expected"),
    [(50, Status.OK), (85, Status.WARNING), (95, Status.CRITICAL)],
)
def test_crit_then_warn_then_ok(used: float, expected: Status) -> None:
    verdict = judge(
        check("used_percent > 80", "used_percent > 90"), ProbeOutcome({"used_percent": used})
    )
    assert verdict.status is expected


def test_the_condition_that_fired_leads_the_message_and_the_probe_says_the_rest() -> None:
    verdict = judge(
        check("used_percent > 80", "used_percent > 90"), ProbeOutcome({"used_percent": 95.5}, "mem")
    )
    assert verdict.message == "crit: used_percent > 90 (used_percent=95.5): mem"
    assert verdict.condition == "crit: used_percent > 90 (used_percent=95.5)"
    bare = judge(
        check("used_percent > 80", "used_percent > 90"), ProbeOutcome({"used_percent": 95.5})
    )
    assert bare.message == bare.condition


def test_ok_keeps_the_probe_message() -> None:
    verdict = judge(check("used_percent > 80"), ProbeOutcome({"used_percent": 10}, "10% used"))
    assert (verdict.status, verdict.message, verdict.condition) == (Status.OK, "10% used", None)


def test_a_condition_that_cannot_be_evaluated_is_unknown() -> None:
    verdict = judge(check(crit="used_percent > 90"), ProbeOutcome({"available_bytes": 1}))
    assert verdict.status is Status.UNKNOWN
    assert "used_percent" in verdict.message


def test_probe_reported_status_combines_with_conditions_worse_wins() -> None:
    critical_plugin = ProbeOutcome({"used_percent": 10}, "DISK CRITICAL", status=Status.CRITICAL)
    assert judge(check("used_percent > 80"), critical_plugin).status is Status.CRITICAL
    assert judge(check("used_percent > 80"), critical_plugin).message == "DISK CRITICAL"
    ok_plugin = ProbeOutcome({"used_percent": 85}, "DISK OK", status=Status.OK)
    assert judge(check("used_percent > 80"), ok_plugin).status is Status.WARNING
    unknown_plugin = ProbeOutcome({"used_percent": 85}, "DISK UNKNOWN", status=Status.UNKNOWN)
    assert judge(check("used_percent > 80"), unknown_plugin).status is Status.UNKNOWN
    assert judge(check(crit="used_percent > 80"), unknown_plugin).status is Status.CRITICAL


def test_worst_ranks_critical_over_unknown_over_warning_over_ok() -> None:
    # An unknown could be anything, so it outranks a known warning (and exits 3).
    assert worst([Status.OK, Status.UNKNOWN, Status.WARNING]) is Status.UNKNOWN
    assert worst([Status.WARNING, Status.UNKNOWN]) is Status.UNKNOWN
    assert worst([Status.OK, Status.WARNING]) is Status.WARNING
    assert worst([Status.UNKNOWN, Status.CRITICAL]) is Status.CRITICAL
    assert worst([Status.OK, Status.UNKNOWN]) is Status.UNKNOWN
    assert worst([]) is Status.OK
