"""Run checks now, concurrently, each within its own timeout.

Checks run concurrently under a concurrency limit; each one's timeout starts when it
starts, so one target that accepts a connection and never answers costs its own timeout
and nobody else's. ``run_many`` runs them in at most ``concurrency`` worker tasks rather
than one task per check, so 10,000 checks never mean 10,000 live tasks. Probes are async
(blocking clients run in threads), so a slow target never stalls the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from upkeep.config.schedule import next_cron_firing
from upkeep.core.clock import SYSTEM_CLOCK, Clock
from upkeep.core.results import CheckResult, MetricValue
from upkeep.core.status import Status
from upkeep.engine.results import judge
from upkeep.probes.base import ProbeContext, ProbeOutcome, TargetUnreachable

if TYPE_CHECKING:
    from upkeep.config.loader import CompiledCheck
    from upkeep.core.redaction import Redactor
    from upkeep.io.http import HttpClient
    from upkeep.store.store import Store

logger = logging.getLogger(__name__)


class CheckRunner:
    """Runs compiled checks and turns every outcome (or failure) into a ``CheckResult``."""

    def __init__(
        self,
        *,
        redactor: Redactor,
        http: HttpClient,
        concurrency: int = 256,
        clock: Clock = SYSTEM_CLOCK,
        store: Store | None = None,
    ) -> None:
        self._redactor = redactor
        # What probes judging recorded signals read (heartbeats' pings); None: no store.
        self._store = store
        # A result's time is the clock's (the scheduler's lag is measured against it); the
        # check's timeout and its duration are real time: they bound and measure real work.
        self.clock = clock
        self._http = http
        self._concurrency = concurrency
        self._limit = asyncio.Semaphore(concurrency)

    async def run_one(self, check: CompiledCheck) -> CheckResult:
        """Given a check, run its probe within its timeout and return the judged result.

        Never raises for a probe failure: unreachable and timed-out targets become
        ``critical``, probe bugs become ``unknown``, each with the reason as message.
        Known secrets are masked in the result's metrics, message, condition and labels.
        """
        async with self._limit:
            at = self.clock.now()
            started = time.perf_counter()
            context = ProbeContext(
                timeout=check.timeout,
                http=self._http,
                redactor=self._redactor,
                store=self._store,
                clock=self.clock,
                next_firing=next_cron_firing,
            )
            timeout_s = check.timeout.total_seconds()
            # Overwritten on every path below: by the except clauses or by the verdict.
            status = Status.UNKNOWN
            message = ""
            outcome: ProbeOutcome | None = None
            try:
                async with asyncio.timeout(timeout_s):
                    outcome = await check.probe().run(check.target, check.params, context)
            except TimeoutError:
                status, message = Status.CRITICAL, f"timed out after {timeout_s:g}s"
            except TargetUnreachable as error:
                status, message = Status.CRITICAL, str(error) or "target unreachable"
            except Exception as error:  # noqa: BLE001 - a probe bug must become `unknown`, not a crash
                status, message = Status.UNKNOWN, f"probe failed: {type(error).__name__}: {error}"
                logger.warning(
                    "check %s: %s", check.name, self._redactor.redact(message), exc_info=False
                )
            duration_ms = (time.perf_counter() - started) * 1000

        condition: str | None = None
        metrics: dict[str, MetricValue] = {}
        labels = check.labels
        if outcome is not None:
            verdict = judge(check, outcome)
            status, message, condition = verdict.status, verdict.message, verdict.condition
            metrics = outcome.metrics
        if len(self._redactor):
            redact = self._redactor.redact
            metrics = {
                key: redact(value) if isinstance(value, str) else value
                for key, value in metrics.items()
            }
            message = redact(message)
            condition = redact(condition) if condition else None
            # A label value from ${VAR} is a secret like any other, and results (labels
            # included) are stored and shown.
            labels = {key: redact(value) for key, value in labels.items()}
        return CheckResult(
            check=check.name,
            target=check.target_name,
            probe=check.probe_name,
            status=status,
            metrics=metrics,
            message=message,
            duration_ms=duration_ms,
            at=at,
            condition=condition or None,
            severity=check.severity,
            labels=labels,
        )

    async def run_many(self, checks: Iterable[CompiledCheck]) -> list[CheckResult]:
        """Given checks, run them all concurrently and return results in the given order.

        At most ``concurrency`` workers each take the next check as soon as they are free;
        a check still acquires the shared limit, so ``run_one`` calls made meanwhile count.
        """
        pending = list(checks)
        results: list[CheckResult | None] = [None] * len(pending)
        queue = iter(enumerate(pending))

        async def worker() -> None:
            for index, check in queue:
                results[index] = await self.run_one(check)

        await asyncio.gather(*(worker() for _ in range(min(self._concurrency, len(pending)))))
        return [result for result in results if result is not None]


def select_checks(
    checks: Iterable[CompiledCheck], names: Iterable[str] = (), labels: dict[str, str] | None = None
) -> list[CompiledCheck]:
    """Given checks, names and labels, return the enabled checks matching both filters.

    With no names every check qualifies; every given label must match exactly. Raise
    KeyError naming the unknown names if a name matches no check.
    """
    pool = list(checks)
    wanted = list(names)
    known = {check.name for check in pool}
    missing = [name for name in wanted if name not in known]
    if missing:
        raise KeyError(", ".join(missing))
    return [
        check
        for check in pool
        if (check.name in wanted if wanted else check.enabled)
        and all(check.labels.get(key) == value for key, value in (labels or {}).items())
    ]


async def run_checks(
    checks: Iterable[CompiledCheck],
    *,
    redactor: Redactor,
    concurrency: int = 256,
    store: Store | None = None,
) -> list[CheckResult]:
    """Given checks (and the store probes may read, if any), run them with a fresh HTTP
    client and return their results."""
    from upkeep.io.http import HttpClient

    http = HttpClient()
    try:
        return await CheckRunner(
            redactor=redactor, http=http, concurrency=concurrency, store=store
        ).run_many(checks)
    finally:
        await http.close()
