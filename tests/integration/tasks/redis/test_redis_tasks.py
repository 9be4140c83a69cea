"""``redis.memory_purge`` and ``redis.cleanup`` against the real local Redis.

Keys live in database 12 under a prefix unique to each test and are removed afterwards.
Idle keys are made with RESTORE ... IDLETIME, so no test waits for a key to age.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from upkeep.probes.redis import RedisTarget
from upkeep.tasks.base import NoTaskParams, TaskContext
from upkeep.tasks.redis.cleanup import RedisCleanup, RedisCleanupParams
from upkeep.tasks.redis.memory_purge import RedisMemoryPurge

pytestmark = pytest.mark.redis

DB = 12


@pytest.fixture
def target(redis_url: str) -> RedisTarget:
    return RedisTarget(kind="redis", url=f"{redis_url.rsplit('/', 1)[0]}/{DB}")


@pytest.fixture
async def client(target: RedisTarget) -> AsyncIterator[Redis]:
    redis = Redis.from_url(target.url, socket_timeout=5)
    yield redis
    await redis.aclose()


@pytest.fixture
async def prefix(client: Redis) -> AsyncIterator[str]:
    name = f"upkeep:test:{uuid.uuid4().hex[:12]}:"
    yield name
    keys = [key async for key in client.scan_iter(match=f"{name}*", count=500)]
    if keys:
        await client.delete(*keys)


async def _idle_keys(client: Redis, names: list[str], idle_s: int) -> None:
    """Write each key and make it look untouched for ``idle_s`` seconds."""
    await client.set(names[0], "value")
    dump = await client.dump(names[0])
    assert dump is not None
    await client.delete(names[0])
    for name in names:
        await client.restore(name, 0, dump, idletime=idle_s)


def _params(prefix: str, **more: Any) -> RedisCleanupParams:
    return RedisCleanupParams.model_validate(
        {"match": f"{prefix}*", "idle_longer_than": "30m", **more}
    )


async def test_cleanup_dry_run_counts_and_changes_nothing_then_run_unlinks_only_idle_keys(
    target: RedisTarget, client: Redis, prefix: str, task_context: TaskContext
) -> None:
    idle = [f"{prefix}old:{index}" for index in range(10)]
    await _idle_keys(client, idle, 3600)
    await client.mset({f"{prefix}fresh:{index}": "v" for index in range(5)})
    touched = f"{prefix}old:touched"
    await _idle_keys(client, [touched], 3600)

    plan = await RedisCleanup().plan(target, _params(prefix), task_context)

    assert len(plan.changes) == 1
    assert plan.changes[0].subject.startswith("11 keys matching")
    assert "and 6 more" in plan.changes[0].detail
    assert plan.note == "11 of 16 examined"
    assert await client.exists(*idle, touched) == 11

    await client.get(touched)  # read after the plan: no longer idle, so it stays
    outcome = await RedisCleanup().run(target, _params(prefix, batch_size=3), task_context)

    assert outcome.figures["deleted"] == 10
    assert outcome.figures["examined"] == 16
    assert outcome.figures["complete"] is True
    assert await client.exists(*idle) == 0
    assert await client.exists(touched) == 1
    assert await client.exists(*[f"{prefix}fresh:{index}" for index in range(5)]) == 5


async def test_cleanup_stops_at_max_delete(
    target: RedisTarget, client: Redis, prefix: str, task_context: TaskContext
) -> None:
    await _idle_keys(client, [f"{prefix}old:{index}" for index in range(10)], 3600)

    outcome = await RedisCleanup().run(
        target, _params(prefix, batch_size=1, scan_count=2, max_delete=3), task_context
    )

    assert outcome.figures["deleted"] == 3
    assert outcome.figures["complete"] is False
    assert "max_delete (3)" in outcome.message


async def test_cleanup_with_nothing_due_plans_nothing(
    target: RedisTarget, client: Redis, prefix: str, task_context: TaskContext
) -> None:
    await client.set(f"{prefix}fresh", "v")

    plan = await RedisCleanup().plan(target, _params(prefix), task_context)

    assert plan.changes == []
    assert plan.summary().startswith("no keys matching")


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"match": "*", "idle_longer_than": "1h"}, "wildcards"),
        ({"match": "a:*", "idle_longer_than": "500ms"}, "at least 1s"),
    ],
)
def test_cleanup_params_refuse_everything_and_subsecond_ages(
    fields: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValidationError, match=error):
        RedisCleanupParams.model_validate(fields)


async def test_memory_purge_plans_and_measures_before_and_after(
    target: RedisTarget, client: Redis, task_context: TaskContext
) -> None:
    plan = await RedisMemoryPurge().plan(target, NoTaskParams(), task_context)
    outcome = await RedisMemoryPurge().run(target, NoTaskParams(), task_context)

    info = await client.info("memory")
    if str(info["mem_allocator"]).startswith("jemalloc"):
        assert plan.changes[0].action == "memory purge"
    assert [phase.name for phase in outcome.phases] == ["before", "purge", "after"]
    assert all(phase.status == "ok" for phase in outcome.phases)
    assert int(outcome.figures["rss_before_bytes"]) > 0
    assert int(outcome.figures["rss_after_bytes"]) > 0
    assert outcome.figures["freed_bytes"] == (
        int(outcome.figures["rss_before_bytes"]) - int(outcome.figures["rss_after_bytes"])
    )
    assert "fragmentation" in outcome.message
