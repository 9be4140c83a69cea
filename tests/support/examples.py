"""The configs in ``examples/`` and what their tests share: where they are, the cadence
of a runbook's schedule, the documented example environment (``examples/.env.example``)
and their paths moved into a test's directory."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIGS = sorted(EXAMPLES.glob("*/upkeep.yaml"))
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
EXAMPLE_PREFIX = "/tmp/upkeep-example-"  # noqa: S108 - only read here: the examples' paths, moved into tmp_path
EXAMPLE_PATH = re.compile(re.escape(EXAMPLE_PREFIX) + r"[^\s\",}\]']+")
ENV_EXAMPLE = EXAMPLES / ".env.example"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
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


def example_environment() -> dict[str, str]:
    """Return the documented example environment, ``examples/.env.example``: each
    ``NAME=value`` line (comments and blank lines skipped); raise ValueError naming the
    line if one is neither."""
    values: dict[str, str] = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, equals, value = text.partition("=")
        if not equals or not ENV_NAME.match(name):
            raise ValueError(f"{ENV_EXAMPLE}:{number}: not NAME=value: {text!r}")
        values[name] = value
    return values


def set_example_environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Set the documented example environment (so a CLI the test spawns sees it too);
    return it."""
    values = example_environment()
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def move_example_paths(text: str, root: Path) -> str:
    """Given an example's text, return it with every ``/tmp/upkeep-example-*`` path moved
    under ``root``, each created there: a directory, or the parent of a file (a name with
    a suffix such as ``.pid``), so dry runs find what a real system would have."""
    for written in set(EXAMPLE_PATH.findall(text)):
        moved = root / written.removeprefix("/")
        directory = moved.parent if moved.suffix else moved
        directory.mkdir(parents=True, exist_ok=True)
    return text.replace(EXAMPLE_PREFIX, f"{root}{EXAMPLE_PREFIX}")
