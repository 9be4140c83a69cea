"""The command probe running real Nagios plugins (monitoring-plugins-basic) and scripts."""

from __future__ import annotations

import os
import stat
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import run_probe
from upkeep.core.redaction import Redactor
from upkeep.core.status import Status
from upkeep.io.http import HttpClient
from upkeep.probes.base import ProbeContext, TargetUnreachable
from upkeep.probes.command import CommandTarget, RunProbe

PLUGIN_DIR = Path("/usr/lib/nagios/plugins")


def plugin(name: str) -> str:
    """Given a plugin name, return its path; fail under CI=true if it is missing, else skip."""
    path = PLUGIN_DIR / name
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    message = f"{path} is missing (apt-get install monitoring-plugins-basic)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true: a missing plugin is a failure")
    pytest.skip(message)


def script(tmp_path: Path, name: str, body: str) -> str:
    """Given a shell script body, write it as an executable file and return its path."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


# --- real plugins -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "prefix"),
    [
        (0, Status.OK, "OK"),
        (1, Status.WARNING, "WARNING"),
        (2, Status.CRITICAL, "CRITICAL"),
        (3, Status.UNKNOWN, "UNKNOWN"),
    ],
)
async def test_check_dummy_exit_code_is_the_status(code: int, status: Status, prefix: str) -> None:
    outcome = await run_probe(
        RunProbe, CommandTarget, {"command": [plugin("check_dummy"), str(code), "all said"]}
    )
    assert outcome.status is status
    assert outcome.metrics == {"exit_code": code}
    assert outcome.message == f"{prefix}: all said"


async def test_check_disk_perfdata_becomes_metrics_with_a_root_alias() -> None:
    import psutil

    outcome = await run_probe(
        RunProbe,
        CommandTarget,
        {"command": [plugin("check_disk"), "-w", "0.01%", "-c", "0.005%", "-p", "/"]},
    )
    assert outcome.status is Status.OK
    assert outcome.metrics["exit_code"] == 0
    assert outcome.message.startswith("DISK OK")
    assert "|" not in outcome.message
    used = outcome.metrics["/"]
    assert outcome.metrics["root"] == used
    # check_disk reports the used space in some unit (B or MiB, by version); compare shares.
    usage = psutil.disk_usage("/")
    unit = float(usage.used) / float(used)
    assert unit == pytest.approx(1.0, rel=0.05) or unit == pytest.approx(1024 * 1024, rel=0.05)


async def test_check_disk_critical_by_exit_code_and_by_perfdata_threshold() -> None:
    outcome = await run_probe(
        RunProbe,
        CommandTarget,
        {"command": [plugin("check_disk"), "-w", "99.99%", "-c", "99.98%", "-p", "/"]},
    )
    assert outcome.status is Status.CRITICAL
    assert outcome.metrics["exit_code"] == 2
    assert "root" in outcome.metrics


async def test_check_load_perfdata_with_thresholds() -> None:
    outcome = await run_probe(
        RunProbe,
        CommandTarget,
        {
            "command": [
                plugin("check_load"),
                "-w",
                "1000,1000,1000",
                "-c",
                "2000,2000,2000",
            ]
        },
    )
    assert outcome.status is Status.OK
    assert set(outcome.metrics) == {"exit_code", "load1", "load5", "load15"}
    load1, _, _ = os.getloadavg()
    assert float(outcome.metrics["load1"]) == pytest.approx(load1, abs=0.5)
    assert outcome.message.startswith("LOAD OK")


async def test_check_load_bad_arguments_is_unknown() -> None:
    outcome = await run_probe(
        RunProbe, CommandTarget, {"command": [plugin("check_load"), "--no-such-option"]}
    )
    assert outcome.status is Status.UNKNOWN
    assert outcome.metrics["exit_code"] == 3


# --- scripts ------------------------------------------------------------------------------


async def test_perfdata_thresholds_raise_the_status_above_the_exit_code(tmp_path: Path) -> None:
    command = script(tmp_path, "check_temp", "echo 'TEMP OK | temp=85C;70;80;0;100'\nexit 0\n")
    outcome = await run_probe(RunProbe, CommandTarget, {"command": [command]})
    assert outcome.status is Status.CRITICAL
    assert outcome.metrics == {"exit_code": 0, "temp": 85}
    assert outcome.message == "TEMP OK; perfdata: temp=85C breaches critical 80"


async def test_exit_code_status_stands_when_thresholds_are_fine(tmp_path: Path) -> None:
    command = script(tmp_path, "check_x", "echo 'X WARNING | x=1;5;10'\nexit 1\n")
    outcome = await run_probe(RunProbe, CommandTarget, {"command": [command]})
    assert outcome.status is Status.WARNING
    assert outcome.message == "X WARNING"


async def test_unknown_exit_code_stays_unknown_when_a_warn_threshold_is_breached(
    tmp_path: Path,
) -> None:
    body = "echo 'UNKNOWN - cannot read sensor | t=5;1;10'\nexit 3\n"
    outcome = await run_probe(RunProbe, CommandTarget, {"command": [script(tmp_path, "u", body)]})
    assert outcome.status is Status.UNKNOWN
    assert outcome.message == "UNKNOWN - cannot read sensor"


async def test_unknown_exit_code_becomes_critical_when_a_crit_threshold_is_breached(
    tmp_path: Path,
) -> None:
    body = "echo 'UNKNOWN - partial read | t=50;1;10'\nexit 3\n"
    outcome = await run_probe(RunProbe, CommandTarget, {"command": [script(tmp_path, "u", body)]})
    assert outcome.status is Status.CRITICAL
    assert outcome.message == "UNKNOWN - partial read; perfdata: t=50 breaches critical 10"


async def test_multi_line_output_with_quoted_labels_and_inside_ranges(tmp_path: Path) -> None:
    body = (
        "cat <<'EOF'\n"
        "APP OK - 3 queues | 'queue depth'=12;@10:20;;0\n"
        "orders: 12\n"
        "mail: 0 | '/var/spool'=40%;80;90\n"
        "time=0.25s;1;2\n"
        "EOF\n"
        "exit 0\n"
    )
    outcome = await run_probe(RunProbe, CommandTarget, {"command": [script(tmp_path, "c", body)]})
    assert outcome.metrics == {
        "exit_code": 0,
        "queue depth": 12,
        "queue_depth": 12,
        "/var/spool": 40,
        "var_spool": 40,
        "time": 0.25,
    }
    assert outcome.status is Status.WARNING
    assert outcome.message.startswith("APP OK - 3 queues; perfdata: queue depth=12")


@pytest.mark.parametrize("code", [4, 127, 255])
async def test_other_exit_codes_are_unknown(tmp_path: Path, code: int) -> None:
    command = script(tmp_path, "odd", f"echo 'odd exit'\nexit {code}\n")
    outcome = await run_probe(RunProbe, CommandTarget, {"command": [command]})
    assert outcome.status is Status.UNKNOWN
    assert outcome.metrics["exit_code"] == code


async def test_stderr_is_the_message_when_stdout_is_empty(tmp_path: Path) -> None:
    command = script(tmp_path, "quiet", "echo 'cannot open config' >&2\nexit 3\n")
    outcome = await run_probe(RunProbe, CommandTarget, {"command": [command]})
    assert outcome.message == "cannot open config"


async def test_no_output_at_all_says_so(tmp_path: Path) -> None:
    outcome = await run_probe(
        RunProbe, CommandTarget, {"command": [script(tmp_path, "mute", "exit 2\n")]}
    )
    assert outcome.status is Status.CRITICAL
    assert outcome.message == "exit code 2, no output"


async def test_timeout_is_unreachable_and_kills_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    command = script(tmp_path, "slow", f"sleep 30\ntouch {marker}\n")
    started = time.perf_counter()
    with pytest.raises(TargetUnreachable, match=r"timed out after 0\.5s"):
        await run_probe(RunProbe, CommandTarget, {"command": [command]}, timeout_s=0.5)
    assert time.perf_counter() - started < 3.0
    assert not marker.exists()


async def test_missing_program_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(TargetUnreachable, match="cannot start"):
        await run_probe(RunProbe, CommandTarget, {"command": [str(tmp_path / "check_nothing")]})


async def test_env_reaches_the_command_and_its_value_is_masked(tmp_path: Path) -> None:
    command = script(tmp_path, "env", 'echo "OK token is $API_TOKEN"\n')
    target = CommandTarget.model_validate(
        {"kind": "command", "command": [command], "env": {"API_TOKEN": "s3cr3t-value"}}
    )
    redactor = Redactor()
    redactor.add("s3cr3t-value")
    http = HttpClient()
    try:
        context = ProbeContext(timeout=timedelta(seconds=5), http=http, redactor=redactor)
        outcome = await RunProbe().run(target, RunProbe.Params.model_validate({}), context)
    finally:
        await http.close()
    assert outcome.message == "OK token is ***"


def test_command_needs_at_least_one_argument() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        CommandTarget.model_validate({"kind": "command", "command": []})


def test_run_probe_declares_exit_code_and_dynamic_metrics() -> None:
    assert RunProbe.metric_names() == frozenset({"exit_code"})
    assert RunProbe.dynamic_metrics is True
