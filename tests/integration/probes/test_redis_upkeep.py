"""Redis ``bigkeys`` and ``health`` probes against the real local server.

Keys live in database 11 under a prefix unique to each test (the probes take a ``match``
pattern or read only server-wide figures), and are removed afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import run_probe
from upkeep.probes.redis import (
    BigkeysProbe,
    HealthParams,
    HealthProbe,
    Pacer,
    RedisTarget,
    policy_findings,
    scan_budget_s,
    shown_key,
)

pytestmark = pytest.mark.redis

DB = 11


@pytest.fixture
def db_url(redis_url: str) -> str:
    """The test server's URL with database 11."""
    return f"{redis_url.rsplit('/', 1)[0]}/{DB}"


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(db_url, socket_timeout=5)
    yield redis
    await redis.aclose()


@pytest.fixture
async def prefix(client: Redis) -> AsyncIterator[str]:
    """A unique key prefix; every key under it is deleted after the test."""
    name = f"upkeep:test:{uuid.uuid4().hex[:12]}:"
    yield name
    keys = [key async for key in client.scan_iter(match=f"{name}*", count=500)]
    if keys:
        await client.delete(*keys)


async def _fill(client: Redis, prefix: str, small: int) -> str:
    """Given a prefix, write one 200 kB string under a long name, a 100-field hash and
    ``small`` short strings; return the big key's name."""
    big = f"{prefix}big-key-with-a-rather-long-and-private-name"
    await client.set(big, b"s" * 200_000)
    await client.hset(f"{prefix}hash", mapping={f"f{index}": "v" * 50 for index in range(100)})
    await client.mset({f"{prefix}small:{index}": "x" for index in range(small)})
    return big


async def test_bigkeys_finds_the_largest_key_without_showing_values(
    db_url: str, client: Redis, prefix: str
) -> None:
    await _fill(client, prefix, small=50)

    outcome = await run_probe(
        BigkeysProbe,
        RedisTarget,
        {"url": db_url},
        {"match": f"{prefix}*", "threshold_bytes": 100_000, "top": 2},
    )

    assert outcome.metrics["sampled"] == 52
    assert outcome.metrics["keys_over_threshold"] == 1
    assert int(outcome.metrics["largest_key_bytes"]) >= 200_000
    assert outcome.metrics["complete"] is True
    assert "(string, " in outcome.message and "(hash, " in outcome.message
    assert "rather-long-and-private-name" not in outcome.message
    assert "…" in outcome.message
    assert "sss" not in outcome.message


async def test_bigkeys_stops_at_max_keys(db_url: str, client: Redis, prefix: str) -> None:
    await _fill(client, prefix, small=50)

    outcome = await run_probe(
        BigkeysProbe,
        RedisTarget,
        {"url": db_url},
        {"match": f"{prefix}*", "max_keys": 10, "scan_count": 5},
    )

    assert outcome.metrics["sampled"] == 10
    assert outcome.metrics["complete"] is False
    assert "stopped at max_keys (10)" in outcome.message


async def test_bigkeys_keeps_to_its_rate_and_its_time_budget(
    db_url: str, client: Redis, prefix: str
) -> None:
    await _fill(client, prefix, small=200)
    started = time.monotonic()

    outcome = await run_probe(
        BigkeysProbe,
        RedisTarget,
        {"url": db_url},
        {
            "match": f"{prefix}*",
            "max_keys_per_second": 50,
            "scan_count": 10,
            "time_budget": "300ms",
        },
    )

    elapsed = time.monotonic() - started
    # 50 keys/s for 0.3 s is about 15 keys (a page of about 10 more may be sized at the end).
    assert 5 <= int(outcome.metrics["sampled"]) <= 40
    assert outcome.metrics["complete"] is False
    assert "time budget (0.3s)" in outcome.message
    assert 0.25 <= elapsed < 2.0


async def test_pacer_sleeps_to_the_rate_but_never_past_the_budget() -> None:
    pacer = Pacer(keys_per_second=100, budget_s=1.0)
    await pacer.pace(20)  # 20 keys at 100/s: due at 0.2 s
    assert 0.19 <= pacer.elapsed_s < 0.5
    assert not pacer.expired

    short = Pacer(keys_per_second=10, budget_s=0.1)
    await short.pace(100)  # due at 10 s, but the budget ends at 0.1 s
    assert 0.09 <= short.elapsed_s < 0.4
    assert short.expired


def test_scan_budget_stays_under_the_timeout() -> None:
    assert scan_budget_s(timedelta(seconds=20), 10.0) == 8.0
    assert scan_budget_s(timedelta(seconds=20), 60.0) == 20.0
    assert scan_budget_s(timedelta(seconds=2), 2.0) == 1.0
    assert scan_budget_s(timedelta(seconds=20), 0.5) == 0.0


def test_shown_key_cuts_long_names_and_escapes_bytes() -> None:
    assert shown_key(b"short") == "short"
    cut = shown_key("user:" + "a" * 100)
    assert len(cut) == 32 and cut.endswith("…")
    assert shown_key(b"bad\xffbyte\n") == "bad\\\\xffbyte\\n"


async def test_health_reports_figures_and_a_slow_command(db_url: str, client: Redis) -> None:
    # A script that keeps the server busy 120 ms is logged by SLOWLOG (threshold 10 ms).
    busy = (
        "local t = redis.call('TIME') local start = t[1] * 1e6 + t[2] "
        "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - start >= 120000 return 1"
    )
    await client.eval(busy, 0)

    first = await run_probe(HealthProbe, RedisTarget, {"url": db_url}, {"slow_ms": 100})
    second = await run_probe(HealthProbe, RedisTarget, {"url": db_url}, {"slow_ms": 100})

    assert int(first.metrics["slow_commands"]) >= 1
    assert float(first.metrics["slowest_ms"]) >= 100.0
    assert "of 100 ms or more in the last 1h" in first.message
    assert first.metrics["persistence_ok"] is True
    assert float(first.metrics["allocator_frag_ratio"]) > 0
    assert float(first.metrics["last_save_age_s"]) >= 0
    assert int(first.metrics["findings"]) >= 1
    assert "since the server started" in first.message
    assert "since the previous reading" in second.message
    config = await client.config_get("latency-monitor-threshold")
    monitor = int(str(config["latency-monitor-threshold"]))
    if monitor == 0:
        assert first.metrics["latency_spike_ms"] == 0
        assert "latency monitor off" in first.message


def _info(**fields: Any) -> dict[str, Any]:
    return {"used_memory": 900, "maxmemory": 1000, **fields}


def test_policy_findings_name_a_full_noeviction_server_and_an_unfit_policy() -> None:
    params = HealthParams(full_percent=90)

    rejecting, mismatch, findings = policy_findings(_info(maxmemory_policy="noeviction"), params)
    assert (rejecting, mismatch) == (True, False)
    assert "writes are being rejected" in findings[0]

    rejecting, mismatch, findings = policy_findings(
        _info(maxmemory_policy="volatile-lru", db0={"keys": 5, "expires": 0}), params
    )
    assert (rejecting, mismatch) == (False, True)
    assert "volatile-lru but no key has a TTL" in findings[0]

    assert policy_findings(
        _info(maxmemory_policy="volatile-lru", db0={"keys": 5, "expires": 2}), params
    ) == (False, False, [])
    assert policy_findings(_info(maxmemory_policy="volatile-ttl", maxmemory=0), params) == (
        False,
        False,
        [],
    )
