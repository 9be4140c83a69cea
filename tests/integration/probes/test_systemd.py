"""The systemd probe, fed recorded ``systemctl show`` output through the subprocess seam.

These machines do not boot with systemd as PID 1, so ``systemctl`` cannot be asked here.
The files in tests/fixtures/systemd/ are what systemd 252 printed for real units (an
active service, a failed one, one waiting to be restarted — ``activating (auto-restart)``
— and a unit that does not exist), recorded byte for byte with the probe's own argv; the
README there says how. This is the one place in the suite where a recording stands in for
the real program. The probe still runs a real process: a small ``systemctl`` script put
first on ``PATH`` prints the recording named by its last argument, so the argv, the seam
and the parsing are the ones production uses.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from upkeep.config.conditions import parse_condition
from upkeep.config.loader import CompiledCheck
from upkeep.core.clock import FakeClock
from upkeep.core.redaction import Redactor
from upkeep.core.status import Status
from upkeep.engine.results import judge
from upkeep.io.http import HttpClient
from upkeep.probes.base import ProbeContext, ProbeOutcome
from upkeep.probes.host import HostTarget
from upkeep.probes.systemd import SystemdParams, SystemdProbe, parse_timestamp

FIXTURES = Path(__file__).parents[2] / "fixtures" / "systemd"
NOW = datetime(2026, 12, 7, 19, 45, 32, tzinfo=UTC)  # an hour after the units started

FAKE_SYSTEMCTL = """#!/bin/sh
# Stands in for systemctl: logs its argv, then prints the recording of the last argument;
# for a unit not recorded, what systemctl printed on a host without systemd as PID 1.
printf '%s\\n' "$*" >> "$FAKE_LOG"
if [ -n "$FAKE_OLD" ]; then
  for arg in "$@"; do
    if [ "$arg" = "--timestamp=unix" ]; then
      echo "systemctl: unrecognized option '--timestamp=unix'" >&2
      exit 1
    fi
  done
fi
for unit in "$@"; do :; done
dir="$FAKE_DIR"
if [ -n "$FAKE_OLD" ]; then dir="$FAKE_DIR/default-timestamps"; fi
if [ -f "$dir/$unit" ]; then cat "$dir/$unit"; exit 0; fi
cat "$FAKE_DIR/no-systemd-pid1.stderr" >&2
exit 1
"""


@pytest.fixture
def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the stand-in ``systemctl`` first on PATH; return the file its calls are logged in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(FAKE_SYSTEMCTL, encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_DIR", str(FIXTURES))
    return log


async def probe(unit: str, **params: object) -> ProbeOutcome:
    context = ProbeContext(
        timeout=timedelta(seconds=10),
        http=HttpClient(),
        redactor=Redactor(),
        clock=FakeClock(NOW),
    )
    return await SystemdProbe().run(
        HostTarget(), SystemdParams.model_validate({"unit": unit, **params}), context
    )


async def test_an_active_unit_is_ok_with_its_pid_and_time_active(fake_systemctl: Path) -> None:
    outcome = await probe("rec-active")
    since = datetime.fromtimestamp(1796669132, UTC)
    expected_s = round((NOW - since).total_seconds())
    assert outcome.status is Status.OK
    assert outcome.metrics == {
        "active": True,
        "active_state": "active",
        "sub_state": "running",
        "load_state": "loaded",
        "restarts": 0,
        "main_pid": 37,
        "in_state_s": expected_s,
        "active_for_s": expected_s,
    }
    assert outcome.message.startswith("rec-active.service active (running) for ")
    (call,) = fake_systemctl.read_text().splitlines()
    assert call.startswith("show --no-pager --property=Id,LoadState,ActiveState,SubState,")
    assert call.endswith("--timestamp=unix -- rec-active.service")


async def test_a_failed_unit_is_critical_with_its_result_and_restarts(
    fake_systemctl: Path,
) -> None:
    outcome = await probe("rec-failed.service")
    assert outcome.status is Status.CRITICAL
    assert outcome.metrics["active"] is False
    assert outcome.metrics["active_state"] == "failed"
    assert outcome.metrics["restarts"] == 0
    assert outcome.metrics["main_pid"] == 0
    assert "active_for_s" not in outcome.metrics
    assert outcome.message.startswith("rec-failed.service failed (failed) for ")
    assert outcome.message.endswith(", result exit-code")  # no restarts: none said


async def test_a_unit_waiting_to_restart_is_a_warning(fake_systemctl: Path) -> None:
    outcome = await probe("rec-restarting")
    assert outcome.status is Status.WARNING
    assert (outcome.metrics["active_state"], outcome.metrics["sub_state"]) == (
        "activating",
        "auto-restart",
    )
    assert outcome.metrics["restarts"] == 1
    assert outcome.metrics["in_state_s"] == round(
        (NOW - datetime.fromtimestamp(1796669164, UTC)).total_seconds()
    )


async def test_a_missing_unit_is_critical_and_says_so(fake_systemctl: Path) -> None:
    outcome = await probe("rec-missing")
    assert outcome.status is Status.CRITICAL
    assert outcome.message == "unit rec-missing.service does not exist"
    assert outcome.metrics["load_state"] == "not-found"
    assert "in_state_s" not in outcome.metrics


async def test_an_older_systemctl_is_asked_again_without_unix_timestamps(
    fake_systemctl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_OLD", "1")
    outcome = await probe("rec-active")
    assert outcome.status is Status.OK
    first, second = fake_systemctl.read_text().splitlines()
    assert "--timestamp=unix" in first and "--timestamp=unix" not in second
    # The answer without --timestamp=unix writes times as "Mon 2026-12-07 18:45:32 UTC".
    assert outcome.metrics["active_for_s"] == round(
        (NOW - datetime.fromtimestamp(1796669132, UTC)).total_seconds()
    )


async def test_systemctl_failing_is_unknown_with_its_words(fake_systemctl: Path) -> None:
    outcome = await probe("not-recorded")
    assert outcome.status is Status.UNKNOWN
    assert outcome.metrics == {}
    assert outcome.message == (
        "systemctl show not-recorded.service failed: "
        "System has not been booted with systemd as init system (PID 1). Can't operate."
    )


async def test_without_systemctl_the_unit_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    outcome = await probe("nginx")
    assert outcome.status is Status.UNKNOWN
    assert outcome.message.startswith("cannot ask systemd about nginx.service: cannot start")


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("@1765094203", datetime.fromtimestamp(1765094203, UTC)),
        ("Sun 2025-12-07 08:16:43 UTC", datetime(2025, 12, 7, 8, 16, 43, tzinfo=UTC)),
        ("Sun 2025-12-07 09:16:43 +0100", datetime(2025, 12, 7, 8, 16, 43, tzinfo=UTC)),
        ("Sun 2025-12-07 09:16:43 CET", None),  # an abbreviation is not guessed
        ("", None),
        ("@0", None),
        ("n/a", None),
        ("@inf", None),
        ("@1e300", None),
        ("@nan", None),
    ],
)
def test_timestamps(text: str, moment: datetime | None) -> None:
    assert parse_timestamp(text) == moment


async def test_a_condition_on_a_missing_units_absent_metric_keeps_it_critical(
    fake_systemctl: Path,
) -> None:
    outcome = await probe("rec-missing")
    check = CompiledCheck(
        name="rec-missing",
        target_name="box",
        target=HostTarget(),
        probe=SystemdProbe,
        params=SystemdParams(unit="rec-missing"),
        warn=parse_condition("in_state_s < 5m"),
        crit=None,
        every=timedelta(minutes=1),
        timeout=timedelta(seconds=10),
        severity="P2",
        labels={},
        enabled=True,
    )
    verdict = judge(check, outcome)
    assert verdict.status is Status.CRITICAL
    assert verdict.message == (
        "cannot evaluate condition: metric 'in_state_s' was not returned by the probe; "
        "unit rec-missing.service does not exist"
    )
