"""The configs in ``examples/``: one per seed system, each loads, validates and dry-runs.

Each example translates a seed's daily, weekly, monthly and quarterly procedures into
runbooks, so each must have at least one runbook of every cadence. Secrets referenced as
``${NAME}`` get dummy values; paths under ``/tmp/upkeep-example-*`` are moved into the
test's temporary directory for the dry run.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from upkeep.config.loader import load_config

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


def _environ(monkeypatch: pytest.MonkeyPatch, text: str) -> dict[str, str]:
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


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "upkeep.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_there_is_one_example_per_seed() -> None:
    assert len(CONFIGS) == 5, [str(path) for path in CONFIGS]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("0 9 * * *", "daily"),
        ("@daily", "daily"),
        ("*/5 * * * *", "other"),
        ("0 10 * * MON", "weekly"),
        ("0 2 * * SAT#1", "monthly"),
        ("0 4 1 * *", "monthly"),
        ("0 2 * * 5L", "monthly"),
        ("0 9 1 1,4,7,10 *", "quarterly"),
        ("0 10 * 1,4,7,10 MON#1", "quarterly"),
        ("0 0 1 */3 *", "quarterly"),
        ("@quarterly", "quarterly"),
        ("0 0 1 1 *", "other"),
    ],
)
def test_cadence_classification(schedule: str, expected: str) -> None:
    assert cadence(schedule) == expected


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.parent.name)
def test_example_loads_with_every_cadence(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _environ(monkeypatch, path.read_text(encoding="utf-8"))
    loaded = load_config(path)
    config = loaded.config
    assert config.targets and config.checks and config.runbooks
    found: dict[str, list[str]] = {}
    for name, runbook in config.runbooks.items():
        if runbook.schedule is not None:
            found.setdefault(cadence(runbook.schedule), []).append(name)
    missing = [kind for kind in CADENCES if kind not in found]
    assert not missing, f"{path.parent.name} has no {missing} runbook; has {found}"
    for name, runbook in config.runbooks.items():
        if runbook.labels.get("cadence") in CADENCES:
            assert runbook.schedule is not None
            assert cadence(runbook.schedule) == runbook.labels["cadence"], name


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.parent.name)
def test_example_validates_through_the_cli(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _environ(monkeypatch, path.read_text(encoding="utf-8"))
    result = _cli("validate", "-c", str(path), cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.parent.name)
def test_example_daily_runbooks_dry_run(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = path.read_text(encoding="utf-8")
    _environ(monkeypatch, text)
    # The dry run of files.cleanup needs its roots to exist: move them into tmp_path.
    for root in set(EXAMPLE_ROOT.findall(text)):
        (tmp_path / root.removeprefix("/")).mkdir(parents=True, exist_ok=True)
    copy = tmp_path / "upkeep.yaml"
    copy.write_text(text.replace(EXAMPLE_PREFIX, f"{tmp_path}{EXAMPLE_PREFIX}"))
    loaded = load_config(copy)
    daily = [
        name
        for name, runbook in loaded.config.runbooks.items()
        if runbook.schedule is not None and cadence(runbook.schedule) == "daily"
    ]
    assert daily
    for name in daily:
        result = _cli("run", name, "--dry-run", "-c", str(copy), cwd=tmp_path)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
    assert (tmp_path / ".upkeep").is_dir()  # the store lives beside the copied config


def test_the_readme_config_is_valid_with_its_channels(tmp_path: Path) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## A config") :]
    start = section.index("```yaml\n") + len("```yaml\n")
    (tmp_path / "upkeep.yaml").write_text(section[start : section.index("```", start)])
    environ = {"DATABASE_URL": "postgresql://app@127.0.0.1/app", "SMTP_PASSWORD": "dummy0secret"}
    loaded = load_config(tmp_path / "upkeep.yaml", environ=environ, check_channels=True)
    assert loaded.config.routes[0].escalations[1].notify == ["hook"]
    assert loaded.config.checks["api-up"].depends_on == ["db-connections"]
