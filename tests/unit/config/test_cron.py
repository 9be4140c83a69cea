from __future__ import annotations

import pytest

from upkeep.config.cron import validate_cron


@pytest.mark.parametrize(
    "expression",
    [
        "0 9 * * *",
        "0 2 * * SAT#1",
        "@daily",
        "@quarterly",
        "*/5 * * * *",
        "0 2 L * *",
        "0 3 * * FRIL",
        "0 0 1-15/2 JAN-MAR MON-FRI",
        "30 2 * * 0,6",
        "0 0 29 2 *",
        "0 0 * * fril",
        "0 0 31 2 FRI",
    ],
)
def test_valid(expression: str) -> None:
    validate_cron(expression)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("0 9 * *", "has 4 fields"),
        ("60 9 * * *", "outside 0-59"),
        ("0 24 * * *", "outside 0-23"),
        ("0 0 0 * *", "outside 1-31"),
        ("0 0 * 13 *", "outside 1-12"),
        ("0 0 * * FUNDAY", "not valid"),
        ("0 0 * * SAT#6", "not valid"),
        ("@fortnightly", "unknown schedule alias"),
        ("*/0 * * * *", "step 0"),
        ("0 5-2 * * *", "runs backwards"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
    ],
)
def test_invalid(expression: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        validate_cron(expression)
