"""Group targets: a health score over other checks' newest stored results (SQLite store),
judged by conditions as guide 004 puts it (healthy > 95 %, degraded 90-95 %, critical
< 90 %), and the selector's rules at load."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from upkeep.config.errors import ConfigError
from upkeep.config.loader import LoadedConfig, load_config
from upkeep.core.clock import FakeClock
from upkeep.core.redaction import Redactor
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.engine.runner import CheckRunner
from upkeep.io.http import HttpClient
from upkeep.probes.group import GroupTarget
from upkeep.store.store import Store

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SERVICES = [f"svc-{index:02d}" for index in range(20)]


def config_text(*, group: str, members: list[str] = SERVICES, extra_checks: str = "") -> str:
    checks = "".join(
        f"  {name}: {{target: box, probe: uptime, every: 1m, labels: {{tier: core}}}}\n"
        for name in members
    )
    return f"""targets:
  box: {{kind: host}}
  platform: {group}
checks:
{checks}{extra_checks}  platform-health:
    target: platform
    warn: healthy_percent <= 95
    crit: healthy_percent < 90
  other-group:
    target: platform
"""


def load(tmp_path: Path, text: str) -> LoadedConfig:
    path = tmp_path / "upkeep.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={})


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return [str(issue) for issue in caught.value.issues]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open("sqlite:///store.db", tmp_path)
    yield opened
    opened.close()


def results(statuses: dict[str, Status], at: datetime = NOW) -> list[CheckResult]:
    return [
        CheckResult(
            check=name,
            target="box",
            probe="host.uptime",
            status=status,
            metrics={},
            message="",
            duration_ms=1.0,
            at=at,
        )
        for name, status in statuses.items()
    ]


async def run_group(loaded: LoadedConfig, store: Store | None) -> CheckResult:
    http = HttpClient()
    try:
        runner = CheckRunner(redactor=Redactor(), http=http, clock=FakeClock(NOW), store=store)
        return await runner.run_one(loaded.checks["platform-health"])
    finally:
        await http.close()


@pytest.mark.parametrize(
    ("failing", "status", "percent"),
    [(0, Status.OK, 100.0), (1, Status.WARNING, 95.0), (2, Status.WARNING, 90.0),
     (3, Status.CRITICAL, 85.0)],
)  # fmt: skip
async def test_the_health_score_is_judged_by_its_conditions(
    tmp_path: Path, store: Store, failing: int, status: Status, percent: float
) -> None:
    loaded = load(tmp_path, config_text(group="{kind: group, match_labels: {tier: core}}"))
    statuses = dict.fromkeys(SERVICES, Status.OK)
    for name in SERVICES[:failing]:
        statuses[name] = Status.CRITICAL
    store.write_results(results(statuses))
    result = await run_group(loaded, store)
    assert result.status is status, result.message
    assert result.metrics["healthy_percent"] == percent
    assert (result.metrics["ok"], result.metrics["critical"], result.metrics["total"]) == (
        20 - failing,
        failing,
        20,
    )


async def test_stale_and_missing_results_are_unknown(tmp_path: Path, store: Store) -> None:
    loaded = load(tmp_path, config_text(group="{kind: group, checks: ['svc-*']}"))
    fresh = dict.fromkeys(SERVICES[2:], Status.OK)
    fresh[SERVICES[2]] = Status.WARNING
    store.write_results(results(fresh))
    # Three intervals (3m) old is still fresh; a second more is stale.
    store.write_results(results({SERVICES[0]: Status.OK}, at=NOW - timedelta(minutes=3, seconds=1)))
    result = await run_group(loaded, store)
    assert result.metrics == {
        "healthy_percent": 85.0,
        "ok": 17,
        "warning": 1,
        "critical": 0,
        "unknown": 2,
        "total": 20,
    }
    assert result.status is Status.CRITICAL
    assert "warning: svc-02" in result.message
    assert "unknown: svc-00, svc-01" in result.message
    assert "svc-00's newest result is 3m 1s old (older than 3m)" in result.message
    assert "svc-01 has no result yet" in result.message


async def test_max_age_overrides_the_intervals(tmp_path: Path, store: Store) -> None:
    loaded = load(
        tmp_path, config_text(group="{kind: group, checks: [svc-00, svc-01], max_age: 10m}")
    )
    store.write_results(results({SERVICES[0]: Status.OK}, at=NOW - timedelta(minutes=9)))
    store.write_results(results({SERVICES[1]: Status.OK}, at=NOW - timedelta(minutes=11)))
    result = await run_group(loaded, store)
    assert (result.metrics["ok"], result.metrics["unknown"]) == (1, 1)


async def test_group_checks_and_disabled_checks_are_not_members(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        config_text(
            group="{kind: group, checks: ['*']}",
            extra_checks="  off: {target: box, probe: uptime, enabled: false}\n",
        ),
    )
    target = loaded.config.targets["platform"]
    assert isinstance(target, GroupTarget)
    assert [member.name for member in target.members] == SERVICES
    assert {member.max_age for member in target.members} == {timedelta(minutes=3)}


async def test_without_a_store_the_group_is_unknown(tmp_path: Path) -> None:
    loaded = load(tmp_path, config_text(group="{kind: group, match_labels: {tier: core}}"))
    result = await run_group(loaded, None)
    assert result.status is Status.UNKNOWN
    assert "a group's checks are read from the store, and this run has none" in result.message


def test_selectors_that_match_nothing_are_errors(tmp_path: Path) -> None:
    lines = errors(tmp_path, config_text(group="{kind: group, checks: [svc-00, 'db-*', 'svc-99']}"))
    assert len(lines) == 2, lines
    assert "targets.platform.checks[1]: the pattern 'db-*' matches no check" in lines[0]
    assert "targets.platform.checks[2]: no check named 'svc-99'" in lines[1]
    (line,) = errors(tmp_path, config_text(group="{kind: group, match_labels: {tier: edge}}"))
    assert "targets.platform.match_labels: the group selects no check" in line
    (line,) = errors(tmp_path, config_text(group="{kind: group, checks: ['*-health']}"))
    assert "targets.platform.checks: the group selects only platform-health" in line
    assert "disabled checks and group checks are not counted" in line
    (line,) = errors(tmp_path, config_text(group="{kind: group, checks: []}"))
    assert "targets.platform.checks: the group selects no check" in line
    (line,) = errors(tmp_path, config_text(group="{kind: group}"))
    assert "targets.platform: a group selects its checks" in line


def test_conditions_read_only_the_scores_metrics(tmp_path: Path) -> None:
    text = config_text(group="{kind: group, checks: ['svc-*']}").replace(
        "healthy_percent <= 95", "healthy <= 95"
    )
    (line,) = errors(tmp_path, text)
    assert "unknown metric 'healthy' for probe group.health" in line
