"""The daemon under a steady load: N HTTP checks every 60 s for D seconds.

Runs the real ``Daemon`` (``upkeep serve``: scheduler, batched store writes, /metrics and
/healthz server, heartbeats, leadership) in this process against a local server in a
separate process pinned to the other CPU (its CPU is not counted), with a SQLite store in
a temporary directory. Prints:

* lag between each check's due time and its start: p50, p99, max;
* CPU milliseconds per check (whole process, user + system), over the steady part (after
  the first ``--warmup`` seconds) and over the whole run;
* peak RSS, rows written, checks skipped because the previous one was still running.

Then, unless ``--no-floor``, the same request rate from a bare aiohttp loop (the floor:
what the requests alone cost) for the same duration, in a fresh interpreter.

Usage: .venv/bin/python benchmarks/daemon.py [--n 10000] [--duration 300] [--every 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
CONCURRENCY = 256
RUN_TIMEOUT_S = 3600


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def write_config(directory: Path, n: int, every_s: int, base_url: str, listen: str) -> Path:
    """Given a directory, write an ``upkeep.yaml`` of N HTTP checks every ``every_s``."""
    lines = [
        'store: "sqlite:///upkeep.db"',
        f'engine: {{listen: "{listen}", concurrency: {CONCURRENCY}}}',
        "targets:",
    ]
    lines += [f'  t{i}: {{kind: http, url: "{base_url}/health/{i}"}}' for i in range(n)]
    lines.append("checks:")
    lines += [
        f"  c{i}: {{target: t{i}, every: {every_s}s, timeout: 10s,"
        ' warn: "response_time_ms > 500", crit: "status_code != 200"}'
        for i in range(n)
    ]
    path = directory / "upkeep.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def measure_daemon(config: Path, duration_s: float, warmup_s: float) -> dict[str, Any]:
    """Given a config, run the daemon for ``duration_s`` and return its figures."""
    import signal

    from upkeep.config.loader import load_config
    from upkeep.engine.scheduler import Scheduler
    from upkeep.serve.daemon import Daemon

    loaded = load_config(config)
    schedulers: list[Scheduler] = []

    class MeasuredDaemon(Daemon):
        def _new_scheduler(self, http: Any) -> Scheduler:
            scheduler = super()._new_scheduler(http)
            scheduler.stats.keep_lags = True
            schedulers.append(scheduler)
            return scheduler

    daemon = MeasuredDaemon(loaded)
    marks: dict[str, float] = {}

    async def main() -> None:
        task = asyncio.create_task(daemon.run())
        started = time.monotonic()
        marks["start_cpu"] = _cpu_s()
        await asyncio.sleep(warmup_s)
        stats = schedulers[0].stats if schedulers else None
        marks["warm_cpu"] = _cpu_s()
        marks["warm_checks"] = stats.checks_started if stats else 0
        marks["warm_lags"] = len(stats.lags_s) if stats else 0
        await asyncio.sleep(max(0.0, duration_s - (time.monotonic() - started)))
        marks["end_cpu"] = _cpu_s()
        marks["end_checks"] = schedulers[0].stats.checks_started if schedulers else 0
        os.kill(os.getpid(), signal.SIGTERM)
        await task

    asyncio.run(main())
    stats = schedulers[0].stats
    steady_lags = stats.lags_s[int(marks["warm_lags"]) :]
    steady_checks = marks["end_checks"] - marks["warm_checks"]
    store = loaded.config.store.open(loaded.base_dir)
    rows = store.count_results()
    store.close()
    return {
        "checks_run": stats.checks_started,
        "rows_written": rows,
        "skipped_busy": stats.checks_skipped_busy,
        "write_failures": stats.write_failures,
        "lag_p50_ms": _percentile(stats.lags_s, 0.50) * 1000,
        "lag_p99_ms": _percentile(stats.lags_s, 0.99) * 1000,
        "lag_max_ms": max(stats.lags_s, default=float("nan")) * 1000,
        "steady_lag_p99_ms": _percentile(steady_lags, 0.99) * 1000,
        "cpu_ms_per_check_steady": (marks["end_cpu"] - marks["warm_cpu"]) * 1000 / steady_checks
        if steady_checks
        else float("nan"),
        "cpu_ms_per_check_total": (marks["end_cpu"] - marks["start_cpu"])
        * 1000
        / stats.checks_started
        if stats.checks_started
        else float("nan"),
        "peak_rss_mb": _peak_rss_mb(),
        "mean_lag_ms": statistics.fmean(stats.lags_s) * 1000 if stats.lags_s else float("nan"),
    }


def measure_floor(base_url: str, n: int, every_s: int, duration_s: float) -> dict[str, Any]:
    """Send the same request rate as N checks every ``every_s`` with bare aiohttp."""
    import aiohttp

    async def main() -> dict[str, Any]:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        limit = asyncio.Semaphore(CONCURRENCY)
        done = 0
        lags: list[float] = []
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(index: int, due: float) -> None:
                nonlocal done
                async with limit:
                    lags.append(time.time() - due)
                    async with session.get(f"{base_url}/health/{index}") as response:
                        await response.read()
                done += 1

            start = time.time()
            cpu = _cpu_s()
            spacing = every_s / n
            tick = 0
            while (now := time.time()) - start < duration_s:
                due = start + tick * spacing
                if due > now:
                    await asyncio.sleep(due - now)
                task = asyncio.create_task(one(tick % n, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                tick += 1
            if tasks:
                await asyncio.gather(*tasks)
            cpu_used = _cpu_s() - cpu
        return {
            "requests": done,
            "cpu_ms_per_request": cpu_used * 1000 / done if done else float("nan"),
            "lag_p99_ms": _percentile(lags, 0.99) * 1000,
            "peak_rss_mb": _peak_rss_mb(),
        }

    return asyncio.run(main())


def drive(args: argparse.Namespace) -> None:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_cpus = [str(cpu) for cpu in cpus[1:]] if len(cpus) > 1 else []
    server = subprocess.Popen(
        [sys.executable, str(HERE / "checks.py"), "--serve", "--workers", "1"]
        + (["--cpus", *server_cpus] if server_cpus else []),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    client_cpu = [str(cpus[0])] if len(cpus) > 1 else []
    results: dict[str, Any] = {}
    try:
        if server.stdout is None:
            raise SystemExit("the server did not start")
        base_url = f"http://{HOST}:{int(server.stdout.readline())}"
        with tempfile.TemporaryDirectory(prefix="upkeep-daemon-bench-") as directory:
            config = write_config(
                Path(directory), args.n, args.every, base_url, f"{HOST}:{_free_port()}"
            )
            results["daemon"] = _child(
                ["--measure", "daemon", "--config", str(config)], args, client_cpu
            )
        if not args.no_floor:
            results["floor"] = _child(
                ["--measure", "floor", "--base-url", base_url],
                args,
                client_cpu,
                duration=args.floor_duration,
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    daemon = results["daemon"]
    print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}; "
        f"N={args.n} HTTP checks every {args.every}s for {args.duration:g}s "
        f"(steady state after {args.warmup:g}s)\n"
        f"upkeep serve: {daemon['checks_run']} checks run, {daemon['rows_written']} rows "
        f"written, {daemon['skipped_busy']} skipped busy, {daemon['write_failures']} failed "
        f"writes\n"
        f"  lag due->start: p50 {daemon['lag_p50_ms']:.1f} ms, p99 {daemon['lag_p99_ms']:.1f} ms"
        f" (steady p99 {daemon['steady_lag_p99_ms']:.1f} ms), max {daemon['lag_max_ms']:.1f} ms\n"
        f"  CPU per check: {daemon['cpu_ms_per_check_steady']:.3f} ms steady, "
        f"{daemon['cpu_ms_per_check_total']:.3f} ms including start-up; "
        f"peak RSS {daemon['peak_rss_mb']:.1f} MB"
    )
    if "floor" in results:
        floor = results["floor"]
        print(
            f"aiohttp floor (same rate, no engine, no store): {floor['requests']} requests, "
            f"CPU {floor['cpu_ms_per_request']:.3f} ms/request, lag p99 "
            f"{floor['lag_p99_ms']:.1f} ms, peak RSS {floor['peak_rss_mb']:.1f} MB"
        )


def _child(
    extra: list[str], args: argparse.Namespace, cpus: list[str], duration: float | None = None
) -> dict[str, Any]:
    argv = [
        sys.executable,
        __file__,
        *extra,
        "--n",
        str(args.n),
        "--every",
        str(args.every),
        "--duration",
        str(duration or args.duration),
        "--warmup",
        str(args.warmup),
    ]
    if cpus:
        argv = ["taskset", "-c", ",".join(cpus), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(extra)} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="checks")
    parser.add_argument("--every", type=int, default=60, help="seconds between runs of a check")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds to run")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before steady state")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare aiohttp floor")
    parser.add_argument(
        "--floor-duration", type=float, default=120.0, help="seconds the floor runs"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--measure", choices=("daemon", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure == "daemon":
        figures = measure_daemon(Path(args.config), args.duration, min(args.warmup, args.duration))
        print(json.dumps(figures))
    elif args.measure == "floor":
        figures = measure_floor(args.base_url, args.n, args.every, args.duration)
        print(json.dumps(figures))
    else:
        drive(args)


if __name__ == "__main__":
    main()
