"""Redis probes against the real local server.

The server's counters are global, so tests assert on changes they cause themselves
(keys they set, lookups they make) rather than on absolute values, and remove their keys.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from tests.conftest import run_probe
from upkeep.probes.base import TargetUnreachable
from upkeep.probes.redis import MemoryProbe, PingProbe, RedisTarget, StatsProbe

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the test server, closed after the test."""
    redis = Redis.from_url(redis_url, socket_timeout=5)
    yield redis
    await redis.aclose()


@pytest.fixture
async def key(client: Redis) -> AsyncIterator[str]:
    """A unique key name, deleted (with any sub-keys named after it) after the test."""
    name = f"upkeep:test:{uuid.uuid4().hex}"
    yield name
    await client.delete(name, *[f"{name}:{index}" for index in range(5)])


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A local TCP port that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_ping_reports_a_latency(redis_url: str) -> None:
    outcome = await run_probe(PingProbe, RedisTarget, {"url": redis_url})

    latency = outcome.metrics["latency_ms"]
    assert isinstance(latency, float)
    assert 0 < latency < 10_000
    assert outcome.message.startswith("PONG")


async def test_memory_grows_with_a_large_value(redis_url: str, client: Redis, key: str) -> None:
    target = {"url": redis_url}
    before = await run_probe(MemoryProbe, RedisTarget, target)
    await client.set(key, b"x" * 2_000_000)
    after = await run_probe(MemoryProbe, RedisTarget, target)

    assert int(after.metrics["used_bytes"]) >= int(before.metrics["used_bytes"]) + 1_900_000
    assert float(after.metrics["fragmentation_ratio"]) > 0
    info = await client.info("memory")
    if int(info["maxmemory"]) == 0:
        expected = int(after.metrics["used_bytes"]) / int(info["total_system_memory"]) * 100
        assert after.metrics["used_percent"] == round(expected, 3)
        assert "of system memory" in after.message


async def test_memory_percent_is_of_maxmemory_when_one_is_set(
    redis_url: str, client: Redis
) -> None:
    original = str((await client.config_get("maxmemory"))["maxmemory"])
    limit = 1024 * 1024 * 1024  # far above what the test server holds: nothing is evicted
    await client.config_set("maxmemory", limit)
    try:
        outcome = await run_probe(MemoryProbe, RedisTarget, {"url": redis_url})
    finally:
        await client.config_set("maxmemory", original)

    expected = int(outcome.metrics["used_bytes"]) / limit * 100
    assert outcome.metrics["used_percent"] == round(expected, 3)
    assert "of maxmemory 1 GiB" in outcome.message


async def test_hit_rate_moves_with_hits_and_misses(redis_url: str, client: Redis, key: str) -> None:
    target = {"url": redis_url}
    await client.set(key, "value")
    # The rate is the server's since its start: enough lookups to move it however much
    # traffic the shared server has seen (a 2 % share at least, pipelined).
    stats = await client.info("stats")
    seen = int(stats["keyspace_hits"]) + int(stats["keyspace_misses"])
    count = min(max(200, seen // 50), 200_000)
    async with client.pipeline(transaction=False) as misses:
        for index in range(count):
            misses.get(f"{key}:missing:{index % 100}")
        await misses.execute()
    after_misses = await run_probe(StatsProbe, RedisTarget, target)
    async with client.pipeline(transaction=False) as hits:
        for _ in range(count * 10):
            hits.get(key)
        await hits.execute()
    after_hits = await run_probe(StatsProbe, RedisTarget, target)

    missed_rate = float(after_misses.metrics["hit_rate_percent"])
    assert 0.0 <= missed_rate < 100.0
    assert float(after_hits.metrics["hit_rate_percent"]) > missed_rate


async def test_stats_count_keys_clients_and_evictions(
    redis_url: str, client: Redis, key: str
) -> None:
    target = {"url": redis_url}
    await client.set(key, "value")
    await client.mset({f"{key}:{index}": index for index in range(5)})
    extra = [Redis.from_url(redis_url) for _ in range(3)]
    try:
        for other in extra:
            await other.ping()
        outcome = await run_probe(StatsProbe, RedisTarget, target)
    finally:
        for other in extra:
            await other.aclose()

    keyspace = await client.info("keyspace")
    assert int(outcome.metrics["keys"]) >= 6
    assert int(outcome.metrics["keys"]) == sum(int(db["keys"]) for db in keyspace.values())
    assert int(outcome.metrics["connected_clients"]) >= 5  # ours, three extra, the probe
    evicted = int((await client.info("stats"))["evicted_keys"])
    assert int(outcome.metrics["evicted_keys"]) <= evicted


async def test_refused_port_is_unreachable() -> None:
    with pytest.raises(TargetUnreachable, match="cannot reach Redis"):
        await run_probe(PingProbe, RedisTarget, {"url": "redis://127.0.0.1:1/0"})


async def test_unknown_user_is_unreachable_and_the_password_is_not_echoed(
    redis_url: str,
) -> None:
    password = "upkeep-not-a-real-password"
    parts = urlsplit(redis_url)
    user = f"upkeep-nobody-{uuid.uuid4().hex[:8]}"
    url = parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}").geturl()

    with pytest.raises(TargetUnreachable) as raised:
        await run_probe(StatsProbe, RedisTarget, {"url": url})

    assert password not in str(raised.value)


async def test_silent_server_is_unreachable_within_the_timeout(silent_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match="did not answer within 1s"):
        await run_probe(
            PingProbe, RedisTarget, {"url": f"redis://127.0.0.1:{silent_port}/0"}, timeout_s=1.0
        )
    # No retries: one timeout, not four.
    assert time.monotonic() - started < 2.5
