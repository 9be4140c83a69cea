"""redis.memory_purge: ask the allocator to return freed pages, and measure the effect.

``MEMORY PURGE`` makes jemalloc release dirty pages it keeps after keys are deleted: it
lowers ``used_memory_rss`` and the fragmentation ratio, and changes no data. With another
allocator (libc) the command does nothing; the plan says so. The run reads INFO memory
before and after, so the step records what the purge actually gave back.

Figures recorded: ``rss_before_bytes``, ``rss_after_bytes``, ``freed_bytes``,
``fragmentation_before``, ``fragmentation_after``, ``allocator_frag_before`` and
``allocator_frag_after``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from upkeep.core.text import format_bytes, one_line
from upkeep.probes.base import TargetUnreachable
from upkeep.probes.redis import RedisTarget, redis_client
from upkeep.tasks.base import (
    Change,
    NoTaskParams,
    PhaseRecorder,
    Task,
    TaskContext,
    TaskFailed,
    TaskOutcome,
    TaskPlan,
)


def _memory_figures(info: dict[str, Any]) -> tuple[int, float, float]:
    """Given INFO memory, return RSS bytes, mem_fragmentation_ratio and allocator_frag_ratio."""
    return (
        int(info["used_memory_rss"]),
        float(info["mem_fragmentation_ratio"]),
        float(info.get("allocator_frag_ratio", 0.0) or 0.0),
    )


def _describe(info: dict[str, Any]) -> str:
    """Given INFO memory, return RSS and fragmentation for a message."""
    rss, fragmentation, allocator = _memory_figures(info)
    return f"RSS {format_bytes(rss)}, fragmentation {fragmentation:.2f} (allocator {allocator:.2f})"


class RedisMemoryPurge(Task[RedisTarget, NoTaskParams]):
    """MEMORY PURGE, with RSS and fragmentation before and after."""

    name: ClassVar[str] = "redis.memory_purge"
    summary: ClassVar[str] = (
        "MEMORY PURGE: return freed allocator pages; RSS measured before/after."
    )
    target_kinds: ClassVar[tuple[str, ...]] = ("redis",)
    target_required: ClassVar[bool] = True

    async def plan(
        self, target: RedisTarget, params: NoTaskParams, context: TaskContext
    ) -> TaskPlan:
        """Given the target, return the purge it would ask for, with today's figures;
        change nothing. Raise TaskFailed if the server cannot be reached."""
        del params
        try:
            async with redis_client(target.url, context.timeout_s) as client:
                info = await client.info("memory")
        except TargetUnreachable as error:
            raise TaskFailed(str(error)) from error
        allocator = str(info.get("mem_allocator", "unknown"))
        if not allocator.startswith("jemalloc"):
            return TaskPlan(note=f"allocator {allocator}: MEMORY PURGE does nothing")
        return TaskPlan(
            changes=[Change("memory purge", "allocator", f"now {_describe(info)}")],
            note="frees no data; how much RSS it returns is measured by the run",
        )

    async def run(
        self, target: RedisTarget, params: NoTaskParams, context: TaskContext
    ) -> TaskOutcome:
        """Given the target, run MEMORY PURGE between two INFO memory readings and return
        the difference; raise TaskFailed if the server cannot be reached or refuses."""
        from redis.exceptions import ResponseError

        del params
        outcome = TaskOutcome()
        phases = PhaseRecorder(outcome)
        readings: list[dict[str, Any]] = []
        try:
            async with redis_client(target.url, context.timeout_s) as client:

                async def read() -> str:
                    readings.append(await client.info("memory"))
                    return _describe(readings[-1])

                async def purge() -> str:
                    await client.memory_purge()
                    return "MEMORY PURGE answered OK"

                await phases.run("before", read)
                await phases.run("purge", purge)
                await phases.run("after", read)
        except TargetUnreachable as error:
            raise TaskFailed(str(error)) from error
        except ResponseError as error:
            raise TaskFailed(f"Redis refused MEMORY PURGE: {one_line(error)}") from error
        rss_before, frag_before, alloc_before = _memory_figures(readings[0])
        rss_after, frag_after, alloc_after = _memory_figures(readings[1])
        freed = rss_before - rss_after
        outcome.changes.append(Change("memory purge", "allocator", _describe(readings[1])))
        outcome.figures = {
            "rss_before_bytes": rss_before,
            "rss_after_bytes": rss_after,
            "freed_bytes": freed,
            "fragmentation_before": frag_before,
            "fragmentation_after": frag_after,
            "allocator_frag_before": alloc_before,
            "allocator_frag_after": alloc_after,
        }
        returned = f"returned {format_bytes(freed)}" if freed > 0 else "RSS did not shrink"
        outcome.message = (
            f"{returned}: RSS {format_bytes(rss_before)} → {format_bytes(rss_after)}, "
            f"fragmentation {frag_before:.2f} → {frag_after:.2f}"
        )
        return outcome
