"""Host probes against this machine, compared with what the OS reports independently."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import run_probe
from upkeep.probes.base import TargetUnreachable
from upkeep.probes.host import (
    CpuProbe,
    DiskProbe,
    HostTarget,
    LoadProbe,
    MemoryProbe,
    ProcessProbe,
    UptimeProbe,
    cpu_busy_percent,
)


async def test_disk_matches_the_file_system(tmp_path: Path) -> None:
    outcome = await run_probe(DiskProbe, HostTarget, {}, {"path": str(tmp_path)})
    usage = shutil.disk_usage(tmp_path)
    assert set(outcome.metrics) == {"used_percent", "free_bytes"}
    # Other processes write to the disk meanwhile; a few MiB of drift is not a bug.
    assert abs(int(outcome.metrics["free_bytes"]) - usage.free) < 64 * 1024 * 1024
    expected_percent = usage.used / (usage.used + usage.free) * 100
    assert abs(float(outcome.metrics["used_percent"]) - expected_percent) < 1.0
    assert str(tmp_path) in outcome.message


async def test_disk_defaults_to_root() -> None:
    outcome = await run_probe(DiskProbe, HostTarget, {})
    assert 0.0 <= float(outcome.metrics["used_percent"]) <= 100.0
    assert "/:" in outcome.message


async def test_disk_missing_path_is_unreachable(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "mount"
    with pytest.raises(TargetUnreachable, match="does not exist"):
        await run_probe(DiskProbe, HostTarget, {}, {"path": str(missing)})


async def test_memory_is_consistent_with_proc_meminfo() -> None:
    outcome = await run_probe(MemoryProbe, HostTarget, {})
    used = float(outcome.metrics["used_percent"])
    available = int(outcome.metrics["available_bytes"])
    assert 0.0 < used < 100.0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines())
        kernel_available = int(fields["MemAvailable"].split()[0]) * 1024
        assert abs(available - kernel_available) < 256 * 1024 * 1024


async def test_cpu_is_a_percentage_and_does_not_block_the_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        outcome = await run_probe(CpuProbe, HostTarget, {})
    finally:
        task.cancel()
    elapsed = time.perf_counter() - started
    assert 0.0 <= float(outcome.metrics["used_percent"]) <= 100.0
    assert 0.4 <= elapsed < 2.0
    assert ticks >= 5  # the loop kept running while the probe sampled


async def test_cpu_sample_fits_a_short_timeout() -> None:
    started = time.perf_counter()
    await run_probe(CpuProbe, HostTarget, {}, timeout_s=0.2)
    assert time.perf_counter() - started < 0.4  # the 0.5 s sample was shortened


def test_cpu_busy_percent_from_two_samples() -> None:
    before = {"user": 10.0, "system": 5.0, "idle": 80.0, "iowait": 5.0, "guest": 2.0}
    after = {"user": 13.0, "system": 6.0, "idle": 85.0, "iowait": 6.0, "guest": 3.0}
    # total grows 11 minus 1 guest = 10; idle+iowait grows 6; busy 4 of 10.
    assert cpu_busy_percent(before, after) == pytest.approx(40.0)
    assert cpu_busy_percent(before, before) == 0.0


async def test_load_matches_the_kernel() -> None:
    outcome = await run_probe(LoadProbe, HostTarget, {})
    load1, load5, load15 = os.getloadavg()
    assert float(outcome.metrics["load1"]) == pytest.approx(load1, abs=0.5)
    assert float(outcome.metrics["load5"]) == pytest.approx(load5, abs=0.5)
    assert float(outcome.metrics["load15"]) == pytest.approx(load15, abs=0.5)
    cpus = os.cpu_count() or 1
    assert float(outcome.metrics["load_per_cpu"]) == pytest.approx(
        float(outcome.metrics["load1"]) / cpus, abs=0.01
    )


async def test_process_counts_this_python() -> None:
    import psutil

    own_name = psutil.Process().name()
    outcome = await run_probe(ProcessProbe, HostTarget, {}, {"name": own_name})
    assert int(outcome.metrics["count"]) >= 1


async def test_process_count_zero_for_an_absent_name() -> None:
    outcome = await run_probe(ProcessProbe, HostTarget, {}, {"name": "no-such-daemon-upkeep"})
    assert outcome.metrics == {"count": 0}
    assert "0 processes" in outcome.message


async def test_process_cmdline_filter_counts_only_matching_instances() -> None:
    marker = "upkeep-probe-marker-7731"
    script = "import sys, time; time.sleep(30)"
    children = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", script, marker),
        await asyncio.create_subprocess_exec(sys.executable, "-c", script, marker),
        await asyncio.create_subprocess_exec(sys.executable, "-c", script, "other"),
    ]
    try:
        import psutil

        name = psutil.Process(children[0].pid).name()
        both = await run_probe(
            ProcessProbe, HostTarget, {}, {"name": name, "cmdline_contains": marker}
        )
        none = await run_probe(
            ProcessProbe, HostTarget, {}, {"name": "not-" + name, "cmdline_contains": marker}
        )
    finally:
        for child in children:
            child.kill()
            await child.wait()
    assert both.metrics == {"count": 2}
    assert none.metrics == {"count": 0}


def test_process_name_is_required() -> None:
    with pytest.raises(ValidationError):
        ProcessProbe.Params.model_validate({})


async def test_uptime_matches_boot_time() -> None:
    import psutil

    outcome = await run_probe(UptimeProbe, HostTarget, {})
    expected = time.time() - psutil.boot_time()
    assert float(outcome.metrics["seconds"]) == pytest.approx(expected, abs=5)
    assert outcome.message.startswith("up ")


def test_host_target_takes_no_fields_of_its_own() -> None:
    assert HostTarget.model_validate({"kind": "host"}).kind == "host"
    with pytest.raises(ValidationError):
        HostTarget.model_validate({"kind": "host", "address": "10.0.0.1"})
