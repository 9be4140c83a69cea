"""Which checks a runbook calls its own, for the loop guard's reason."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import load_text
from upkeep.engine.remediation import own_checks

CONFIG = """\
targets: {box: {kind: host}}
checks:
  disk: {target: box, probe: disk}
  load: {target: box, probe: load}
  memory: {target: box, probe: memory}
  uptime: {target: box, probe: uptime}
runbooks:
  mend:
    steps:
      - {checks: {names: [disk]}}
      - {watch: {checks: {names: [load]}, for: 10m, every: 1m}}
    on_failure:
      - {checks: {names: [memory]}}
    finally:
      - {command: ["true"]}
"""


def test_watched_checks_and_those_of_the_rollback_are_the_runbooks_own(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, CONFIG)
    assert own_checks(loaded, loaded.config.runbooks["mend"]) == {"disk", "load", "memory"}
