"""The dashboard's overview with 1,000 checks: server time per request and page size.

Seeds a SQLite store in a temporary directory with ``--checks`` checks (labels env,
region, role), each with a result every ``--interval`` seconds over the last ``--hours``
hours, one result 30 days ago (so the 7 d and 30 d uptime figures cover a month), check
states, and incidents (5% of the checks, a few resolved ones each over 30 days, plus open
ones). Then serves the real app (``create_app`` under uvicorn with the daemon's protocol
settings) in a child process, so the client's work is not counted, and measures:

* the overview ``/``: the first request (nothing cached: the 24-hour strips are read and
  the uptime figures computed) and then ``--requests`` requests one after another: p50,
  p95, max of the time from sending the request to the last byte (client) and of the
  server's own ``Server-Timing`` (route entry to rendered page), the page's size
  uncompressed and as sent gzip-compressed; the machine's load average beside them (on a
  shared machine the wall times carry everyone else's work too);
* the overview once the uptime figures have aged out (``UPTIME_MAX_AGE_S``): they are
  recomputed in a background thread, which competes for the interpreter meanwhile;
* the live poll ``/ui/live?after=cursor`` (nothing new, and with one new result per check);
* the newest-result-per-check query alone (``latest_results``), in this process.

No peer runs here: Uptime Kuma and Gatus are not installable offline, so the figures stand
against the issue's budget (p95 < 150 ms, page < 300 KB), not against another tool.

A full collection of Python's garbage collector walks every object the daemon holds (some
165,000 once matplotlib, SQLAlchemy and the config are loaded), 100 ms and more; the
overview reuses its rendered rows so that it allocates too little to cause one often.
``--freeze-gc`` moves the daemon's objects out of the collector's sight after start
(``gc.freeze()``) to show what remains.

Usage: .venv/bin/python benchmarks/dashboard.py [--checks 1000] [--hours 24]
       [--interval 300] [--requests 200] [--freeze-gc]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
TOKEN = "bench-token-for-the-dashboard-0001"  # noqa: S105 - a throwaway server's token
ENVS = ("prod", "staging", "dev")
REGIONS = ("eu", "us", "ap")
ROLES = ("api", "db", "cache", "web")
MESSAGES = ("connected in 3 ms", "HTTP 200 in 45 ms", "12 connections of 100", "PONG")


def config_text(checks: int) -> str:
    """Return an upkeep.yaml with one token, ``checks // 10`` targets and ``checks`` checks."""
    lines = [
        f'engine: {{api_tokens: {{bench: "{TOKEN}"}}}}',
        "targets:",
    ]
    targets = max(1, checks // 10)
    for index in range(targets):
        lines.append(f"  host-{index:04d}: {{kind: tcp, host: 127.0.0.1, port: 1}}")
    lines.append("checks:")
    for index in range(checks):
        env, region, role = (
            ENVS[index % 3],
            REGIONS[(index // 3) % 3],
            ROLES[(index // 9) % 4],
        )
        lines.append(
            f"  {role}-{region}-{env}-{index:04d}: {{target: host-{index % targets:04d}, "
            f"labels: {{env: {env}, region: {region}, role: {role}}}}}"
        )
    return "\n".join(lines) + "\n"


def seed(directory: Path, checks: int, hours: int, interval_s: int) -> dict[str, Any]:
    """Write the config and fill its store; return what was written."""
    from sqlalchemy import insert

    from upkeep.config.loader import load_config
    from upkeep.core.results import CheckResult
    from upkeep.core.status import Status
    from upkeep.store.schema import alerts, check_states

    path = directory / "upkeep.yaml"
    path.write_text(config_text(checks), encoding="utf-8")
    loaded = load_config(path, environ={})
    store = loaded.config.store.open(loaded.base_dir)
    now = datetime.now(UTC).replace(microsecond=0)
    compiled = list(loaded.checks.values())
    started = time.monotonic()

    def result(index: int, at: datetime, status: Status) -> CheckResult:
        check = compiled[index]
        return CheckResult(
            check.name,
            check.target_name,
            check.probe_name,
            status,
            {"connect_ms": 3.0 + index % 7},
            MESSAGES[index % len(MESSAGES)] if status is Status.OK else "connection refused",
            3.0 + index % 7,
            at,
            labels=dict(check.labels),
        )

    failing = {index for index in range(checks) if index % 20 == 7}
    open_now = {index for index in failing if index % 40 == 7}
    store.write_results(
        [result(index, now - timedelta(days=30), Status.OK) for index in range(checks)]
    )
    rows = checks
    moment = now - timedelta(hours=hours)
    while moment < now:
        batch = [
            result(
                index,
                moment,
                Status.CRITICAL
                if index in open_now and moment > now - timedelta(minutes=40)
                else Status.OK,
            )
            for index in range(checks)
        ]
        store.write_results(batch)
        rows += len(batch)
        moment += timedelta(seconds=interval_s)
    incidents = 0
    with store.engine.begin() as connection:
        states = []
        for index, check in enumerate(compiled):
            bad = index in open_now
            states.append(
                {
                    "check": check.name,
                    "history": "o" * 20 + ("c" if bad else "o"),
                    "flapping": False,
                    "consecutive_bad": 1 if bad else 0,
                    "consecutive_ok": 0 if bad else 1,
                    "bad_since": now - timedelta(minutes=40) if bad else None,
                    "last_status": 2 if bad else 0,
                    "last_at": now,
                }
            )
        connection.execute(insert(check_states), states)
        values = []
        for index in sorted(failing):
            check = compiled[index]
            for day in (2, 9, 23):
                opened = now - timedelta(days=day, minutes=index % 50)
                values.append(
                    _alert_row(check, opened, opened + timedelta(minutes=12), active=None)
                )
            if index in open_now:
                values.append(
                    _alert_row(check, now - timedelta(minutes=40), None, active=check.name)
                )
        connection.execute(insert(alerts), values)
        incidents = len(values)
    store.close()
    return {
        "results": rows,
        "incidents": incidents,
        "open": len(open_now),
        "seed_s": time.monotonic() - started,
        "path": path,
    }


def _alert_row(
    check: Any, opened: datetime, resolved: datetime | None, active: str | None
) -> dict[str, Any]:
    return {
        "check": check.name,
        "target": check.target_name,
        "severity": check.severity,
        "labels": dict(check.labels),
        "state": "firing" if resolved is None else "resolved",
        "status": 2,
        "message": "connection refused",
        "active": active,
        "opened_at": opened,
        "fired_at": opened + timedelta(minutes=2),
        "resolved_at": resolved,
        "last_result_at": resolved or opened,
        "flapping": False,
        "routing": {},
        "response_missed": False,
    }


def serve(config: str, port: int, freeze_gc: bool) -> None:
    """Serve the app for ``config`` on ``port`` until killed (the child process); with
    ``freeze_gc``, move everything alive once the app is built out of the collector's
    sight (``gc.freeze``), as a daemon may do after it started."""
    import asyncio

    import uvicorn

    from upkeep.config.loader import load_config
    from upkeep.engine.metrics import DaemonMetrics
    from upkeep.web.app import DaemonState, create_app
    from upkeep.web.server import connection_limits, protocol_for, raise_open_file_limit

    loaded = load_config(Path(config), environ={})
    store = loaded.config.store.open(loaded.base_dir)
    state = DaemonState(instance_id="bench:1", loaded=loaded, store=store, metrics=DaemonMetrics())
    state.listen = f"{HOST}:{port}"
    limits = connection_limits(loaded.config.engine.http, raise_open_file_limit())
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(state),
            host=HOST,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            http=protocol_for(limits),
            server_header=False,
        )
    )
    if freeze_gc:
        import gc

        gc.collect()
        gc.freeze()
    asyncio.run(server.serve())


def free_port() -> int:
    """Return a TCP port free on the loopback address."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


SERVER_TIMES: list[float] = []
"""The overview's own measure of each request (its ``Server-Timing`` header), seconds."""
SERVER_CPU: list[float] = []
"""The server process's CPU time over each overview request, seconds."""


def timed_get(client: Any, path: str) -> tuple[float, int, str]:
    """GET ``path`` uncompressed; return the seconds to the last byte, the body's size and
    its text (and note the server's own time when it says it)."""
    started = time.perf_counter()
    response = client.get(path, headers={"Accept-Encoding": "identity"})
    body = response.content
    took = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
    timing = dict(
        part.strip().split(";dur=")
        for part in response.headers.get("server-timing", "").split(",")
        if ";dur=" in part
    )
    if "page" in timing:
        SERVER_TIMES.append(float(timing["page"]) / 1000)
        SERVER_CPU.append(float(timing["cpu"]) / 1000)
    return took, len(body), response.text


def percentile(values: list[float], share: float) -> float:
    """Return the nearest-rank percentile of ``values`` (0 < share <= 1)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def report(name: str, samples: list[float]) -> None:
    """Print p50, p95 and max of samples in milliseconds."""
    print(
        f"{name}: n={len(samples)} p50 {statistics.median(samples) * 1000:.1f} ms, "
        f"p95 {percentile(samples, 0.95) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms"
    )


def measure(
    client: Any, store: Any, loaded: Any, newest: Any, requests: int
) -> tuple[float, float, int]:
    """Measure the served app through ``client``; return the server's p95 wall and CPU
    time over the overview requests (seconds) and the page's uncompressed size."""
    from upkeep.core.results import CheckResult
    from upkeep.web.ui.routes import UPTIME_MAX_AGE_S

    cold, size, page = timed_get(client, "/")
    # What travels: httpx asks for gzip and counts the bytes before decoding.
    compressed = client.get("/", headers={"Accept-Encoding": "gzip"}).num_bytes_downloaded
    rows = page.count('<tr class="r-')
    print(f"overview, first request (strips read, uptime computed): {cold * 1000:.1f} ms")
    print(
        f"overview page: {size} bytes ({size / 1024:.1f} KiB) of HTML, {rows} check "
        f"rows; {compressed} bytes ({compressed / 1024:.1f} KiB) sent gzip-compressed"
    )
    SERVER_TIMES.clear()
    SERVER_CPU.clear()
    load_before = os.getloadavg()[0]
    warm = [timed_get(client, "/")[0] for _ in range(requests)]
    report("overview, one request after another (client: to the last byte)", warm)
    server = list(SERVER_TIMES)
    report("overview, the same requests (server: Server-Timing, wall)", server)
    report("overview, the same requests (server: CPU time of its process)", list(SERVER_CPU))
    print(
        f"load average (1 min) before and after: {load_before:.2f}, "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    time.sleep(UPTIME_MAX_AGE_S + 0.5)
    aged, _, _ = timed_get(client, "/")
    time.sleep(2.0)
    refreshed, _, _ = timed_get(client, "/")
    print(
        f"overview once the uptime figures aged out ({UPTIME_MAX_AGE_S:g} s; refreshed "
        f"in the background): {aged * 1000:.1f} ms, the next one {refreshed * 1000:.1f} ms"
    )
    filtered = [timed_get(client, "/?label=env%3Dprod&status=ok")[0] for _ in range(20)]
    report("overview filtered (env=prod, status ok)", filtered)

    cursor = client.get("/ui/live").json()["cursor"]
    idle = [timed_get(client, f"/ui/live?after={cursor}")[0] for _ in range(100)]
    report("live poll, nothing new", idle)
    now = datetime.now(UTC)
    store.write_results(
        [
            CheckResult(
                check.name,
                check.target_name,
                check.probe_name,
                newest[check.name].status,
                {},
                "fresh",
                1.0,
                now,
                labels=dict(check.labels),
            )
            for check in loaded.checks.values()
        ]
    )
    took, body_size, _ = timed_get(client, f"/ui/live?after={cursor}")
    print(
        f"live poll with one new result per check ({len(newest)}): "
        f"{took * 1000:.1f} ms, {body_size} bytes"
    )
    return percentile(server, 0.95), percentile(SERVER_CPU, 0.95), size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--interval", type=int, default=300, help="seconds between results")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--freeze-gc",
        action="store_true",
        help="gc.freeze() in the server once the app is built (what a daemon may do)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve, arguments.port, arguments.freeze_gc)
        return 0

    import httpx

    from upkeep.config.loader import load_config
    from upkeep.reports.views import latest_results

    with tempfile.TemporaryDirectory(prefix="upkeep-bench-dashboard-") as work:
        seeded = seed(Path(work), arguments.checks, arguments.hours, arguments.interval)
        print(
            f"seeded {arguments.checks} checks: {seeded['results']} results "
            f"({arguments.hours} h every {arguments.interval} s, one 30 d ago), "
            f"{seeded['incidents']} incidents ({seeded['open']} open) in {seeded['seed_s']:.1f} s"
        )
        loaded = load_config(seeded["path"], environ={})
        store = loaded.config.store.open(loaded.base_dir)
        query_times = []
        for _ in range(50):
            started = time.perf_counter()
            newest = latest_results(store.engine, loaded.redactor)
            query_times.append(time.perf_counter() - started)
        if len(newest) != arguments.checks:
            raise RuntimeError(f"{len(newest)} checks have a newest result, not {arguments.checks}")
        report("newest result per check (latest_results, in process)", query_times)

        port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        child = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(seeded["path"]),
                "--port",
                str(port),
                *(["--freeze-gc"] if arguments.freeze_gc else []),
            ],
            env=env,
        )
        try:
            client = httpx.Client(
                base_url=f"http://{HOST}:{port}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=60,
            )
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or child.poll() is not None:
                        raise
                    time.sleep(0.1)
            p95, cpu95, size = measure(client, store, loaded, newest, arguments.requests)
            client.close()
        finally:
            child.terminate()
            child.wait(timeout=30)
            store.close()
    print(
        f"budget: server p95 < 150 ms: {'met' if p95 < 0.150 else 'NOT met'} "
        f"(wall {p95 * 1000:.1f} ms, CPU {cpu95 * 1000:.1f} ms); page < 300 KB: "
        f"{'met' if size < 300 * 1024 else 'NOT met'} ({size / 1024:.1f} KiB uncompressed); "
        "no peer measured (Uptime Kuma, Gatus: not installable offline)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
