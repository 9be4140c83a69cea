"""The local host: disk, memory, CPU, load, processes and uptime, measured with psutil.

psutil is imported inside each probe so that loading the config (and ``upkeep --help``)
does not pay for it. Calls that can block — a disk on a hung network mount, a walk over
every process — run in a worker thread under the check's deadline, so one slow host
measurement never stalls the event loop the other checks share.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Annotated, ClassVar, Literal, TypeVar

from pydantic import Field

from upkeep.core.models import StrictModel
from upkeep.core.text import format_bytes, human_duration
from upkeep.io.threads import run_blocking
from upkeep.probes.base import (
    MetricSpec,
    Probe,
    ProbeContext,
    ProbeOutcome,
    TargetBase,
    TargetUnreachable,
    metrics_from,
)

CPU_SAMPLE_S = 0.5
"""Named default: how long the CPU probe watches the counters between its two samples."""

_T = TypeVar("_T")


class HostTarget(TargetBase):
    """The machine upkeep runs on; it has no fields of its own."""

    kind: Literal["host"] = "host"


async def _in_thread(function: Callable[[], _T], context: ProbeContext, what: str) -> _T:
    """Given a blocking call, run it in a thread; raise TargetUnreachable past the deadline.

    The thread is a daemon abandoned at the deadline (``run_blocking``), so a call stuck on
    a hung mount never keeps the process from exiting.
    """
    try:
        return await run_blocking(function, timeout_s=context.timeout_s)
    except TimeoutError as error:
        raise TargetUnreachable(f"{what} did not answer within {context.timeout_s:g}s") from error


class DiskParams(StrictModel):
    """Params of the disk probe: which mounted file system to measure, by any path on it."""

    path: Annotated[str, Field(min_length=1)] = "/"


class DiskProbe(Probe[HostTarget, DiskParams]):
    """Space used and free on the file system holding ``path``."""

    target_kind: ClassVar[str] = "host"
    name: ClassVar[str] = "disk"
    summary: ClassVar[str] = "Disk space of the file system holding a path."
    Params: ClassVar[type[StrictModel]] = DiskParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec(
            "used_percent",
            "number",
            "share of the space available to ordinary users that is used (as df shows it)",
        ),
        MetricSpec("free_bytes", "number", "bytes still available to ordinary users"),
    )

    async def run(
        self, target: HostTarget, params: DiskParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a path, return used_percent and free_bytes of its file system.

        Raise TargetUnreachable if the path does not exist or cannot be read, or if the
        file system does not answer within the deadline (a hung network mount).
        """
        import psutil

        def measure() -> tuple[float, int]:
            usage = psutil.disk_usage(params.path)
            # psutil's percent excludes root-reserved blocks, matching df's Use% column,
            # which is the figure people write thresholds against.
            return float(usage.percent), int(usage.free)

        try:
            used_percent, free_bytes = await _in_thread(measure, context, f"disk {params.path}")
        except FileNotFoundError as error:
            raise TargetUnreachable(f"disk path {params.path!r} does not exist") from error
        except PermissionError as error:
            raise TargetUnreachable(f"disk path {params.path!r} cannot be read") from error
        except OSError as error:
            raise TargetUnreachable(
                f"disk path {params.path!r}: {error.strerror or error}"
            ) from error
        return ProbeOutcome(
            metrics_from({"used_percent": used_percent, "free_bytes": free_bytes}),
            message=f"{params.path}: {used_percent:.1f}% used, {format_bytes(free_bytes)} free",
        )


class MemoryProbe(Probe[HostTarget, StrictModel]):
    """Memory in use and memory available to new work."""

    target_kind: ClassVar[str] = "host"
    name: ClassVar[str] = "memory"
    summary: ClassVar[str] = "Memory used and available."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("used_percent", "number", "share of physical memory not available to new work"),
        MetricSpec(
            "available_bytes", "number", "memory that can be given to new work without swapping"
        ),
    )

    async def run(
        self, target: HostTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given the host, return used_percent and available_bytes of physical memory."""
        import psutil

        memory = psutil.virtual_memory()
        # "Available" (not "free") is what the kernel can hand out without swapping;
        # page cache counts as available, so a busy file cache is not reported as pressure.
        used_percent = float(memory.percent)
        available = int(memory.available)
        return ProbeOutcome(
            metrics_from({"used_percent": used_percent, "available_bytes": available}),
            message=f"memory {used_percent:.1f}% used, {format_bytes(available)} available",
        )


def cpu_busy_percent(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """Given two ``psutil.cpu_times()._asdict()`` samples, return the busy share, 0-100.

    Idle and I/O wait count as not busy. Guest time is already part of user/nice time on
    Linux, so it is subtracted from the total to avoid counting it twice (as psutil does).
    Return 0.0 if no time passed between the samples.
    """

    def totals(values: Mapping[str, float]) -> tuple[float, float]:
        total = sum(values.values())
        total -= values.get("guest", 0.0) + values.get("guest_nice", 0.0)
        idle = values.get("idle", 0.0) + values.get("iowait", 0.0)
        return total, idle

    total_before, idle_before = totals(before)
    total_after, idle_after = totals(after)
    elapsed = total_after - total_before
    if elapsed <= 0:
        return 0.0
    busy = elapsed - (idle_after - idle_before)
    return min(100.0, max(0.0, busy / elapsed * 100.0))


class CpuProbe(Probe[HostTarget, StrictModel]):
    """CPU utilisation over a short sample."""

    target_kind: ClassVar[str] = "host"
    name: ClassVar[str] = "cpu"
    summary: ClassVar[str] = "CPU busy percentage over a short sample."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("used_percent", "number", "share of CPU time spent busy, over all CPUs"),
    )

    async def run(
        self, target: HostTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given the host, sample CPU times twice about 0.5 s apart; return used_percent.

        The sample is shortened to half the deadline when the deadline is shorter than a
        second, so the probe always finishes in time.
        """
        import psutil

        # Two samples of our own rather than psutil.cpu_percent(interval=None): that one
        # compares with the previous call anywhere in the process, which other checks share.
        before = psutil.cpu_times()._asdict()
        await asyncio.sleep(min(CPU_SAMPLE_S, context.timeout_s / 2))
        after = psutil.cpu_times()._asdict()
        used_percent = cpu_busy_percent(before, after)
        return ProbeOutcome(
            metrics_from({"used_percent": used_percent}), message=f"CPU {used_percent:.1f}% busy"
        )


class LoadProbe(Probe[HostTarget, StrictModel]):
    """The load averages, raw and per CPU."""

    target_kind: ClassVar[str] = "host"
    name: ClassVar[str] = "load"
    summary: ClassVar[str] = "Load averages over 1, 5 and 15 minutes, and per CPU."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("load1", "number", "load average over 1 minute"),
        MetricSpec("load5", "number", "load average over 5 minutes"),
        MetricSpec("load15", "number", "load average over 15 minutes"),
        MetricSpec("load_per_cpu", "number", "1-minute load average divided by logical CPUs"),
    )

    async def run(
        self, target: HostTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given the host, return load1, load5, load15 and load1 per logical CPU."""
        import psutil

        load1, load5, load15 = psutil.getloadavg()
        cpus = psutil.cpu_count(logical=True) or 1
        return ProbeOutcome(
            metrics_from(
                {
                    "load1": float(load1),
                    "load5": float(load5),
                    "load15": float(load15),
                    "load_per_cpu": float(load1) / cpus,
                }
            ),
            message=f"load {load1:.2f} {load5:.2f} {load15:.2f} on {cpus} CPUs",
        )


class ProcessParams(StrictModel):
    """Params of the process probe: the process name, optionally narrowed by command line."""

    name: Annotated[str, Field(min_length=1)]
    cmdline_contains: Annotated[str, Field(min_length=1)] | None = None


class ProcessProbe(Probe[HostTarget, ProcessParams]):
    """How many processes of a given name are running."""

    target_kind: ClassVar[str] = "host"
    name: ClassVar[str] = "process"
    summary: ClassVar[str] = "Count running processes by exact name (and command-line text)."
    Params: ClassVar[type[StrictModel]] = ProcessParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("count", "number", "processes whose name equals the given name"),
    )

    async def run(
        self, target: HostTarget, params: ProcessParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a name, return the count of processes whose name is exactly that name.

        With ``cmdline_contains``, only processes whose command line (arguments joined by
        spaces) contains that text are counted. Processes we may not inspect are counted
        by name alone when no command-line filter is set, and skipped otherwise.
        """
        count = await _in_thread(
            lambda: count_processes(params.name, params.cmdline_contains),
            context,
            "the process table",
        )
        what = f"named {params.name!r}"
        if params.cmdline_contains is not None:
            what += f" with {params.cmdline_contains!r} in the command line"
        noun = "process" if count == 1 else "processes"
        return ProbeOutcome({"count": count}, message=f"{count} {noun} {what}")


def count_processes(name: str, cmdline_contains: str | None = None) -> int:
    """Given a process name and optional command-line text, return how many processes match."""
    import psutil

    wanted = ["name", "cmdline"] if cmdline_contains is not None else ["name"]
    count = 0
    for process in psutil.process_iter(wanted):
        # process_iter fills info with None where access is denied and drops processes
        # that exit during the walk, so neither needs handling here.
        if process.info.get("name") != name:
            continue
        if cmdline_contains is not None:
            cmdline = process.info.get("cmdline") or []
            if cmdline_contains not in " ".join(cmdline):
                continue
        count += 1
    return count


class UptimeProbe(Probe[HostTarget, StrictModel]):
    """Time since the host booted."""

    target_kind: ClassVar[str] = "host"
    name: ClassVar[str] = "uptime"
    summary: ClassVar[str] = "Seconds since the host booted."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("seconds", "number", "seconds since boot"),
    )

    async def run(
        self, target: HostTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given the host, return the seconds since it booted."""
        import psutil

        seconds = max(0.0, time.time() - psutil.boot_time())
        return ProbeOutcome(
            metrics_from({"seconds": seconds}), message=f"up {human_duration(seconds)}"
        )
