"""Redis targets: reachability, memory and keyspace statistics.

Each probe opens one client, sends one or two commands and closes it. The client does not
retry: a probe is a single measurement, and retries would both hide a flaky server and
multiply the check's timeout. ``redis.asyncio`` is imported lazily for CLI start-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from upkeep.core.redaction import SecretMarker
from upkeep.core.results import MetricValue
from upkeep.core.text import format_bytes, one_line
from upkeep.probes.base import (
    MetricSpec,
    NoParams,
    Probe,
    ProbeContext,
    ProbeOutcome,
    TargetBase,
    TargetUnreachable,
    metrics_from,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis


class RedisTarget(TargetBase):
    """A Redis (or Valkey, KeyDB) server: ``redis://[user:password@]host:port/db``."""

    kind: Literal["redis"] = "redis"
    url: Annotated[str, SecretMarker(part="password"), Field(pattern=r"^(rediss?|unix)://")]


@asynccontextmanager
async def _client(target: RedisTarget, context: ProbeContext) -> AsyncIterator[Redis]:
    """Given a target, yield a client for it and close it (and its pool) afterwards.

    Everything done with the client must finish within ``context.timeout_s``. Raise
    TargetUnreachable if the server refuses, rejects the login, drops the connection or
    does not answer in time; other errors (a command the server denies) propagate.
    """
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    client = Redis.from_url(
        target.url,
        socket_connect_timeout=context.timeout_s,
        socket_timeout=context.timeout_s,
        retry=Retry(NoBackoff(), 0),
        client_name="upkeep",
    )
    try:
        async with asyncio.timeout(context.timeout_s):
            yield client
    # redis-py's AuthenticationError is a ConnectionError, so a rejected login lands here.
    except (RedisTimeoutError, TimeoutError) as error:
        raise TargetUnreachable(f"Redis did not answer within {context.timeout_s:g}s") from error
    except RedisConnectionError as error:
        raise TargetUnreachable(f"cannot reach Redis: {one_line(error)}") from error
    finally:
        await client.aclose()


def _number(info: dict[str, Any], key: str) -> float:
    """Given an INFO section and a field, return it as a number; KeyError if absent."""
    return float(info[key])


class PingProbe(Probe[RedisTarget, NoParams]):
    """Send PING and time the answer."""

    target_kind: ClassVar[str] = "redis"
    name: ClassVar[str] = "ping"
    summary: ClassVar[str] = "PING the server: round-trip time on an open connection."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("latency_ms", "number", "round trip of PING on an open connection"),
    )

    async def run(
        self, target: RedisTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return the PING round trip; raise TargetUnreachable if down."""
        async with _client(target, context) as client:
            started = time.perf_counter()
            # The client connects (and authenticates) lazily on its first command, so the
            # first PING measures connecting and the second the server's round trip.
            await client.ping()
            connected = time.perf_counter()
            await client.ping()
            answered = time.perf_counter()
        latency_ms = (answered - connected) * 1000
        connect_ms = (connected - started) * 1000
        return ProbeOutcome(
            metrics_from({"latency_ms": latency_ms}),
            message=f"PONG in {latency_ms:.1f} ms (connect {connect_ms:.1f} ms)",
        )


class MemoryProbe(Probe[RedisTarget, NoParams]):
    """Report memory use against the server's limit."""

    target_kind: ClassVar[str] = "redis"
    name: ClassVar[str] = "memory"
    summary: ClassVar[str] = "Memory used, its share of maxmemory (or RAM), and fragmentation."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("used_bytes", "number", "used_memory: bytes allocated by Redis"),
        MetricSpec(
            "used_percent",
            "number",
            "used_bytes as a percentage of maxmemory, or of system RAM when maxmemory is 0",
        ),
        MetricSpec("fragmentation_ratio", "number", "mem_fragmentation_ratio: RSS / used_memory"),
    )

    async def run(
        self, target: RedisTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return its memory use; raise TargetUnreachable if down.

        ``used_percent`` is relative to ``maxmemory``; without a limit, to the host's
        memory as Redis reports it. If the server reports neither (some managed services
        hide ``total_system_memory``) the metric is left out and the message says so.
        """
        async with _client(target, context) as client:
            info = await client.info("memory")
        used = int(_number(info, "used_memory"))
        limit = int(info.get("maxmemory", 0) or 0)
        system = int(info.get("total_system_memory", 0) or 0)
        metrics: dict[str, MetricValue] = {
            "used_bytes": used,
            "fragmentation_ratio": _number(info, "mem_fragmentation_ratio"),
        }
        if limit:
            metrics["used_percent"] = used / limit * 100.0
            basis = f"of maxmemory {format_bytes(limit)}"
        elif system:
            metrics["used_percent"] = used / system * 100.0
            basis = f"of system memory {format_bytes(system)} (no maxmemory set)"
        else:
            basis = "(no maxmemory set and system memory not reported: used_percent unknown)"
        percent = metrics.get("used_percent")
        shown = f"{percent:.2f}% " if isinstance(percent, float) else ""
        return ProbeOutcome(
            metrics_from(metrics),
            message=(
                f"{format_bytes(used)} used, {shown}{basis}; "
                f"fragmentation {metrics['fragmentation_ratio']:.2f}"
            ),
        )


class StatsProbe(Probe[RedisTarget, NoParams]):
    """Report keyspace hit rate, evictions, clients and key count."""

    target_kind: ClassVar[str] = "redis"
    name: ClassVar[str] = "stats"
    summary: ClassVar[str] = "Keyspace hit rate since stats reset, evictions, clients and keys."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec(
            "hit_rate_percent", "number", "keyspace_hits / (hits + misses); 100 with no lookups"
        ),
        MetricSpec("evicted_keys", "number", "keys evicted for maxmemory since stats reset"),
        MetricSpec("connected_clients", "number", "client connections, this probe included"),
        MetricSpec("keys", "number", "keys in all databases"),
    )

    async def run(
        self, target: RedisTarget, params: NoParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return its keyspace statistics; raise TargetUnreachable if down.

        Hit rate is since the server's last stats reset; with no lookups yet nothing has
        missed, so it is 100.0.
        """
        async with _client(target, context) as client:
            # One INFO without a section returns stats, clients and keyspace together.
            info = await client.info()
        hits = int(_number(info, "keyspace_hits"))
        misses = int(_number(info, "keyspace_misses"))
        lookups = hits + misses
        hit_rate = hits / lookups * 100.0 if lookups else 100.0
        # redis-py parses each "dbN:keys=..,expires=.." line of the keyspace section into
        # a dict under the key "dbN".
        keys = sum(
            int(value["keys"])
            for name, value in info.items()
            if name.startswith("db") and name[2:].isdigit() and isinstance(value, dict)
        )
        evicted = int(_number(info, "evicted_keys"))
        clients = int(_number(info, "connected_clients"))
        return ProbeOutcome(
            metrics_from(
                {
                    "hit_rate_percent": hit_rate,
                    "evicted_keys": evicted,
                    "connected_clients": clients,
                    "keys": keys,
                }
            ),
            message=(
                f"hit rate {hit_rate:.2f}% over {lookups} lookups, {evicted} evicted, "
                f"{clients} clients, {keys} keys"
            ),
        )
