"""The configs in ``examples/``: one per seed system, each loads with a runbook of every
cadence, with the documented example environment, and uses what upkeep does.

Each example translates a seed's daily, weekly, monthly and quarterly procedures into
runbooks, so each must have at least one runbook of every cadence. ``${NAME}`` references
take their values from ``examples/.env.example``, which must list exactly the names the
examples use. Each example expresses its guide with the product's own constructs (backups
with drills, log rotation and retention, the access probe, soft states, dependencies,
``stats``) rather than shell stand-ins, stays on this machine, and no comment calls a
shipped feature future work. That each validates and every runbook dry-runs through the
CLI and the engine is tested in ``tests/e2e/test_examples_cli.py`` and
``tests/integration/engine/test_examples_dry_run.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.examples import (
    CADENCES,
    CONFIGS,
    ENV_EXAMPLE,
    ENV_REFERENCE,
    EXAMPLE_PREFIX,
    EXAMPLES,
    cadence,
    example_environment,
)
from upkeep.config.loader import LoadedConfig, load_config

FUTURE_WORK = re.compile(
    r"(?<![A-Za-z])#\d+\b|\blater\b|\bnot yet\b|\bfuture\b|\buntil then\b|\barrives with\b"
    r"|\bwill (?:replace|add|come)",
    re.IGNORECASE,
)
STAND_IN_PROGRAMS = {"pg_dump", "pg_restore", "mariadb-dump", "mysqldump", "tar", "gzip"}
"""Programs a runbook step ran in place of backups, drills and log archiving."""
STAND_IN_ARGUMENTS = {"gzip", "--rdb"}
"""Arguments of the same (``find … -exec gzip``, ``redis-cli --rdb``)."""
COMMENT = re.compile(r"(?:^|\s)#.*$")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def _load(path: Path) -> LoadedConfig:
    return load_config(path, environ=example_environment(), check_channels=True)


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


def test_the_example_environment_lists_exactly_the_names_the_examples_use() -> None:
    used = {
        name for path in CONFIGS for name in ENV_REFERENCE.findall(path.read_text(encoding="utf-8"))
    }
    assert used, "the examples reference no ${NAME}"
    assert set(example_environment()) == used
    documented = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    assert "examples/.env.example" in documented


def test_a_malformed_example_environment_line_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.support.examples as examples_module

    broken = tmp_path / ".env.example"
    broken.write_text("# fine\nGOOD=1\nexport BAD value\n", encoding="utf-8")
    monkeypatch.setattr(examples_module, "ENV_EXAMPLE", broken)
    with pytest.raises(ValueError, match=r"\.env\.example:3: not NAME=value"):
        example_environment()
    assert ENV_EXAMPLE.name == ".env.example"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.parent.name)
def test_example_loads_with_every_cadence(path: Path) -> None:
    config = _load(path).config
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
def test_example_uses_what_upkeep_does(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    config = _load(path).config
    steps = [step for runbook in config.runbooks.values() for step in runbook.steps]
    tasks = {step.task for step in steps if step.task}
    probes = {(config.targets[check.target].kind, check.probe) for check in config.checks.values()}
    name = path.parent.name
    assert config.backups.sources, f"{name}: no backups: section"
    assert {"backup.create", "backup.drill", "backup.verify"} <= tasks, f"{name}: {tasks}"
    assert {"logs.rotate", "logs.retain"} <= tasks, f"{name}: {tasks}"
    assert ("backup", None) in probes or ("backup", "freshness") in probes, name
    assert ("logs", "access") in probes, f"{name}: no access probe"
    assert any(
        check.after > 1 or check.for_.total_seconds() > 0 for check in config.checks.values()
    )
    assert any(check.depends_on for check in config.checks.values()), name
    assert "upkeep stats" in text, f"{name}: no stats figures"
    stand_ins = [
        " ".join(step.command)
        for step in steps
        if step.command
        and (step.command[0] in STAND_IN_PROGRAMS or STAND_IN_ARGUMENTS & set(step.command))
    ]
    assert not stand_ins, f"{name}: shell stand-ins for what upkeep does: {stand_ins}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.parent.name)
def test_example_stays_on_this_machine(path: Path) -> None:
    # Comments may quote the seed's own paths; the config itself may not use them.
    text = "\n".join(
        COMMENT.sub("", line) for line in path.read_text(encoding="utf-8").splitlines()
    )
    config = _load(path).config
    for name, target in config.targets.items():
        for field in ("url", "dsn", "host"):
            value = getattr(target, field, None)
            if isinstance(value, str):
                host = urlsplit(value).hostname if "://" in value else value
                assert host in LOCAL_HOSTS, f"targets.{name}.{field}: {value}"
    outside = [
        found
        for found in re.findall(r"(?<![\w.-])/(?:tmp|var|srv|home|opt|backups?)/[\w./-]*", text)
        if not found.startswith(EXAMPLE_PREFIX)
    ]
    assert not outside, f"{path.parent.name}: paths outside /tmp/upkeep-example-*: {outside}"


@pytest.mark.parametrize(
    "path",
    [*CONFIGS, EXAMPLES / "README.md"],
    ids=lambda path: path.relative_to(EXAMPLES).as_posix(),
)
def test_no_comment_calls_a_shipped_feature_future_work(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(lines, 1)
        if FUTURE_WORK.search(re.sub(r"\b[A-Z]{3}#\d\b", "", line))
    ]
    assert not found, found


def test_the_readme_config_is_valid_with_its_channels(tmp_path: Path) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## A config") :]
    start = section.index("```yaml\n") + len("```yaml\n")
    (tmp_path / "upkeep.yaml").write_text(section[start : section.index("```", start)])
    environ = {"DATABASE_URL": "postgresql://app@127.0.0.1/app", "SMTP_PASSWORD": "dummy0secret"}
    loaded = load_config(tmp_path / "upkeep.yaml", environ=environ, check_channels=True)
    assert loaded.config.routes[0].escalations[1].notify == ["hook"]
    assert loaded.config.checks["api-up"].depends_on == ["db-connections"]
