"""The dashboard's view functions on their own: thresholds, strips, percentages, health,
silence previews."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import compiled
from upkeep.alerting.routing import silence_preview
from upkeep.config.loader import CompiledCheck
from upkeep.core.status import Status
from upkeep.probes.host import DiskProbe, HostTarget, MemoryProbe
from upkeep.reports.charts import CRITICAL_COLOUR, WARNING_COLOUR
from upkeep.reports.views import (
    STRIP_EMPTY,
    CheckRow,
    StatusStrips,
    StripView,
    default_metric,
    group_health,
    known_metrics,
    percent_text,
    shorten,
    strip_view,
    thresholds,
)


def memory(warn: str | None = None, crit: str | None = None) -> CompiledCheck:
    return compiled("memory", MemoryProbe, HostTarget(kind="host"), warn=warn, crit=crit)


@pytest.mark.parametrize(
    ("warn", "crit", "metric", "expected"),
    [
        ("used_percent > 80", "used_percent >= 95", "used_percent", [80.0, 95.0]),
        # A chain is two lines: warn while between them.
        ("80 < used_percent <= 90", None, "used_percent", [80.0, 90.0]),
        # Another metric's conditions draw nothing on this one.
        ("used_percent > 80", None, "available_bytes", []),
        # `or` and `not` cannot be drawn as lines.
        ("used_percent > 80 or used_percent < 1", None, "used_percent", []),
        ("not used_percent < 80", None, "used_percent", []),
        # Two metrics in one condition: no single threshold.
        ("used_percent > 80 and available_bytes < 1GB", None, "used_percent", []),
        # Sizes are bytes.
        (None, "available_bytes < 1GiB", "available_bytes", [float(2**30)]),
    ],
)
def test_thresholds_come_from_simple_comparisons_of_the_metric(
    warn: str | None, crit: str | None, metric: str, expected: list[float]
) -> None:
    assert [line.value for line in thresholds(memory(warn, crit), metric)] == expected


def test_thresholds_are_named_and_coloured_and_durations_take_the_metrics_unit() -> None:
    check = memory("used_percent > 80", "used_percent > 95")
    lines = thresholds(check, "used_percent")
    assert [(line.label, line.colour) for line in lines] == [
        ("warn", WARNING_COLOUR),
        ("crit", CRITICAL_COLOUR),
    ]
    assert thresholds(None, "used_percent") == []
    disk = compiled("disk", DiskProbe, HostTarget(kind="host"), crit="free_bytes < 10GB")
    assert [line.value for line in thresholds(disk, "free_bytes")] == [10e9]


def test_the_default_metric_is_the_one_the_conditions_compare() -> None:
    assert default_metric(memory(crit="used_percent > 90"), []) == "used_percent"
    assert default_metric(None, []) == "duration_ms"
    names = known_metrics(memory(), [{"custom": 3, "flag": True, "text": "x"}])
    assert "used_percent" in names and "custom" in names and "duration_ms" in names
    assert "flag" not in names and "text" not in names


def test_percentages_are_truncated_so_less_than_100_never_reads_100() -> None:
    assert percent_text(100.0) == "100.000%"
    assert percent_text(99.99999) == "99.999%"
    assert percent_text(91.6666) == "91.666%"
    assert percent_text(0.0) == "0.000%"
    assert percent_text(None) == "-"


def test_a_strip_says_its_status_in_glyphs_and_words_and_knows_when_it_is_uniform() -> None:
    ok, critical = Status.OK, Status.CRITICAL
    mixed = strip_view((None, ok, ok, critical))
    assert mixed == StripView(
        f"{STRIP_EMPTY}\u2581\u2581\u2588", "last 4 h: 2 ok, 1 critical, 1 no data", "critical", ""
    )
    assert strip_view((ok,) * 24).uniform == "ok"
    assert strip_view((None,) * 24).uniform == "none"
    # Just after the hour turned: uniform but for the hour in progress.
    turned = strip_view((ok,) * 23 + (None,))
    assert (turned.uniform, turned.pending) == ("ok", True)
    assert strip_view((None,) * 23 + (ok,)).uniform == ""


def test_strips_keep_the_worst_status_of_each_hour_and_forget_old_hours() -> None:
    strips = StatusStrips(hours=3)
    end = datetime(2026, 12, 7, 12, 30, tzinfo=UTC)
    strips.add("a", end - timedelta(hours=2), Status.OK)
    strips.add("a", end - timedelta(minutes=10), Status.WARNING)
    strips.add("a", end - timedelta(minutes=5), Status.OK)
    strips.add("a", end - timedelta(hours=5), Status.CRITICAL)
    assert strips.strip("a", end) == (Status.OK, None, Status.WARNING)
    strips.forget_before(end - timedelta(hours=3))
    assert len(strips.slots["a"]) == 2
    assert strips.strip("unknown", end) == (None, None, None)


def _row(status: str) -> CheckRow:
    return CheckRow(status, "t", {}, status, None, None, "", strip_view(()), {})


def test_group_health_is_the_share_of_checks_whose_newest_result_is_ok() -> None:
    assert group_health([_row("ok"), _row("ok"), _row("critical"), _row("none")]) == (
        pytest.approx(200 / 3)
    )
    assert group_health([_row("none")]) is None


def test_a_silence_preview_names_open_alerts_and_configured_checks() -> None:
    check = compiled("memory", MemoryProbe, HostTarget(kind="host"), labels={"env": "prod"})
    other = compiled("other", MemoryProbe, HostTarget(kind="host"), labels={"env": "dev"})
    preview = silence_preview({"env": "prod", "status": "critical"}, [], [check, other])
    assert preview.alerts == [] and preview.checks == ["memory"]
    assert silence_preview({"check": "o*"}, [], [check, other]).checks == ["other"]


def test_shorten_keeps_the_first_line_within_the_limit() -> None:
    assert shorten("one\ntwo", 10) == "one"
    assert shorten("abcdefghijk", 5) == "abcd\u2026"
    assert shorten("  ", 5) == ""
