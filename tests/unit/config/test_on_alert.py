"""``on_alert:`` of a runbook: a route's matcher, the guard rails' defaults, and the errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.helpers import load_text
from upkeep.config.errors import ConfigError

BASE = """\
targets: {box: {kind: host}}
checks: {disk: {target: box, probe: disk, labels: {team: ops}}}
runbooks:
  mend:
    steps: [{command: ["true"]}]
"""


def errors_of(tmp_path: Path, on_alert: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, BASE + f"    on_alert: {on_alert}\n")
    return [str(issue) for issue in caught.value.issues]


def test_the_guard_rails_have_defaults_and_the_match_is_a_routes(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, BASE + "    on_alert: {match: {checks: [disk], severity: P3}}\n")
    rule = loaded.config.runbooks["mend"].on_alert
    assert rule is not None
    assert rule.match.checks == ["disk"]
    assert rule.match.severity == ["P3"]  # one severity, or a list, as in a route
    assert (rule.max_runs, rule.per, rule.cooldown) == (
        3,
        timedelta(hours=1),
        timedelta(minutes=10),
    )
    assert rule.dry_run_only is False
    assert load_text(tmp_path, BASE).config.runbooks["mend"].on_alert is None


def test_a_match_that_takes_every_alert_is_refused(tmp_path: Path) -> None:
    [error] = errors_of(tmp_path, "{match: {}}")
    assert "runbooks.mend.on_alert.match" in error
    assert "name checks, labels or severity" in error


def test_an_unknown_check_and_bad_rails_are_named_at_their_keys(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path, "{match: {checks: [disk]}, max_runs: 0, per: 0s, cooldown: soon, extra: 1}"
    )
    text = "\n".join(errors)
    assert "runbooks.mend.on_alert.max_runs" in text
    assert "runbooks.mend.on_alert.per: must be longer than 0s" in text
    assert "runbooks.mend.on_alert.cooldown" in text
    assert "runbooks.mend.on_alert.extra" in text
    [unknown] = errors_of(tmp_path, "{match: {checks: [nope]}}")
    assert "runbooks.mend.on_alert.match.checks" in unknown
    assert "nope" in unknown


@pytest.mark.parametrize("match", ["{runs: {events: [failed]}}", "{checks: [disk], runs: {}}"])
def test_run_notices_cannot_start_a_runbook(tmp_path: Path, match: str) -> None:
    [error] = errors_of(tmp_path, f"{{match: {match}}}")
    assert "runbooks.mend.on_alert.match: on_alert matches alerts" in error
    assert "`runs:` belongs to a route's match" in error
