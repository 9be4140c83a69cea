"""Nagios plugin output: ranges, perfdata, output splitting, metric names and thresholds."""

from __future__ import annotations

import math

import pytest

from upkeep.core.status import Status
from upkeep.probes.command import (
    NagiosRange,
    PerfDatum,
    PluginOutput,
    metric_alias,
    parse_perfdata,
    parse_range,
    perfdata_metrics,
    split_plugin_output,
    threshold_status,
)

# --- ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", NagiosRange(0.0, 10.0)),
        ("10:", NagiosRange(10.0, math.inf)),
        ("~:10", NagiosRange(-math.inf, 10.0)),
        ("10:20", NagiosRange(10.0, 20.0)),
        ("@10:20", NagiosRange(10.0, 20.0, inside=True)),
        (":10", NagiosRange(0.0, 10.0)),
        ("~:", NagiosRange(-math.inf, math.inf)),
        ("-5:5", NagiosRange(-5.0, 5.0)),
        ("0.5:1.5", NagiosRange(0.5, 1.5)),
        ("1e3", NagiosRange(0.0, 1000.0)),
        (" 10 ", NagiosRange(0.0, 10.0)),
    ],
)
def test_parse_range_reads_every_form_of_the_syntax(text: str, expected: NagiosRange) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize(
    ("text", "alerting", "quiet"),
    [
        ("10", [-0.1, 10.01, 1000], [0, 5, 10]),
        ("10:", [9.99, -1], [10, 1e12]),
        ("~:10", [10.01], [-1e12, 10]),
        ("10:20", [9.9, 20.1], [10, 15, 20]),
        ("@10:20", [10, 15, 20], [9.9, 20.1]),
        ("~:", [], [-1e12, 0, 1e12]),
    ],
)
def test_range_alerts_outside_or_inside_inclusively(
    text: str, alerting: list[float], quiet: list[float]
) -> None:
    parsed = parse_range(text)
    assert [value for value in alerting if not parsed.alerts(value)] == []
    assert [value for value in quiet if parsed.alerts(value)] == []


@pytest.mark.parametrize("text", ["", "@", "abc", "20:10", "1:2:3", "nan", "inf", "10%", "~"])
def test_parse_range_rejects_malformed_ranges(text: str) -> None:
    with pytest.raises(ValueError, match="not a Nagios range"):
        parse_range(text)


# --- perfdata -----------------------------------------------------------------------------


def test_check_disk_perfdata_keeps_label_value_unit_thresholds_and_bounds() -> None:
    items = parse_perfdata("/=23871881216B;216442024755;243497277849;0;270552530944")
    assert items == [
        PerfDatum(
            label="/",
            value=23871881216,
            uom="B",
            warn="216442024755",
            crit="243497277849",
            minimum=0.0,
            maximum=270552530944.0,
        )
    ]


def test_check_load_perfdata_with_trailing_semicolons_and_space() -> None:
    text = "load1=0.020;5.000;10.000;0; load5=0.090;4.000;8.000;0; load15=0.060;3.000;6.000;0; "
    items = parse_perfdata(text)
    assert [(item.label, item.value, item.warn, item.crit) for item in items] == [
        ("load1", 0.02, "5.000", "10.000"),
        ("load5", 0.09, "4.000", "8.000"),
        ("load15", 0.06, "3.000", "6.000"),
    ]
    assert all(item.minimum == 0.0 and item.maximum is None for item in items)


def test_quoted_labels_may_hold_spaces_equals_and_doubled_quotes() -> None:
    items = parse_perfdata("'disk usage'=50% 'it''s=odd'=3 plain=1")
    assert [(item.label, item.value, item.uom) for item in items] == [
        ("disk usage", 50, "%"),
        ("it's=odd", 3, ""),
        ("plain", 1, ""),
    ]


@pytest.mark.parametrize(
    ("text", "value", "uom"),
    [
        ("t=0.25s", 0.25, "s"),
        ("t=12ms", 12, "ms"),
        ("t=3us", 3, "us"),
        ("t=99.5%", 99.5, "%"),
        ("t=10KB", 10, "KB"),
        ("t=1024c", 1024, "c"),
        ("t=-4", -4, ""),
        ("t=+4", 4, ""),
        ("t=.5", 0.5, ""),
        ("t=1e3", 1000.0, ""),
        ("t=0,75", 0.75, ""),
    ],
)
def test_values_lose_their_unit_and_keep_their_number(text: str, value: float, uom: str) -> None:
    (item,) = parse_perfdata(text)
    assert item.value == value
    assert item.uom == uom


def test_integers_stay_integers_and_decimals_stay_floats() -> None:
    integer, decimal = parse_perfdata("a=5 b=5.0")
    assert (integer.label, integer.value) == ("a", 5) and isinstance(integer.value, int)
    assert (decimal.label, decimal.value) == ("b", 5.0) and isinstance(decimal.value, float)


def test_undetermined_and_malformed_items_are_skipped_but_the_rest_survives() -> None:
    text = "a=U;1;2 garbage b=abc =5 c=3;;; 'd'x=1 e=7"
    assert [(item.label, item.value) for item in parse_perfdata(text)] == [("c", 3), ("e", 7)]


def test_missing_threshold_fields_are_none() -> None:
    (item,) = parse_perfdata("x=1;;5")
    assert item.warn is None
    assert item.crit == "5"
    assert item.minimum is None
    assert item.maximum is None


def test_unterminated_quote_stops_parsing_without_error() -> None:
    assert [item.label for item in parse_perfdata("a=1 'broken=2 b=3")] == ["a"]


def test_empty_perfdata_is_no_items() -> None:
    assert parse_perfdata("") == []
    assert parse_perfdata("   ") == []


# --- output splitting ---------------------------------------------------------------------


def test_single_line_output_splits_at_the_bar() -> None:
    output = split_plugin_output("LOAD OK - total load average: 0.02|load1=0.020;5;10;0;\n")
    assert output.message == "LOAD OK - total load average: 0.02"
    assert output.long_text == ""
    assert output.perfdata == "load1=0.020;5;10;0;"


def test_output_without_perfdata_is_all_message() -> None:
    output = split_plugin_output("WARNING: hello world\n")
    assert output.message == "WARNING: hello world"
    assert output.perfdata == ""


def test_multi_line_output_collects_perfdata_from_later_lines_too() -> None:
    # The example from the monitoring-plugins development guidelines.
    text = (
        "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n"
        "/ 15272 MB (77%);\n"
        "/boot 68 MB (69%);\n"
        "/home 69357 MB (27%);\n"
        "/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n"
        "/home=69357MB;253404;253409;0;253414 \n"
        "/var/log=818MB;970;975;0;980\n"
    )
    output = split_plugin_output(text)
    assert output.message == "DISK OK - free space: / 3326 MB (56%);"
    assert output.long_text.splitlines() == [
        "/ 15272 MB (77%);",
        "/boot 68 MB (69%);",
        "/home 69357 MB (27%);",
        "/var/log 819 MB (84%);",
    ]
    labels = [item.label for item in parse_perfdata(output.perfdata)]
    assert labels == ["/", "/boot", "/home", "/var/log"]


def test_perfdata_only_on_a_later_line() -> None:
    output = split_plugin_output("OK all fine\nmore detail | a=1\nb=2")
    assert output.message == "OK all fine"
    assert output.long_text == "more detail"
    assert [item.label for item in parse_perfdata(output.perfdata)] == ["a", "b"]


def test_empty_output() -> None:
    assert split_plugin_output("") == PluginOutput("", "", "")
    assert split_plugin_output("\n\n") == PluginOutput("", "", "")


# --- metric names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "alias"),
    [
        ("time", None),
        ("load1", None),
        ("_private", None),
        ("/", "root"),
        ("//", "root"),
        ("/var/log", "var_log"),
        ("/boot", "boot"),
        ("cpu usage %", "cpu_usage"),
        ("5xx rate", "_5xx_rate"),
        ("C:\\ used", "C_used"),
        ("%", None),
        ("temp.core-0", "temp_core_0"),
    ],
)
def test_metric_alias_rule(label: str, alias: str | None) -> None:
    assert metric_alias(label) == alias


def test_metrics_keep_labels_and_add_aliases_that_do_not_collide() -> None:
    items = parse_perfdata("/=10 /var/log=20 var_log=30 time=0.5s exit_code=9 time=7")
    metrics = perfdata_metrics(items, frozenset({"exit_code"}))
    assert metrics == {
        "/": 10,
        "/var/log": 20,
        "var_log": 30,  # the real label wins over the alias of "/var/log"
        "time": 0.5,  # the first of two equal labels wins
        "root": 10,
    }


# --- thresholds ---------------------------------------------------------------------------


def test_threshold_status_prefers_critical_over_warning() -> None:
    (item,) = parse_perfdata("temp=85C;70;80;0;100")
    status, reason = threshold_status(item)
    assert status is Status.CRITICAL
    assert reason == "temp=85C breaches critical 80"


def test_threshold_status_warning_and_ok() -> None:
    (warn,) = parse_perfdata("temp=75C;70;80")
    (fine,) = parse_perfdata("temp=65C;70;80")
    assert threshold_status(warn)[0] is Status.WARNING
    assert threshold_status(fine) == (Status.OK, "")


def test_inside_range_threshold() -> None:
    (item,) = parse_perfdata("'disk usage'=50%;@40:60;;")
    assert threshold_status(item)[0] is Status.WARNING


def test_malformed_thresholds_are_ignored() -> None:
    (item,) = parse_perfdata("x=5;abc;9:1")
    assert threshold_status(item) == (Status.OK, "")
