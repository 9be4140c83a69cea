"""What does a check cost? N HTTP checks through the real engine (evaluate + store) against
a local server, beside a bare aiohttp loop (the floor) and httpx doing the same requests.

Each measurement runs in a fresh interpreter so its peak RSS is its own. The server runs in
a separate process (its CPU is not counted) and serves a small ``200 ok`` with keep-alive
on 127.0.0.1 only. For every variant two rounds run in one process: ``cold`` on a new
client (connections opened as the checks go) and ``warm`` on the same client a round later
(connections pooled), as a long-running scheduler would run them.

The engine measurement writes a real ``upkeep.yaml`` (N targets ``/health/{i}``, each check
with ``warn: response_time_ms > 500`` and ``crit: status_code != 200``) and a SQLite store
in a temporary directory, loads it with ``load_config``, and times only what ``upkeep
check`` does after loading: ``run_checks`` then ``Store.write_results``. Config loading and
opening (migrating) the store are timed separately and not counted per check; the modules
a run needs are imported before the clock starts, as they are in a running daemon.

Usage: .venv/bin/python benchmarks/checks.py [--n 1000 10000] [--repeat 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
SERVER_MAX_LIFETIME_S = 3600
"""The server stops by itself after this long even if nobody tells it to."""
MEASURE_TIMEOUT_S = 1800
VARIANTS = ("engine", "aiohttp", "httpx")
LABELS = {"engine": "upkeep engine", "aiohttp": "aiohttp floor", "httpx": "httpx peer"}
CONCURRENCY = 256
"""The engine's default (``engine.concurrency``); the floors use the same."""


# --- the server -----------------------------------------------------------------------


class _OkProtocol(asyncio.Protocol):
    """Answers every request on a connection with ``200 ok``, keeping the connection open."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.Transport):
            self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        complete = buffer.count(b"\r\n\r\n")  # GETs only: a request ends at the blank line
        if complete and self.transport is not None:
            self.transport.write(RESPONSE * complete)
            buffer = buffer[buffer.rfind(b"\r\n\r\n") + 4 :]
        self.buffer = buffer


async def _serve_forever(listener: socket.socket, parent: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_OkProtocol, sock=listener, backlog=4096)
    deadline = time.monotonic() + SERVER_MAX_LIFETIME_S
    async with server:
        # Stop when the process that started us is gone, or after the lifetime anyway.
        while os.getppid() == parent and time.monotonic() < deadline:
            await asyncio.sleep(0.5)


def _pin(cpus: set[int]) -> None:
    """Keep this process on the given CPUs (where the OS allows it), to steady the figures."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def _split_cpus(pin: bool) -> tuple[set[int], set[int]]:
    """Return (client CPUs, server CPUs): the first CPU for the client, the rest for the server."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(available) < 2:
        return set(), set()
    return {available[0]}, set(available[1:])


def serve(workers: int, cpus: set[int]) -> None:
    """Listen on 127.0.0.1 (a free port, printed), answering with ``workers`` processes."""
    _pin(cpus)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(4096)
    listener.setblocking(False)
    print(listener.getsockname()[1], flush=True)
    parent = os.getppid()
    for _ in range(workers - 1):
        if os.fork() == 0:  # a worker: serves until its parent (this server) is gone
            asyncio.run(_serve_forever(listener, os.getppid()))
            os._exit(0)
    asyncio.run(_serve_forever(listener, parent))


# --- measuring in a fresh interpreter ---------------------------------------------------


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Meter:
    """CPU (user+sys of the whole process) and wall time between ``start`` and ``stop``."""

    def __init__(self) -> None:
        self.cpu = _cpu_s()
        self.wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        return {"cpu_s": _cpu_s() - self.cpu, "wall_s": time.perf_counter() - self.wall}


def _row(n: int, round_name: str, meter: dict[str, float], **extra: Any) -> dict[str, Any]:
    return {
        "n": n,
        "round": round_name,
        "cpu_ms_per_check": meter["cpu_s"] * 1000 / n,
        "wall_s": meter["wall_s"],
        "peak_rss_mb": _peak_rss_mb(),
        **extra,
    }


def write_config(directory: Path, n: int, base_url: str) -> Path:
    """Given a directory, N and the server, write an ``upkeep.yaml`` of N HTTP checks."""
    lines = ['store: "sqlite:///upkeep.db"', "targets:"]
    lines += [f'  t{i}: {{kind: http, url: "{base_url}/health/{i}"}}' for i in range(n)]
    lines.append("checks:")
    lines += [
        f'  c{i}: {{target: t{i}, warn: "response_time_ms > 500", crit: "status_code != 200"}}'
        for i in range(n)
    ]
    path = directory / "upkeep.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def measure_engine(n: int, directory: Path, profile: str | None) -> list[dict[str, Any]]:
    """Given a config directory, run its checks twice through the engine and the store."""
    import aiohttp  # noqa: F401 - imported before the clock starts, as in a running daemon

    from upkeep.config.loader import load_config
    from upkeep.engine.runner import CheckRunner, run_checks, select_checks
    from upkeep.io.http import HttpClient

    setup = Meter()
    loaded = load_config(directory / "upkeep.yaml")
    config_load = setup.stop()
    setup = Meter()
    store = loaded.config.store.open(loaded.base_dir)
    store_open = setup.stop()
    checks = select_checks(loaded.checks.values())
    concurrency = loaded.config.engine.concurrency
    rss_before = _peak_rss_mb()
    rows: list[dict[str, Any]] = []

    def record(round_name: str, run: dict[str, float], results: list[Any]) -> None:
        writing = Meter()
        stored = store.write_results(results)
        store_part = writing.stop()
        total = {key: run[key] + store_part[key] for key in run}
        ok = sum(1 for result in results if result.status == 0)
        rows.append(
            _row(
                n,
                round_name,
                total,
                stored=stored,
                ok=ok,
                store_cpu_ms_per_check=store_part["cpu_s"] * 1000 / n,
                config_load_s=config_load["wall_s"],
                config_load_cpu_s=config_load["cpu_s"],
                store_open_s=store_open["wall_s"],
                rss_before_mb=rss_before,
            )
        )

    with _profiled(profile):
        # Cold: exactly what `upkeep check` does after loading the config.
        meter = Meter()
        results = asyncio.run(run_checks(checks, redactor=loaded.redactor, concurrency=concurrency))
        record("cold", meter.stop(), results)

        async def warm() -> None:
            http = HttpClient()
            runner = CheckRunner(redactor=loaded.redactor, http=http, concurrency=concurrency)
            try:
                store.write_results(await runner.run_many(checks))  # fills the pool
                meter = Meter()
                results = await runner.run_many(checks)
                record("warm", meter.stop(), results)
            finally:
                await http.close()

        asyncio.run(warm())
    rows[-1]["stored_total"] = store.count_results()
    store.close()
    return rows


async def _floor_rounds(
    n: int,
    fetch: Callable[[str], Coroutine[Any, Any, int]],
    base_url: str,
    concurrency: int,
) -> list[dict[str, Any]]:
    limit = asyncio.Semaphore(concurrency)
    urls = [f"{base_url}/health/{i}" for i in range(n)]

    async def one(url: str) -> int:
        async with limit:
            return await fetch(url)

    rows = []
    for round_name in ("cold", "warm"):
        meter = Meter()
        statuses = await asyncio.gather(*(one(url) for url in urls))
        rows.append(_row(n, round_name, meter.stop(), ok=statuses.count(200), stored=0))
    return rows


def measure_aiohttp(n: int, base_url: str, concurrency: int) -> list[dict[str, Any]]:
    """The floor: one aiohttp session, the same requests, the same concurrency."""
    import aiohttp

    async def main() -> list[dict[str, Any]]:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def fetch(url: str) -> int:
                async with session.get(url) as response:
                    await response.read()
                    return response.status

            return await _floor_rounds(n, fetch, base_url, concurrency)

    return asyncio.run(main())


def measure_httpx(n: int, base_url: str, concurrency: int) -> list[dict[str, Any]]:
    """A peer: one httpx AsyncClient, the same requests, the same concurrency."""
    import httpx

    async def main() -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

            async def fetch(url: str) -> int:
                response = await client.get(url)
                return response.status_code

            return await _floor_rounds(n, fetch, base_url, concurrency)

    return asyncio.run(main())


@contextmanager
def _profiled(output: str | None) -> Iterator[None]:
    """Profile the block with cProfile into ``output`` (a .prof file) if one is given."""
    if output is None:
        yield
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(output)


def measure(args: argparse.Namespace) -> None:
    """The child side: run one variant and print its rows as one JSON line."""
    _pin(set(args.cpus))
    if args.measure == "engine":
        rows = measure_engine(args.n[0], Path(args.workdir), args.profile)
    elif args.measure == "aiohttp":
        rows = measure_aiohttp(args.n[0], args.base_url, args.concurrency)
    else:
        rows = measure_httpx(args.n[0], args.base_url, args.concurrency)
    print(json.dumps(rows))


# --- the driver ---------------------------------------------------------------------------


def _have_httpx() -> bool:
    try:
        import httpx  # noqa: F401
    except ImportError:
        return False
    return True


def _server_cpu_s(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        times = member.cpu_times()
        total += times.user + times.system
    return total


def run_variant(
    variant: str, n: int, base_url: str, server_pid: int, *, profile: str | None, cpus: set[int]
) -> list[dict[str, Any]]:
    """Given a variant and N, measure it in a fresh interpreter and return its rows."""
    with tempfile.TemporaryDirectory(prefix="upkeep-bench-") as directory:
        if variant == "engine":
            write_config(Path(directory), n, base_url)
        argv = [
            sys.executable,
            __file__,
            "--measure",
            variant,
            "--n",
            str(n),
            "--base-url",
            base_url,
            "--workdir",
            directory,
            "--concurrency",
            str(CONCURRENCY),
        ]
        if profile:
            argv += ["--profile", profile]
        if cpus:
            argv += ["--cpus", *map(str, sorted(cpus))]
        server_before = _server_cpu_s(server_pid)
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=MEASURE_TIMEOUT_S, check=False
        )
        server_cpu = _server_cpu_s(server_pid) - server_before
    if done.returncode != 0:
        raise SystemExit(f"{variant} N={n} failed:\n{done.stderr}")
    rows: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    for row in rows:
        row["variant"] = variant
        row["server_cpu_ms_per_request"] = (
            server_cpu * 1000 / (n * (3 if variant == "engine" else 2))
        )
    return rows


def _median_run(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Given repeated runs of one variant, return the one whose warm CPU is the median."""
    ordered = sorted(runs, key=lambda rows: rows[-1]["cpu_ms_per_check"])
    chosen = ordered[(len(ordered) - 1) // 2]
    for index, row in enumerate(chosen):
        row["cpu_ms_per_check_all"] = [rows[index]["cpu_ms_per_check"] for rows in runs]
    return chosen


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'N':>6}  {'variant':<14} {'round':<5} {'CPU ms/check':>12} {'of it store':>11}"
        f" {'wall s':>7} {'peak RSS MB':>11} {'rows stored':>11} {'ok':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        store = row.get("store_cpu_ms_per_check")
        print(
            f"{row['n']:>6}  {LABELS[row['variant']]:<14} {row['round']:<5}"
            f" {row['cpu_ms_per_check']:>12.3f} {'' if store is None else f'{store:.3f}':>11}"
            f" {row['wall_s']:>7.2f} {row['peak_rss_mb']:>11.1f} {row['stored']:>11} {row['ok']:>6}"
        )
    for row in rows:
        if row["variant"] == "engine" and row["round"] == "cold":
            print(
                f"N={row['n']}: config load {row['config_load_s']:.2f} s wall "
                f"({row['config_load_cpu_s']:.2f} s CPU), store open {row['store_open_s']:.2f} s, "
                f"RSS after load {row['rss_before_mb']:.1f} MB; "
                f"server CPU {row['server_cpu_ms_per_request']:.3f} ms/request (not counted)"
            )


def drive(args: argparse.Namespace) -> None:
    variants = [variant for variant in args.variants if variant != "httpx" or _have_httpx()]
    if "httpx" in args.variants and "httpx" not in variants:
        print("httpx is not installed: skipping the httpx peer", file=sys.stderr)
    client_cpus, server_cpus = _split_cpus(not args.no_pin)
    server_argv = [sys.executable, __file__, "--serve", "--workers", str(args.server_workers)]
    if server_cpus:
        server_argv += ["--cpus", *map(str, sorted(server_cpus))]
    server = subprocess.Popen(
        server_argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if server.stdout is None:
            raise SystemExit("the server did not start")
        base_url = f"http://{HOST}:{int(server.stdout.readline())}"
        rows: list[dict[str, Any]] = []
        for n in args.n:
            for variant in variants:
                profile = (
                    f"{args.profile}.{n}.prof" if args.profile and variant == "engine" else None
                )
                runs = [
                    run_variant(variant, n, base_url, server.pid, profile=profile, cpus=client_cpus)
                    for _ in range(args.repeat)
                ]
                rows += _median_run(runs)
    finally:
        server.terminate()
        server.wait(timeout=10)
    machine = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "server_workers": args.server_workers,
        "concurrency": CONCURRENCY,
        "repeat": args.repeat,
        "client_cpus": sorted(client_cpus),
        "server_cpus": sorted(server_cpus),
        "load_average_at_end": os.getloadavg(),
    }
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}, indent=2))
    else:
        print(
            f"{machine['nproc']} CPUs, Python {machine['python']}, {machine['platform']}; "
            f"concurrency {CONCURRENCY}; median of {args.repeat} run(s) by warm CPU; "
            f"client on CPU {machine['client_cpus'] or 'any'}, server on {machine['server_cpus'] or 'any'}"
        )
        print_table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000], help="checks per run")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="what to measure"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure (median shown)")
    parser.add_argument("--server-workers", type=int, default=1, help="server processes")
    parser.add_argument("--profile", help="cProfile the engine runs into PREFIX.N.prof")
    parser.add_argument(
        "--no-pin", action="store_true", help="don't pin client and server to separate CPUs"
    )
    parser.add_argument("--cpus", type=int, nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.workers, set(args.cpus))
    elif args.measure:
        measure(args)
    else:
        drive(args)


if __name__ == "__main__":
    main()
