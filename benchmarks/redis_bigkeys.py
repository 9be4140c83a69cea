"""The Redis ``bigkeys`` probe: what its scan does to the server's command latency.

Loads ``--keys`` keys (default 1,000,000: short strings of 20-200 bytes, plus 20 hashes
of 5,000 fields and 20 strings of 1 MB for the scan to find) into database 15 of the
local Redis, pipelined. Then, in one run, a client in another process issues GET and SET
in a loop, one command at a time on its own connection, and records each round trip:

* **idle**: nothing else for ``--seconds`` (default 15);
* **bigkeys at its defaults**: the probe with default params (5,000 keys/s, SCAN COUNT
  100, MEMORY USAGE SAMPLES 5, 20 s budget) under a 30 s check timeout, but
  ``threshold_bytes: 500000`` so the 1 MB strings count as big;
* **bigkeys unthrottled**: the same with ``max_keys_per_second: 1000000`` and SCAN COUNT
  1000, to show what the rate limit buys.

Latency is recorded only while the probe runs. Prints p50 / p99 / max of each phase,
the probe's figures and the server's own time per call of the commands the probe sends
(INFO commandstats, before and after). Database 15 is flushed at the end (the script
refuses to start if it holds keys). The server's statistics are not reset: the run adds
about 200,000 MEMORY USAGE lookups and the client's GETs to ``keyspace_hits``. Traffic
goes to 127.0.0.1 only.

Usage: .venv/bin/python benchmarks/redis_bigkeys.py [--keys 1000000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from datetime import timedelta
from typing import Any

import redis

from upkeep.core.redaction import Redactor
from upkeep.io.http import HttpClient
from upkeep.probes.base import ProbeContext
from upkeep.probes.redis import BigkeysParams, BigkeysProbe, RedisTarget

URL = "redis://127.0.0.1:6379/15"
CHECK_TIMEOUT = timedelta(seconds=30)


def load(keys: int) -> None:
    """Fill database 15 with ``keys`` small strings plus big hashes and strings."""
    client = redis.Redis.from_url(URL)
    if client.dbsize():
        raise SystemExit("database 15 is not empty: refusing to load (and to flush it later)")
    pipe = client.pipeline(transaction=False)
    batch = 1000
    for start in range(0, keys, batch):
        pipe.mset(
            {
                f"bench:user:{index}:profile": b"v" * (20 + index % 181)
                for index in range(start, min(start + batch, keys))
            }
        )
        if (start // batch) % 50 == 49:
            pipe.execute()
    for index in range(20):
        pipe.hset(f"bench:big-hash:{index}", mapping={f"f{n}": "x" * 40 for n in range(5000)})
        pipe.set(f"bench:big-string:{index}", b"s" * 1_000_000)
    pipe.execute()
    client.close()


def measure(stop: Any, ready: Any, queue: Any) -> None:
    """In its own process: GET/SET one at a time until ``stop`` is set; put the latencies
    (ms)."""
    client = redis.Redis.from_url(URL)
    client.ping()
    ready.set()
    latencies: list[float] = []
    index = 0
    while not stop.is_set():
        started = time.perf_counter()
        if index % 2:
            client.get(f"bench:user:{index % 1000}:profile")
        else:
            client.set("bench:probe:latency", index)
        latencies.append((time.perf_counter() - started) * 1000)
        index += 1
    client.close()
    queue.put(latencies)


def quantile(values: list[float], fraction: float) -> float:
    """Return the value at ``fraction`` of the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def bigkeys(params: dict[str, Any]) -> tuple[dict[str, Any], str, float]:
    """Run the probe once; return its metrics, message and wall time (s)."""
    http = HttpClient()
    context = ProbeContext(timeout=CHECK_TIMEOUT, http=http, redactor=Redactor())
    started = time.monotonic()
    try:
        outcome = await BigkeysProbe().run(
            RedisTarget(kind="redis", url=URL), BigkeysParams.model_validate(params), context
        )
    finally:
        await http.close()
    return dict(outcome.metrics), outcome.message, time.monotonic() - started


def phase(name: str, seconds: float, params: dict[str, Any] | None) -> dict[str, Any]:
    """Measure latency for ``seconds`` (idle), or while the probe runs; return figures."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    stop, ready = context.Event(), context.Event()
    worker = context.Process(target=measure, args=(stop, ready, queue))
    worker.start()
    ready.wait()
    probe: tuple[dict[str, Any], str, float] | None = None
    stats = redis.Redis.from_url(URL)
    before = stats.info("commandstats")
    if params is None:
        time.sleep(seconds)
    else:
        probe = asyncio.run(bigkeys(params))
    stop.set()
    after = stats.info("commandstats")
    stats.close()
    latencies: list[float] = queue.get()
    worker.join()
    figures: dict[str, Any] = {
        "phase": name,
        "commands": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p99_ms": quantile(latencies, 0.99),
        "p999_ms": quantile(latencies, 0.999),
        "max_ms": max(latencies),
    }
    if probe is not None:
        figures["probe"] = probe
        server: list[str] = []
        for command in ("scan", "memory|usage", "type"):
            key = f"cmdstat_{command}"
            calls = after[key]["calls"] - before.get(key, {}).get("calls", 0)
            usec = after[key]["usec"] - before.get(key, {}).get("usec", 0)
            server.append(f"{command}: {calls:,} calls, {usec / max(calls, 1):.2f} us/call")
        figures["server"] = "; ".join(server)
    return figures


def main() -> None:
    """Load, measure the three phases, print, flush database 15."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    started = time.monotonic()
    load(args.keys)
    print(f"loaded {args.keys:,} keys + 40 big ones in {time.monotonic() - started:.1f}s")
    try:
        results = [
            phase("idle", args.seconds, None),
            phase("bigkeys, defaults (5,000 keys/s)", 0, {"threshold_bytes": 500_000}),
            phase(
                "bigkeys, unthrottled",
                0,
                {
                    "threshold_bytes": 500_000,
                    "max_keys_per_second": 1_000_000,
                    "scan_count": 1000,
                },
            ),
        ]
    finally:
        client = redis.Redis.from_url(URL)
        client.flushdb()
        client.close()
    print(f"{'phase':36} {'commands':>9} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7}")
    for row in results:
        print(
            f"{row['phase']:36} {row['commands']:>9,} {row['p50_ms']:>7.3f} "
            f"{row['p99_ms']:>7.3f} {row['p999_ms']:>8.3f} {row['max_ms']:>7.1f}"
        )
    for row in results:
        if "probe" in row:
            metrics, message, wall = row["probe"]
            print(f"{row['phase']}: {wall:.1f}s, {metrics}")
            print(f"  {message}\n  {row['server']}")


if __name__ == "__main__":
    main()
