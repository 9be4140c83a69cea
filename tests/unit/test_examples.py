"""The configs in ``examples/``: one per seed system, each loads with a runbook of every cadence.

Each example translates a seed's daily, weekly, monthly and quarterly procedures into
runbooks, so each must have at least one runbook of every cadence. Secrets referenced as
``${NAME}`` get dummy values. That each validates and dry-runs through the CLI is tested in
``tests/e2e/test_examples_cli.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.examples import CADENCES, CONFIGS, EXAMPLES, cadence, set_dummy_secrets
from upkeep.config.loader import load_config


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
    set_dummy_secrets(monkeypatch, path.read_text(encoding="utf-8"))
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


def test_the_readme_config_is_valid_with_its_channels(tmp_path: Path) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## A config") :]
    start = section.index("```yaml\n") + len("```yaml\n")
    (tmp_path / "upkeep.yaml").write_text(section[start : section.index("```", start)])
    environ = {"DATABASE_URL": "postgresql://app@127.0.0.1/app", "SMTP_PASSWORD": "dummy0secret"}
    loaded = load_config(tmp_path / "upkeep.yaml", environ=environ, check_channels=True)
    assert loaded.config.routes[0].escalations[1].notify == ["hook"]
    assert loaded.config.checks["api-up"].depends_on == ["db-connections"]
