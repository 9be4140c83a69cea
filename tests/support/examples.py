"""The configs in ``examples/`` and what their tests share: where they are, the cadence
of a runbook's schedule, and dummy values for the secrets they reference."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIGS = sorted(EXAMPLES.glob("*/upkeep.yaml"))
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
EXAMPLE_PREFIX = "/tmp/upkeep-example-"  # noqa: S108 - only read here: the examples' paths, moved into tmp_path
EXAMPLE_ROOT = re.compile(r"(?:root|path):\s*\"?(" + EXAMPLE_PREFIX + r"[^\s\",}]+)")
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@quarterly": "0 0 1 1,4,7,10 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
CADENCES = ("daily", "weekly", "monthly", "quarterly")


def _months(field: str) -> set[int]:
    months: set[int] = set()
    for item in field.split(","):
        spec, _, step = item.partition("/")
        if spec == "*":
            low, high = 1, 12
        elif "-" in spec:
            first, last = spec.split("-")
            low, high = (
                MONTHS.get(first.upper()) or int(first),
                MONTHS.get(last.upper()) or int(last),
            )
        else:
            low = MONTHS.get(spec.upper()) or int(spec)
            high = 12 if step else low
        months.update(range(low, high + 1, int(step or 1)))
    return months


def cadence(schedule: str) -> str:
    """Given a cron schedule, return daily, weekly, monthly, quarterly or other."""
    minute, hour, day, month, weekday = ALIASES.get(schedule, schedule).split()
    if month != "*":
        months = sorted(_months(month))
        steps = {later - earlier for earlier, later in itertools.pairwise(months)}
        return "quarterly" if len(months) == 4 and steps == {3} else "other"
    if day != "*" or "#" in weekday or "L" in weekday.upper():
        return "monthly"
    if weekday != "*":
        return "weekly"
    if minute.isdigit() and hour.isdigit():
        return "daily"
    return "other"


def set_dummy_secrets(monkeypatch: pytest.MonkeyPatch, text: str) -> dict[str, str]:
    """Given a config's text, set a dummy value for each ``${NAME}`` it references in the
    environment (so the CLI it spawns sees them too); return the values set."""
    values = {}
    for name in sorted(set(ENV_REFERENCE.findall(text))):
        # A URL-shaped dummy for whole channel URLs, a plain token otherwise.
        if name.endswith("URL"):
            values[name] = "json://127.0.0.1:9/dummy"
        elif name.endswith("_SID"):
            values[name] = "AC" + "0" * 32  # Apprise checks a Twilio account SID's shape
        else:
            values[name] = "dummy0secret"
        monkeypatch.setenv(name, values[name])
    return values
