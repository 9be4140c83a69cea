"""Redis targets: reachability, memory, keyspace statistics, big keys and health.

Each probe opens one client, sends one or two commands and closes it. The client does not
retry: a probe is a single measurement, and retries would both hide a flaky server and
multiply the check's timeout. ``redis.asyncio`` is imported lazily for CLI start-up.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from upkeep.core.durations import Duration, format_duration
from upkeep.core.models import StrictModel
from upkeep.core.redaction import SecretMarker
from upkeep.core.results import MetricValue
from upkeep.core.text import format_bytes, human_duration, one_line
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
async def redis_client(url: str, timeout_s: float) -> AsyncIterator[Redis]:
    """Given a server's URL and a time limit, yield a client for it and close it (and its
    pool) afterwards.

    Everything done with the client must finish within ``timeout_s``. Raise
    TargetUnreachable if the server refuses, rejects the login, drops the connection or
    does not answer in time; other errors (a command the server denies) propagate.
    """
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    client = Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        client_name="upkeep",
    )
    try:
        async with asyncio.timeout(timeout_s):
            yield client
    # redis-py's AuthenticationError is a ConnectionError, so a rejected login lands here.
    except (RedisTimeoutError, TimeoutError) as error:
        raise TargetUnreachable(f"Redis did not answer within {timeout_s:g}s") from error
    except RedisConnectionError as error:
        raise TargetUnreachable(f"cannot reach Redis: {one_line(error)}") from error
    finally:
        await client.aclose()


@asynccontextmanager
async def _client(target: RedisTarget, context: ProbeContext) -> AsyncIterator[Redis]:
    """Given a target, yield a client for it within the check's timeout (``redis_client``)."""
    async with redis_client(target.url, context.timeout_s) as client:
        yield client


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


KEY_NAME_CHARS = 32
"""How much of a key's name a message shows: key names may hold user data (an e-mail in
``session:alice@example.com``), so a name is cut here and a value is never shown."""
DEADLINE_MARGIN_S = 1.0
"""Seconds of the check's (or step's) timeout a scan leaves free for its last page and
for closing the connection."""


def shown_key(name: bytes | str) -> str:
    """Given a key's name, return it for a message: undecodable bytes and control
    characters escaped, cut to ``KEY_NAME_CHARS`` characters with ``…`` when longer."""
    text = name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else name
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= KEY_NAME_CHARS else text[: KEY_NAME_CHARS - 1] + "…"


class Pacer:
    """Keeps a scan under a rate of keys per second and within a time budget.

    ``pace(done)`` sleeps until ``done`` keys are no faster than the rate since the start;
    ``expired`` says when the budget is spent. The clock is ``time.monotonic`` (a scan is
    seconds long; a wall clock's jumps would distort the rate).
    """

    def __init__(self, keys_per_second: float, budget_s: float) -> None:
        self.keys_per_second = keys_per_second
        self.budget_s = budget_s
        self.started = time.monotonic()

    @property
    def elapsed_s(self) -> float:
        """Return the seconds since the scan started."""
        return time.monotonic() - self.started

    @property
    def expired(self) -> bool:
        """Return whether the budget is spent."""
        return self.elapsed_s >= self.budget_s

    async def pace(self, done: int) -> None:
        """Given the keys handled so far, sleep until that is within the rate (never past
        the budget's end)."""
        due = done / self.keys_per_second
        wait = min(due, self.budget_s) - self.elapsed_s
        if wait > 0:
            await asyncio.sleep(wait)


def scan_budget_s(wanted: timedelta, timeout_s: float) -> float:
    """Given a configured scan time and the check's (or step's) timeout, return the
    seconds a scan may take: the configured time, but at most the timeout less a margin
    (and at most 80 % of it, so a short timeout still leaves room for the rest)."""
    return max(0.0, min(wanted.total_seconds(), timeout_s - DEADLINE_MARGIN_S, timeout_s * 0.8))


class BigkeysParams(StrictModel):
    """Params of the Redis ``bigkeys`` probe."""

    match: str = Field(default="*", min_length=1, description="SCAN MATCH pattern of keys to size")
    threshold_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1,
        le=2**50,
        description="a key this large or larger counts as big",
    )
    top: int = Field(default=5, ge=1, le=50, description="how many of the largest keys to show")
    max_keys: int = Field(
        default=100_000, ge=1, le=100_000_000, description="stop after sizing this many keys"
    )
    max_keys_per_second: int = Field(
        default=5000,
        ge=1,
        le=1_000_000,
        description="keys sized (or SCAN COUNT per page, if more) per second at most; "
        "sleeps between SCAN pages",
    )
    scan_count: int = Field(
        default=100, ge=1, le=10_000, description="SCAN COUNT: keys asked for per page"
    )
    samples: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="MEMORY USAGE SAMPLES: nested values sampled per aggregate (0: all)",
    )
    time_budget: Duration = Field(
        default=timedelta(seconds=20),
        description="scan at most this long (and always less than the check's timeout)",
    )


@dataclass(frozen=True)
class _SizedKey:
    name: bytes | str
    size: int


async def _size_page(client: Redis, keys: list[bytes | str], samples: int) -> list[_SizedKey]:
    """Given a page of key names, return their MEMORY USAGE in one round trip (keys gone
    meanwhile are left out)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=samples)
    sizes = await pipe.execute()
    return [
        _SizedKey(key, int(size)) for key, size in zip(keys, sizes, strict=True) if size is not None
    ]


async def _types(client: Redis, keys: list[_SizedKey]) -> list[str]:
    """Given the largest keys, return each one's TYPE (``none`` if gone since)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key.name)
    return [
        kind.decode() if isinstance(kind, bytes) else str(kind) for kind in await pipe.execute()
    ]


class BigkeysProbe(Probe[RedisTarget, BigkeysParams]):
    """Find the largest keys by sampling, without moving the server's latency."""

    target_kind: ClassVar[str] = "redis"
    name: ClassVar[str] = "bigkeys"
    summary: ClassVar[str] = (
        "Largest keys by SCAN + MEMORY USAGE, rate-limited and bounded; names cut, no values."
    )
    Params: ClassVar[type[StrictModel]] = BigkeysParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("largest_key_bytes", "number", "MEMORY USAGE of the largest key sized"),
        MetricSpec("keys_over_threshold", "number", "keys sized at threshold_bytes or more"),
        MetricSpec("sampled", "number", "keys sized by this run"),
        MetricSpec("coverage_percent", "number", "sampled as a percentage of the database's keys"),
        MetricSpec("complete", "bool", "the scan went through every matching key"),
    )

    async def run(
        self, target: RedisTarget, params: BigkeysParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target and params, SCAN its database (the URL's), size each key with
        MEMORY USAGE, and return the largest; raise TargetUnreachable if down.

        The scan stops at ``max_keys`` keys, at the time budget (``scan_budget_s``) or at
        the end of the keyspace, whichever comes first, and says which. Keys are sized a
        SCAN page at a time (one pipelined round trip) and pages are spaced to keep under
        ``max_keys_per_second``; each command is O(1) for strings and O(samples) for
        aggregates, so the server never runs one long command for us. MEMORY USAGE counts
        as a keyspace hit on the server (its ``keyspace_hits``, which the ``stats`` probe's
        hit rate reads), one per key sized; TYPE is asked only of the keys shown.
        """
        pacer = Pacer(
            params.max_keys_per_second, scan_budget_s(params.time_budget, context.timeout_s)
        )
        largest: list[_SizedKey] = []
        over = sampled = 0
        cursor = 0
        stopped = "end of keyspace"
        async with _client(target, context) as client:
            total = int(await client.dbsize())
            pages = 0
            while True:
                pages += 1
                cursor, keys = await client.scan(
                    cursor=cursor, match=params.match, count=params.scan_count
                )
                keys = keys[: params.max_keys - sampled]
                for sized in await _size_page(client, keys, params.samples):
                    over += sized.size >= params.threshold_bytes
                    largest.append(sized)
                sampled += len(keys)
                largest = heapq.nlargest(params.top, largest, key=lambda item: item.size)
                if cursor == 0:
                    break
                if sampled >= params.max_keys:
                    stopped = f"max_keys ({params.max_keys})"
                    break
                if pacer.expired:
                    stopped = f"time budget ({pacer.budget_s:g}s)"
                    break
                # A pattern that matches few keys returns short pages, but each SCAN still
                # walks about COUNT slots of the keyspace: pace that work too.
                await pacer.pace(max(sampled, pages * params.scan_count))
            # TYPE only for the keys shown: every lookup counts as a keyspace hit on the
            # server, so asking it per key would double what the scan adds to hit rates.
            types = await _types(client, largest) if largest else []
        coverage = min(100.0, sampled / total * 100.0) if total else 100.0
        shown = ", ".join(
            f"{shown_key(item.name)} ({kind}, {format_bytes(item.size)})"
            for item, kind in zip(largest, types, strict=True)
        )
        message = (
            f"sized {sampled} of {total} keys in {pacer.elapsed_s:.1f}s "
            f"(stopped at {stopped}); {over} at {format_bytes(params.threshold_bytes)} or more"
            + (f"; largest: {shown}" if shown else "")
        )
        return ProbeOutcome(
            metrics_from(
                {
                    "largest_key_bytes": largest[0].size if largest else 0,
                    "keys_over_threshold": over,
                    "sampled": sampled,
                    "coverage_percent": coverage,
                    "complete": cursor == 0,
                }
            ),
            message=message,
        )


class HealthParams(StrictModel):
    """Params of the Redis ``health`` probe."""

    slow_ms: float = Field(
        default=100.0,
        gt=0,
        le=3_600_000,
        description="a SLOWLOG entry this long or longer counts as slow",
    )
    window: Duration = Field(
        default=timedelta(hours=1),
        description="count SLOWLOG entries logged within this long before now",
    )
    slowlog_entries: int = Field(
        default=128, ge=1, le=10_000, description="SLOWLOG GET: newest entries read"
    )
    full_percent: float = Field(
        default=98.0,
        gt=0,
        le=100,
        description="used memory at this share of maxmemory counts as full (noeviction)",
    )


@dataclass(frozen=True)
class _EvictionReading:
    evicted: int
    at: float


_EVICTION_READINGS: dict[tuple[str, str], _EvictionReading] = {}
"""The previous ``evicted_keys`` reading per server (URL and run_id) in this process, so a
daemon's runs measure evictions between runs without resetting the server's statistics;
a restarted server (new run_id) starts afresh."""

VOLATILE_POLICIES = frozenset({"volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"})


def _eviction_rate(url: str, info: dict[str, Any]) -> tuple[float, str]:
    """Given the server's URL and INFO, return its evictions per minute since this
    process's previous reading of it (since it started, at the first), and which."""
    evicted = int(_number(info, "evicted_keys"))
    now = time.monotonic()
    key = (url, str(info.get("run_id", "")))
    previous = _EVICTION_READINGS.get(key)
    _EVICTION_READINGS[key] = _EvictionReading(evicted, now)
    if previous is not None and now > previous.at:
        rate = (evicted - previous.evicted) / (now - previous.at) * 60.0
        return rate, "since the previous reading"
    uptime = max(1.0, _number(info, "uptime_in_seconds"))
    return evicted / uptime * 60.0, "since the server started"


def policy_findings(info: dict[str, Any], params: HealthParams) -> tuple[bool, bool, list[str]]:
    """Given INFO and the params, return whether a noeviction server is full (rejecting
    writes), whether a volatile-* policy has no key with a TTL to evict, and findings."""
    policy = str(info.get("maxmemory_policy", "noeviction"))
    limit = int(info.get("maxmemory", 0) or 0)
    used = int(_number(info, "used_memory"))
    expires = sum(
        int(value.get("expires", 0))
        for name, value in info.items()
        if name.startswith("db") and name[2:].isdigit() and isinstance(value, dict)
    )
    findings: list[str] = []
    rejecting = bool(
        policy == "noeviction" and limit and used >= limit * params.full_percent / 100.0
    )
    if rejecting:
        findings.append(
            f"maxmemory-policy noeviction with {format_bytes(used)} used of maxmemory "
            f"{format_bytes(limit)}: writes are being rejected (OOM)"
        )
    mismatch = bool(policy in VOLATILE_POLICIES and limit and expires == 0)
    if mismatch:
        findings.append(
            f"maxmemory-policy {policy} but no key has a TTL: nothing can be evicted, "
            "writes fail at maxmemory (use an allkeys-* policy or set TTLs)"
        )
    return rejecting, mismatch, findings


def _slow_commands(
    slowlog: list[dict[str, Any]], server_now: int, params: HealthParams, findings: list[str]
) -> tuple[int, float]:
    """Given SLOWLOG entries, the server's time and the params, return how many entries
    within the window took ``slow_ms`` or more and the longest (ms); add a finding if any."""
    cutoff = server_now - params.window.total_seconds()
    slow = [
        entry["duration"] / 1000.0
        for entry in slowlog
        if entry["start_time"] >= cutoff and entry["duration"] / 1000.0 >= params.slow_ms
    ]
    slowest = max(slow, default=0.0)
    if slow:
        findings.append(
            f"{len(slow)} command(s) of {params.slow_ms:g} ms or more in the last "
            f"{format_duration(params.window)} (longest {slowest:.1f} ms)"
        )
    return len(slow), slowest


def _latency_spike(latest: list[Any], findings: list[str]) -> float:
    """Given LATENCY LATEST's events (name, time, latest ms, max ms), return the highest
    max; add a finding naming each event."""
    spike = 0.0
    spikes: list[str] = []
    for event in latest:
        name = event[0].decode() if isinstance(event[0], bytes) else str(event[0])
        spike = max(spike, float(event[3]))
        spikes.append(f"{name} max {int(event[3])} ms")
    if spikes:
        findings.append("latency events: " + ", ".join(spikes))
    return spike


def _persistence_problems(info: dict[str, Any]) -> list[str]:
    """Given INFO, return each persistence status that is not ok (the AOF write status
    only when AOF is on)."""
    problems = [
        f"{field} is {info[field]}"
        for field in ("rdb_last_bgsave_status", "aof_last_bgrewrite_status")
        if str(info.get(field, "ok")) != "ok"
    ]
    aof_on = int(info.get("aof_enabled", 0) or 0)
    if aof_on and str(info.get("aof_last_write_status", "ok")) != "ok":
        problems.append(f"aof_last_write_status is {info['aof_last_write_status']}")
    return problems


def _latency_note(monitor_ms: int) -> str:
    """Given latency-monitor-threshold (-1: unknown), return it for a message."""
    if monitor_ms == 0:
        return "latency monitor off"
    if monitor_ms < 0:
        return "latency monitor unknown (CONFIG denied)"
    return f"latency monitor at {monitor_ms} ms"


class HealthProbe(Probe[RedisTarget, HealthParams]):
    """Fragmentation, evictions against the policy, slowlog, latency and persistence."""

    target_kind: ClassVar[str] = "redis"
    name: ClassVar[str] = "health"
    summary: ClassVar[str] = (
        "Allocator fragmentation, evictions vs maxmemory-policy, slowlog, latency, persistence."
    )
    Params: ClassVar[type[StrictModel]] = HealthParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec(
            "allocator_frag_ratio",
            "number",
            "allocator_frag_ratio: fragmentation inside the allocator (MEMORY PURGE may help)",
        ),
        MetricSpec(
            "evicted_per_min",
            "number",
            "keys evicted per minute since this process's previous reading (first reading: "
            "since the server started)",
        ),
        MetricSpec(
            "rejecting_writes",
            "bool",
            "maxmemory-policy noeviction and used memory at full_percent of maxmemory",
        ),
        MetricSpec(
            "policy_mismatch",
            "bool",
            "a volatile-* policy with maxmemory set and no key with a TTL: nothing can be evicted",
        ),
        MetricSpec("slow_commands", "number", "SLOWLOG entries of slow_ms or more within window"),
        MetricSpec("slowest_ms", "number", "the longest of those entries (0 if none)"),
        MetricSpec(
            "latency_spike_ms",
            "number",
            "the highest LATENCY LATEST max (0 when latency-monitor-threshold is 0)",
        ),
        MetricSpec(
            "persistence_ok", "bool", "last BGSAVE, AOF write and AOF rewrite all ok (if enabled)"
        ),
        MetricSpec("last_save_age_s", "number", "seconds since the last successful RDB save"),
        MetricSpec("findings", "number", "problems the message lists"),
    )

    async def run(
        self, target: RedisTarget, params: HealthParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a target, return its health figures and the problems found, each with its
        evidence; raise TargetUnreachable if down.

        Reads INFO, SLOWLOG GET, TIME and (when CONFIG GET is allowed and the latency
        monitor is on) LATENCY LATEST; changes nothing on the server, resets no statistic.
        """
        from redis.exceptions import ResponseError

        async with _client(target, context) as client:
            info = await client.info("all")
            slowlog = await client.slowlog_get(params.slowlog_entries)
            server_now, _micros = await client.time()
            try:
                config = await client.config_get("latency-monitor-threshold")
                monitor_ms = int(config.get("latency-monitor-threshold", 0) or 0)
            except ResponseError:
                monitor_ms = -1  # CONFIG is renamed or denied (managed services)
            latest: list[Any] = []
            if monitor_ms > 0:
                latest = list(await client.latency_latest())
        allocator_frag = float(info.get("allocator_frag_ratio", 1.0) or 1.0)
        per_min, since = _eviction_rate(target.url, info)
        rejecting, mismatch, findings = policy_findings(info, params)
        policy = str(info.get("maxmemory_policy", "noeviction"))
        if per_min > 0 and policy == "noeviction":
            findings.append(f"{per_min:.1f} evictions/min {since} under noeviction")
        slow, slowest = _slow_commands(slowlog, int(server_now), params, findings)
        spike = _latency_spike(latest, findings)
        persistence_problems = _persistence_problems(info)
        findings.extend(persistence_problems)
        save_age = max(0.0, float(server_now) - _number(info, "rdb_last_save_time"))
        facts = (
            f"policy {policy}, {per_min:.1f} evictions/min {since}, allocator fragmentation "
            f"{allocator_frag:.2f}, last save {human_duration(save_age)} ago, "
            f"{_latency_note(monitor_ms)}"
        )
        message = (
            f"{len(findings)} finding(s): " + "; ".join(findings) + f" ({facts})"
            if findings
            else f"no findings ({facts})"
        )
        return ProbeOutcome(
            metrics_from(
                {
                    "allocator_frag_ratio": allocator_frag,
                    "evicted_per_min": per_min,
                    "rejecting_writes": rejecting,
                    "policy_mismatch": mismatch,
                    "slow_commands": slow,
                    "slowest_ms": slowest,
                    "latency_spike_ms": spike,
                    "persistence_ok": not persistence_problems,
                    "last_save_age_s": save_age,
                    "findings": len(findings),
                }
            ),
            message=message,
        )
