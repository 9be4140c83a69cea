"""The public status page with 100 components: how long it takes to answer, how big it is.

Seeds a SQLite store (in a temporary directory) with ``--components`` components of one
check each, a result every ``--every-minutes`` for ``--days`` days, a few incidents per
component (one still open), published updates, and a weekly maintenance window muting a
tenth of the checks; then serves the daemon's app with uvicorn on 127.0.0.1 and measures:

* the cold build: the first ``/status`` (loads the whole history once and computes every
  component's daily bars);
* ``--requests`` further ``GET /status`` (and ``/status.json``, a badge): p50/p95/max of
  the time to the whole answer on loopback, which is the server's time plus a loopback
  round trip; snapshots are rebuilt every 30 s, so a rebuild falls inside the sample when
  the run is longer than that (``--rebuild`` forces one every N requests to show it);
* the page's size, raw and gzipped (what a browser that sends ``Accept-Encoding: gzip``
  receives);
* a snapshot built from nothing, then rebuilt (what the daemon does in the background
  every 30 s, reading only the hours since the last build; readers keep getting the
  previous snapshot meanwhile).

Targets (issue #14): p95 < 50 ms, page < 100 KB. No peer is measured: Cachet, Gatus and
Uptime Kuma are services of their own and none can be installed or run here offline.

Usage: .venv/bin/python benchmarks/status_page.py [--components 100] [--days 90]
       [--every-minutes 15] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

from upkeep.config.loader import load_config
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.engine.metrics import DaemonMetrics
from upkeep.store.alerts import AlertState, CheckState
from upkeep.store.updates import publish_update
from upkeep.web.app import DaemonState, create_app
from upkeep.web.status.figures import ReportedHours
from upkeep.web.status.page import build_snapshot

TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 - a token for the benchmark's own daemon


def write_config(directory: Path, components: int) -> Path:
    """Write a config of ``components`` http checks, one component each."""
    lines = [
        f'engine: {{api_tokens: {{bench: "{TOKEN}"}}}}',
        "targets:",
        '  box: {kind: http, url: "http://127.0.0.1:9/"}',
        "checks:",
    ]
    lines += [
        f"  svc-{index:03d}: {{target: box, labels: {{group: g{index % 10}}}}}"
        for index in range(components)
    ]
    lines += [
        "windows:",
        "  weekly:",
        '    schedule: "0 3 * * SUN"',
        "    duration: 2h",
        "    description: weekly database maintenance",
        "    mute: {labels: {group: g0}}",
        "status_page:",
        "  enabled: true",
        "  title: Benchmark status",
        "  components:",
    ]
    lines += [
        f"    - {{name: service-{index:03d}, checks: [svc-{index:03d}]}}"
        for index in range(components)
    ]
    path = directory / "upkeep.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def seed(state: DaemonState, components: int, days: int, every: timedelta, now: datetime) -> int:
    """Fill the store; return the number of results written."""
    store = state.store
    start = now - timedelta(days=days)
    written = 0
    for index in range(components):
        name = f"svc-{index:03d}"
        batch: list[CheckResult] = []
        moment = start
        while moment < now:
            batch.append(
                CheckResult(
                    name, "box", "http.request", Status.OK, {}, "", 80.0 + index % 40, moment
                )
            )
            moment += every
        for offset in range(0, len(batch), 20_000):
            written += store.write_results(batch[offset : offset + 20_000])
        with store.alerts.transaction() as connection:
            for number in range(3):
                opened = now - timedelta(days=(index * 7 + number * 23) % days, hours=number + 1)
                resolved = opened + timedelta(minutes=10 + 17 * number)
                alert_id = store.alerts.insert_alert(
                    connection,
                    check=name,
                    target="box",
                    severity="P2",
                    labels={},
                    state=AlertState.FIRING,
                    status=Status.CRITICAL,
                    message="crit: status_code != 200 (status_code=503)",
                    opened_at=opened,
                    fired_at=opened,
                    last_result_at=opened,
                )
                still_open = index % 50 == 0 and number == 2
                if not still_open:
                    store.alerts.update_alert(
                        connection, alert_id, state=AlertState.RESOLVED, resolved_at=resolved
                    )
            store.alerts.save_states(
                connection, [CheckState(check=name, last_status=Status.OK, last_at=now)], set()
            )
        if index % 10 == 0:
            publish_update(store.engine, alert_id, "We are looking into it.", "user:bench", now)
    return written


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(base: str, requests: int, state: DaemonState, rebuild: int) -> None:
    from upkeep.web.status import routes

    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        started = time.perf_counter()
        first = await client.get("/status")
        cold = time.perf_counter() - started
        first.raise_for_status()
        gzipped = await client.get("/status", headers={"accept-encoding": "gzip"})
        raw = await client.get("/status", headers={"accept-encoding": "identity"})
        print(f"cold build + first answer: {cold * 1000:.0f} ms")
        print(
            f"page size: {len(raw.content) / 1024:.1f} KiB raw, "
            f"{int(gzipped.headers['content-length']) / 1024:.1f} KiB gzipped"
        )
        for path in ("/status", "/status.json", "/status/badge/service-001/uptime.svg?period=30d"):
            times: list[float] = []
            for number in range(requests):
                if rebuild and number and number % rebuild == 0:
                    # Age the snapshot so the next request rebuilds it.
                    routes.SNAPSHOT_TTL_S = 0.0
                started = time.perf_counter()
                answer = await client.get(path, headers={"accept-encoding": "gzip"})
                times.append((time.perf_counter() - started) * 1000)
                routes.SNAPSHOT_TTL_S = 30.0
                answer.raise_for_status()
            print(
                f"{path}: p50 {percentile(times, 0.5):.1f} ms, p95 {percentile(times, 0.95):.1f} ms, "
                f"max {max(times):.1f} ms over {requests}"
            )
    del state


def rebuilds(state: DaemonState) -> None:
    """Time a snapshot built from nothing and one built after it (what the daemon does
    every 30 s: reported hours read only since the last build)."""
    hours = ReportedHours()
    for label in ("full build (all hours read)", "rebuild (recent hours read)"):
        started = time.perf_counter()
        build_snapshot(state.loaded, state.store, datetime.now(UTC), hours)
        print(f"{label}: {(time.perf_counter() - started) * 1000:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=100)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--every-minutes", type=float, default=15.0)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument(
        "--rebuild", type=int, default=0, help="force a snapshot rebuild every N requests"
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        config_path = write_config(Path(directory), arguments.components)
        loaded = load_config(config_path)
        store = loaded.config.store.open(loaded.base_dir)
        state = DaemonState(
            instance_id="bench:1:x", loaded=loaded, store=store, metrics=DaemonMetrics()
        )
        now = datetime.now(UTC)
        started = time.perf_counter()
        written = seed(
            state,
            arguments.components,
            arguments.days,
            timedelta(minutes=arguments.every_minutes),
            now,
        )
        print(
            f"seeded {written} results, {arguments.components * 3} incidents over "
            f"{arguments.days} days in {time.perf_counter() - started:.0f} s"
        )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(state), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            asyncio.run(
                measure(f"http://127.0.0.1:{port}", arguments.requests, state, arguments.rebuild)
            )
            rebuilds(state)
        finally:
            server.should_exit = True
            thread.join(10)
            store.close()
    print("peers: none run (Cachet, Gatus, Uptime Kuma need their own services; offline here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
