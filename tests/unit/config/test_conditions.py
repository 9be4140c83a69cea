from __future__ import annotations

import pytest

from upkeep.config.conditions import (
    MAX_CONDITION_DEPTH,
    MAX_CONDITION_LENGTH,
    ConditionEvaluationError,
    ConditionSyntaxError,
    MetricType,
    parse_condition,
)


@pytest.mark.parametrize(
    ("source", "metrics", "expected"),
    [
        (
            "status_code != 200 or response_time_ms > 1000",
            {"status_code": 200, "response_time_ms": 1001},
            True,
        ),
        (
            "status_code != 200 or response_time_ms > 1000",
            {"status_code": 200, "response_time_ms": 999},
            False,
        ),
        ("usage_percent > 80 and usage_percent <= 90", {"usage_percent": 85.5}, True),
        ("80 < used_percent <= 90", {"used_percent": 90}, True),
        ("80 < used_percent <= 90", {"used_percent": 91}, False),
        ("not valid", {"valid": False}, True),
        ("not (a > 1 or b > 1)", {"a": 0, "b": 2}, False),
        ("a > 1 or b > 1 and c > 1", {"a": 2, "b": 0, "c": 0}, True),  # and binds tighter
        ("(a > 1 or b > 1) and c > 1", {"a": 2, "b": 0, "c": 0}, False),
        ('version == "15.4"', {"version": "15.4"}, True),
        ("version != '15.4'", {"version": "16.0"}, True),
        ("valid == false", {"valid": False}, True),
        ("x > -1.5e2", {"x": -100}, True),
        ("`/` > 90", {"/": 95}, True),
    ],
)
def test_conditions_evaluate(source: str, metrics: dict[str, object], expected: bool) -> None:
    assert parse_condition(source).holds(metrics) is expected


@pytest.mark.parametrize(
    ("source", "metrics", "expected"),
    [
        ("response_time_ms > 1.5s", {"response_time_ms": 1499}, False),
        ("response_time_ms > 1.5s", {"response_time_ms": 1501}, True),
        ("response_time_ms < 500ms", {"response_time_ms": 499}, True),
        ("longest_s > 5m", {"longest_s": 301}, True),
        ("longest_s > 5m", {"longest_s": 299}, False),
        ("days_left < 14d", {"days_left": 13.9}, True),
        ("cert_days_left < 2w", {"cert_days_left": 15}, False),
        ("oldest_analyze_s > 1d", {"oldest_analyze_s": 86401}, True),
    ],
)
def test_duration_literals_take_the_unit_of_the_metric(
    source: str, metrics: dict[str, object], expected: bool
) -> None:
    assert parse_condition(source).holds(metrics) is expected


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ('version == "café"', "café"),
        ("version == 'naïve ✓ 東京'", "naïve ✓ 東京"),
        (r'version == "say \"hi\""', 'say "hi"'),
        (r"version == 'it\'s'", "it's"),
        (r'version == "a\\b"', "a\\b"),
        (r'version == "C:\dir\n"', r"C:\dir\n"),
    ],
)
def test_string_literals_keep_non_ascii_and_unescape_only_quotes_and_backslash(
    source: str, value: str
) -> None:
    assert parse_condition(source).holds({"version": value}) is True


def test_metric_names_are_collected() -> None:
    condition = parse_condition("status_code != 200 or (response_time_ms > 1s and not ok)")
    assert condition.metric_names == {"status_code", "response_time_ms", "ok"}


def test_keywords_are_not_names_but_names_may_start_with_them() -> None:
    condition = parse_condition("order_count > 1 or notes > 2 and android == 1")
    assert condition.metric_names == {"order_count", "notes", "android"}


@pytest.mark.parametrize(
    ("source", "column"),
    [
        ("x >", 3),
        ("x > > 3", 5),
        ('__import__("os").system("id")', 11),
        ("a.b > 1", 2),
        ("x >= 3 +", 8),
        ("x > 3; y", 6),
        ("lambda: 1", 7),
    ],
)
def test_anything_but_the_grammar_is_refused_with_a_column(source: str, column: int) -> None:
    with pytest.raises(ConditionSyntaxError) as caught:
        parse_condition(source)
    assert caught.value.column == column


def test_empty_condition_is_refused() -> None:
    with pytest.raises(ConditionSyntaxError):
        parse_condition("   ")


def test_missing_metric_is_an_evaluation_error() -> None:
    with pytest.raises(ConditionEvaluationError, match="cert_days_left"):
        parse_condition("cert_days_left < 14").holds({"status_code": 200})


def test_text_against_number_is_an_evaluation_error() -> None:
    with pytest.raises(ConditionEvaluationError, match="text and a number"):
        parse_condition("version > 3").holds({"version": "15.4"})


def test_explain_shows_the_values_read() -> None:
    condition = parse_condition("response_time_ms > 500")
    assert condition.explain({"response_time_ms": 812.5, "status_code": 200}) == (
        "response_time_ms > 500 (response_time_ms=812.5)"
    )


def test_nesting_up_to_the_bound_parses_and_evaluates() -> None:
    # Building and evaluating recurse once per level; the bound keeps both well inside
    # Python's recursion limit.
    nested = "(" * MAX_CONDITION_DEPTH + "a > 1" + ")" * MAX_CONDITION_DEPTH
    negated = "not " * MAX_CONDITION_DEPTH + "a > 1"
    mixed = "not (" * (MAX_CONDITION_DEPTH // 2) + "a > 1" + ")" * (MAX_CONDITION_DEPTH // 2)
    assert parse_condition(nested).holds({"a": 2})
    assert parse_condition(negated).holds({"a": 2})  # an even number of nots
    assert parse_condition(mixed).holds({"a": 2})
    # "not" binds tighter than and/or: a long flat chain is not deep.
    assert parse_condition(" and ".join(["not a > 5"] * 200)).holds({"a": 2})


@pytest.mark.parametrize(
    ("source", "column"),
    [
        ("(" * (MAX_CONDITION_DEPTH + 1) + "a > 1" + ")" * (MAX_CONDITION_DEPTH + 1), 33),
        ("not " * (MAX_CONDITION_DEPTH + 1) + "a > 1", 129),
        ("a > 1 or " + "not (" * 17 + "a > 1" + ")" * 17, 90),
    ],
)
def test_nesting_past_the_bound_is_refused_where_it_goes_past(source: str, column: int) -> None:
    with pytest.raises(ConditionSyntaxError, match="nests deeper than 32 levels") as caught:
        parse_condition(source)
    assert caught.value.column == column


def test_a_condition_past_the_length_bound_is_refused_before_parsing() -> None:
    source = "(" * 100_000 + "a > 1" + ")" * 100_000
    with pytest.raises(ConditionSyntaxError, match="at most 4,096 characters"):
        parse_condition(source)
    assert len(" or ".join(["a > 1"] * 455)) <= MAX_CONDITION_LENGTH
    assert parse_condition(" or ".join(["a > 1"] * 455)).holds({"a": 2})


def test_a_duration_literal_past_100_years_is_a_syntax_error_with_its_column() -> None:
    with pytest.raises(ConditionSyntaxError, match="longer than 100y") as caught:
        parse_condition("age_s > 101y")
    assert caught.value.column == 9


@pytest.mark.parametrize(
    ("source", "size_bytes", "expected"),
    [
        ("size_bytes > 10GB", 10_000_000_001, True),
        ("size_bytes > 10GB", 10_000_000_000, False),
        ("size_bytes > 1KiB", 1000, False),
        ("size_bytes >= 1KiB", 1024, True),
        ("size_bytes < 1.5MiB", 1_572_863, True),
        ("size_bytes < 1.5MiB", 1_572_864, False),
        ("size_bytes == 512B", 512, True),
        ("size_bytes > 1kB and size_bytes > 1KB", 1001, True),
        ("2TB < size_bytes <= 2TiB", 2**41, True),
    ],
)
def test_size_literals_are_bytes_decimal_or_binary(
    source: str, size_bytes: int, expected: bool
) -> None:
    assert parse_condition(source).holds({"size_bytes": size_bytes}) is expected


@pytest.mark.parametrize(
    ("source", "suggestion"), [("size_bytes > 10mb", "10MB"), ("size_bytes > 5Gb", "5GiB")]
)
def test_a_size_in_the_wrong_case_is_a_syntax_error_saying_how_to_write_it(
    source: str, suggestion: str
) -> None:
    with pytest.raises(ConditionSyntaxError) as caught:
        parse_condition(source)
    assert suggestion in str(caught.value) and caught.value.column == 14


def test_type_problems_name_each_wrong_comparison() -> None:
    from upkeep.config.conditions import MetricType

    types = {
        "status_code": MetricType("number", None),
        "size_bytes": MetricType("number", "bytes"),
        "valid": MetricType("bool", None),
    }
    condition = parse_condition("status_code != '200' or size_bytes > 5s or valid == 2")
    problems = condition.type_problems(types)
    assert [column for column, _ in problems] == [1, 25, 44]
    assert "a duration (5s)" in problems[1][1] and "valid is true/false" in problems[2][1]
    assert "true/false equals only 0 (false) and 1 (true)" in problems[2][1]
    # A metric the probe does not declare (perfdata) has no type to check against.
    assert parse_condition("`load` > '5'").type_problems(types) == []


TRUTH = {"passed": MetricType("bool", None), "status_code": MetricType("number", None)}


@pytest.mark.parametrize(
    ("source", "holds_when_true", "holds_when_false"),
    [
        ("passed == 0", False, True),
        ("passed != 0", True, False),
        ("passed == 1", True, False),
        ("passed != 1", False, True),
        ("0 == passed", False, True),
        ("passed == 1.0", True, False),
        ("passed == 0.0", False, True),
        ("(status_code > 499) == 0", False, True),
    ],
)
def test_true_false_equals_0_and_1_as_written_before_and_as_evaluated(
    source: str, holds_when_true: bool, holds_when_false: bool
) -> None:
    """Configs wrote ``passed == 0``: valid, and it holds exactly when passed is false."""
    condition = parse_condition(source)
    assert condition.type_problems(TRUTH) == []
    assert condition.holds({"passed": True, "status_code": 600}) is holds_when_true
    assert condition.holds({"passed": False, "status_code": 200}) is holds_when_false
    # The same as its spelling with true/false.
    spelled = (source.replace("1.0", "true").replace("0.0", "false").replace("1", "true")).replace(
        "0", "false"
    )
    if "status_code" not in source:
        for value in (True, False):
            assert condition.holds({"passed": value}) is parse_condition(spelled).holds(
                {"passed": value}
            )


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("passed == 2", "true/false equals only 0 (false) and 1 (true), with == or !="),
        ("passed != -1", "true/false equals only 0 (false) and 1 (true)"),
        ("passed > 0", "true/false has no order; passed is true/false: write passed == true"),
        ("passed >= 1", "write passed == true"),
        ("passed < 1", "write passed == false"),
        ("1 > passed", "write passed == false"),
        ("passed >= 0", "it always holds"),
        ("passed > 1", "it never holds"),
        ("status_code == true", "status_code is a number and true is true/false"),
    ],
)
def test_other_numbers_and_orderings_of_true_false_are_refused(source: str, fragment: str) -> None:
    problems = parse_condition(source).type_problems(TRUTH)
    assert len(problems) == 1 and fragment in problems[0][1], problems
