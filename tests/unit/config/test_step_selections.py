"""A runbook step's check labels must select a check when the config loads, not fail the
step (or leave a rollout unwatched) at run time."""

from __future__ import annotations

from pathlib import Path

import pytest

from upkeep.config.errors import ConfigError
from upkeep.config.loader import load_config

CONFIG = """targets:
  web: {kind: host, labels: {service: web}}
checks:
  web-up: {target: web, probe: uptime}
  web-off: {target: web, probe: uptime, labels: {tier: spare}, enabled: false}
runbooks:
  canary:
    on_failure:
      - checks: {labels: {service: wbe}}
    finally:
      - checks: {names: [web-up], labels: {tier: spare}}
    steps:
      - watch: {checks: {labels: {service: web, tier: spare}}, for: 1m}
      - checks: {labels: {service: web}}
      - watch: {checks: {names: [web-off], labels: {tier: spare}}, for: 1m}
"""


def test_labels_that_select_no_check_are_errors_naming_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "upkeep.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    # In the file's order; the named disabled check (web-off) counts, as a run selects it.
    assert [str(issue) for issue in caught.value.issues] == [
        f"{path}:9:18: runbooks.canary.on_failure[0].checks.labels: "
        "no enabled check carries all of service=wbe",
        f"{path}:11:35: runbooks.canary.finally[0].checks.labels: "
        "none of the checks named carries all of tier=spare",
        f"{path}:13:26: runbooks.canary.steps[0].watch.checks.labels: "
        "no enabled check carries all of service=web, tier=spare",
    ]
