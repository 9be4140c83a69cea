"""redis.cleanup: unlink keys that match a pattern and have been idle longer than an age.

What is deleted: keys of the target's database (the URL's) whose name matches ``match``
(a SCAN MATCH glob) and whose ``OBJECT IDLETIME`` (seconds since last read or written) is
at least ``idle_longer_than``. Nothing else:

* **Checked and unlinked in one step.** Each batch goes to the server as one short Lua
  script that reads every key's idle time and UNLINKs only those still idle long enough,
  so a key read or written between the scan and the delete is kept. Reading the idle time
  does not touch a key. UNLINK frees the memory in a background thread, so a large value
  does not block the server.
* **Rate-limited and bounded.** Keys are examined at most ``max_keys_per_second`` (sleeps
  between SCAN pages; a pattern that matches few keys is paced by SCAN COUNT per page, the
  slots each SCAN walks); the run stops at ``max_delete`` deleted keys (give or take one
  batch), at ``time_budget``
  or before the step's timeout, whichever comes first, and reports the run as
  incomplete (the next run goes on: the keys left still match).
* **A pattern, not everything.** ``match`` must hold at least one character that is not a
  wildcard: ``*`` alone would empty the database.
* **Dry run** counts the keys that would go and names a few (cut, never values), changing
  nothing.
* Under an LFU ``maxmemory-policy`` Redis keeps no idle time: the task refuses.

Figures recorded: ``examined``, ``deleted``, ``complete``, ``elapsed_s``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, field_validator

from upkeep.core.durations import Duration, format_duration
from upkeep.core.models import StrictModel
from upkeep.core.text import one_line
from upkeep.probes.base import TargetUnreachable
from upkeep.probes.redis import Pacer, RedisTarget, redis_client, scan_budget_s, shown_key
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan

if TYPE_CHECKING:
    from redis.asyncio import Redis

NAMED_KEYS = 5
"""How many key names a plan or an outcome shows; the rest are counted."""

UNLINK_IF_IDLE = """
local idle = tonumber(ARGV[1])
local gone = {}
for _, key in ipairs(KEYS) do
  local seconds = redis.call('OBJECT', 'IDLETIME', key)
  if seconds and seconds >= idle then
    redis.call('UNLINK', key)
    gone[#gone + 1] = key
  end
end
return gone
"""
"""Unlink each key still idle ``ARGV[1]`` seconds or more; return the keys unlinked."""


class RedisCleanupParams(StrictModel):
    """Params of ``redis.cleanup``."""

    match: str = Field(description="SCAN MATCH glob of the keys to consider (not `*` alone)")
    idle_longer_than: Duration = Field(
        description="unlink keys not read or written for at least this long (OBJECT IDLETIME)"
    )
    max_keys_per_second: int = Field(
        default=5000,
        ge=1,
        le=1_000_000,
        description="keys examined (or SCAN COUNT per page, if more) per second at most",
    )
    scan_count: int = Field(default=500, ge=1, le=10_000, description="SCAN COUNT per page")
    batch_size: int = Field(
        default=200, ge=1, le=5000, description="keys checked and unlinked per script call"
    )
    max_delete: int = Field(
        default=100_000,
        ge=1,
        le=100_000_000,
        description="stop after unlinking this many keys (incomplete)",
    )
    time_budget: Duration = Field(
        default=timedelta(minutes=5),
        description="run at most this long (and always less than the step's timeout)",
    )

    @field_validator("match")
    @classmethod
    def _not_everything(cls, value: str) -> str:
        if not value.strip("*?"):
            raise ValueError("must name something besides wildcards (`*` alone matches all keys)")
        return value

    @field_validator("idle_longer_than")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s (OBJECT IDLETIME counts whole seconds)")
        return value


@dataclass
class _Sweep:
    """What a pass over the keyspace found or did."""

    examined: int = 0
    matched: int = 0
    names: list[str] = field(default_factory=list)
    complete: bool = False
    stopped: str = "end of keyspace"
    elapsed_s: float = 0.0

    def note(self, names: list[bytes | str]) -> None:
        """Given names found, keep the first few for the message."""
        self.names.extend(shown_key(name) for name in names[: NAMED_KEYS - len(self.names)])

    def examples(self) -> str:
        """Return the names kept, with how many more there were."""
        more = self.matched - len(self.names)
        return ", ".join(self.names) + (f" and {more} more" if more > 0 else "")


async def _refuse_lfu(client: Redis) -> None:
    """Raise TaskFailed if the server's policy keeps no idle time (LFU)."""
    policy = str((await client.info("memory")).get("maxmemory_policy", ""))
    if "lfu" in policy:
        raise TaskFailed(
            f"maxmemory-policy is {policy}: Redis keeps access frequency, not idle time, "
            "so OBJECT IDLETIME cannot tell which keys are idle"
        )


class RedisCleanup(Task[RedisTarget, RedisCleanupParams]):
    """Unlink keys by pattern and idle time, via SCAN, rate-limited."""

    name: ClassVar[str] = "redis.cleanup"
    summary: ClassVar[str] = (
        "Unlink keys matching a pattern and idle longer than an age (SCAN, rate-limited)."
    )
    Params: ClassVar[type[StrictModel]] = RedisCleanupParams
    target_kinds: ClassVar[tuple[str, ...]] = ("redis",)
    target_required: ClassVar[bool] = True

    async def plan(
        self, target: RedisTarget, params: RedisCleanupParams, context: TaskContext
    ) -> TaskPlan:
        """Given the target and params, count the keys that would be unlinked now and name
        a few; change nothing. Raise TaskFailed if the server cannot be reached or keeps
        no idle time."""
        idle_s = int(params.idle_longer_than.total_seconds())

        async def page(client: Redis, keys: list[bytes | str], sweep: _Sweep) -> int:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.object("idletime", key)
            idle = await pipe.execute()
            # A key gone between SCAN and OBJECT answers None: it no longer counts.
            found = [
                key
                for key, seconds in zip(keys, idle, strict=True)
                if seconds is not None and seconds >= idle_s
            ]
            sweep.note(found)
            return len(found)

        sweep = await self._sweep(target, params, context, page, stop_at=None)
        wording = f"keys matching {shown_key(params.match)} idle {format_duration(params.idle_longer_than)} or more"
        scope = "" if sweep.complete else f" (counted until {sweep.stopped}; more may match)"
        if not sweep.matched:
            return TaskPlan(note=f"no {wording} among {sweep.examined} examined{scope}")
        return TaskPlan(
            changes=[Change("unlink", f"{sweep.matched} {wording}", f"e.g. {sweep.examples()}")],
            note=f"{sweep.matched} of {sweep.examined} examined{scope}",
        )

    async def run(
        self, target: RedisTarget, params: RedisCleanupParams, context: TaskContext
    ) -> TaskOutcome:
        """Given the target and params, unlink the keys due and return how many; raise
        TaskFailed if the server cannot be reached, keeps no idle time or refuses the
        script."""
        idle_s = int(params.idle_longer_than.total_seconds())

        async def page(client: Redis, keys: list[bytes | str], sweep: _Sweep) -> int:
            gone = 0
            for start in range(0, len(keys), params.batch_size):
                batch = keys[start : start + params.batch_size]
                unlinked = await client.eval(UNLINK_IF_IDLE, len(batch), *batch, idle_s)
                sweep.note(list(unlinked))
                gone += len(unlinked)
                if sweep.matched + gone >= params.max_delete:
                    break
            return gone

        sweep = await self._sweep(target, params, context, page, stop_at=params.max_delete)
        outcome = TaskOutcome()
        if sweep.matched:
            outcome.changes.append(
                Change(
                    "unlink",
                    f"{sweep.matched} keys matching {shown_key(params.match)}",
                    f"e.g. {sweep.examples()}",
                )
            )
        outcome.figures = {
            "examined": sweep.examined,
            "deleted": sweep.matched,
            "complete": sweep.complete,
            "elapsed_s": round(sweep.elapsed_s, 3),
        }
        tail = "" if sweep.complete else f"; stopped at {sweep.stopped}, the next run goes on"
        outcome.message = (
            f"unlinked {sweep.matched} of {sweep.examined} keys examined in "
            f"{sweep.elapsed_s:.1f}s{tail}"
        )
        return outcome

    async def _sweep(
        self,
        target: RedisTarget,
        params: RedisCleanupParams,
        context: TaskContext,
        page: Callable[[Redis, list[bytes | str], _Sweep], Awaitable[int]],
        stop_at: int | None,
    ) -> _Sweep:
        """Given the params and what to do with each SCAN page (returning how many keys
        it matched), scan the keyspace within the rate and budget; return the sweep."""
        from redis.exceptions import ResponseError

        pacer = Pacer(
            params.max_keys_per_second, scan_budget_s(params.time_budget, context.timeout_s)
        )
        sweep = _Sweep()
        try:
            async with redis_client(target.url, context.timeout_s) as client:
                await _refuse_lfu(client)
                cursor = pages = 0
                while True:
                    pages += 1
                    cursor, keys = await client.scan(
                        cursor=cursor, match=params.match, count=params.scan_count
                    )
                    sweep.matched += await page(client, keys, sweep)
                    sweep.examined += len(keys)
                    if cursor == 0:
                        sweep.complete = True
                        break
                    if stop_at is not None and sweep.matched >= stop_at:
                        sweep.stopped = f"max_delete ({stop_at})"
                        break
                    if pacer.expired:
                        sweep.stopped = f"the time budget ({pacer.budget_s:g}s)"
                        break
                    # Short pages of a sparse pattern still walk COUNT slots each.
                    await pacer.pace(max(sweep.examined, pages * params.scan_count))
        except TargetUnreachable as error:
            raise TaskFailed(str(error)) from error
        except ResponseError as error:
            raise TaskFailed(f"Redis refused: {one_line(error)}") from error
        sweep.elapsed_s = pacer.elapsed_s
        return sweep
