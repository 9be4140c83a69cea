"""The extraction rules of ``probes.extract``: numbers, compile checks, the regex budget."""

from __future__ import annotations

import time

import pytest

from upkeep.probes import extract as extract_module
from upkeep.probes.extract import (
    check_jsonpath,
    check_regex,
    extract,
    number_of,
)


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (3, 3),
        (2.5, 2.5),
        (True, 1),
        (False, 0),
        ("42", 42),
        (" 7.25 ", 7.25),
        ("1e3", 1000.0),
        ("nan", None),
        ("inf", None),
        (float("nan"), None),
        ("degraded", None),
        ("", None),
        (None, None),
        ([1], None),
        ({"a": 1}, None),
    ],
)
def test_number_of(value: object, number: float | None) -> None:
    assert number_of(value) == number
    if number is not None:
        assert type(number_of(value)) is type(number)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("$.services[?(@.name=='api'", "not a valid JSONPath"),
        ("$..[", "not a valid JSONPath"),
        ("   ", "empty JSONPath"),
        ("$." + "a" * 2000, "at most 1024 characters"),
    ],
)
def test_bad_jsonpaths_are_refused(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_jsonpath(expression)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"orders (\d+", "not a valid regex"),
        (r"orders \d+", "has 0 capturing groups; it needs exactly one"),
        (r"(orders) (\d+)", "has 2 capturing groups"),
    ],
)
def test_bad_regexes_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_regex(pattern)


def test_a_backtracking_regex_is_cut_off_at_its_time_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (x+x+)+y over many x's and no y backtracks exponentially; the search must give up.
    monkeypatch.setattr(extract_module, "REGEX_TIMEOUT_S", 0.2)
    started = time.perf_counter()
    found = extract(b"x" * 5000, 5000, {}, {"slow": r"((?:x+x+)+)y"})
    elapsed = time.perf_counter() - started
    assert "slow" not in found.metrics
    assert found.problems == [
        "slow: the regex took longer than 0.2s over the body; simplify it "
        "(nested repetition backtracks)"
    ]
    assert elapsed < 1.5  # the module checks its clock now and then, not at every step


def test_extractions_past_the_limit_leave_their_metrics_out_and_say_why() -> None:
    held = [
        extract_module._RUNNING.acquire(blocking=False)
        for _ in range(extract_module.MAX_RUNNING_EXTRACTIONS)
    ]
    try:
        assert all(held)
        busy = extract(b'{"a": 1}', 8, {"a": "$.a"}, {"b": "(\\d)"})
        assert busy.metrics == {}
        assert busy.problems == [
            "a: not read, 2 earlier extractions still run",
            "b: not read, 2 earlier extractions still run",
        ]
    finally:
        for _ in held:
            extract_module._RUNNING.release()
    assert extract(b'{"a": 1}', 8, {"a": "$.a"}, {}).metrics == {"a": 1}
