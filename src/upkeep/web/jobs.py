"""Long work the API starts and answers 202 for: a backup, a verification, a drill.

Each job runs in a worker thread (the work is blocking: dumps, hashing, restores); the
request answers at once with the job's id, and ``GET /api/jobs/{id}`` tells how it went.
What a job does is recorded where the same command records it (the backup catalog), so
the outcome outlives this table, which keeps only the latest ``MAX_JOBS`` jobs of this
process. One job per key (a source) runs at a time: a second is refused (409), as two
backups of one source at once would race for its repository. A daemon that stops waits
for running jobs up to ``engine.drain_timeout`` before it closes the store (``drain``),
and its process for their threads before it exits.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

logger = logging.getLogger(__name__)

MAX_JOBS = 100
"""How many jobs the table remembers (the oldest finished ones go first)."""

JobStatus = Literal["running", "succeeded", "failed"]


@dataclass
class Job:
    """One piece of long work: what, by whom, its status and, once done, its outcome."""

    id: int
    kind: str
    key: str
    started_by: str
    started_at: datetime
    status: JobStatus = "running"
    finished_at: datetime | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the job as the API shows it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "key": self.key,
            "started_by": self.started_by,
            "started_at": self.started_at.isoformat(),
            "status": self.status,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "result": self.result,
            "error": self.error,
        }


class JobBusy(Exception):  # noqa: N818 - reads as the refusal it is
    """A job with the same key is still running."""


class JobTable:
    """The jobs of one process; used from the event loop only."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[int, Job] = OrderedDict()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._ids = itertools.count(1)

    def get(self, job_id: int) -> Job | None:
        """Given an id, return the job, or None if there is none (or it was forgotten)."""
        return self._jobs.get(job_id)

    @property
    def busy(self) -> bool:
        """Return whether a job is still running."""
        return any(job.status == "running" for job in self._jobs.values())

    def start(
        self,
        kind: str,
        key: str,
        started_by: str,
        work: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]],
        redact: Callable[[str], str],
    ) -> Job:
        """Given what the job is, its key, who starts it and the work (returning whether
        it succeeded and its outcome), start it and return it; raise JobBusy if a job
        with this key is running. An exception from the work fails the job with its
        message, redacted."""
        if any(job.key == key and job.status == "running" for job in self._jobs.values()):
            raise JobBusy(f"a job on {key} is still running")
        job = Job(next(self._ids), kind, key, started_by, datetime.now(UTC))
        self._jobs[job.id] = job
        self._forget_old()

        async def run() -> None:
            try:
                ok, outcome = await work()
            except Exception as error:  # noqa: BLE001 - the job records the failure
                job.status = "failed"
                job.error = redact(f"{type(error).__name__}: {error}")
                logger.warning("%s job %d on %s failed: %s", kind, job.id, key, job.error)
            else:
                job.status = "succeeded" if ok else "failed"
                job.result = outcome
            finally:
                job.finished_at = datetime.now(UTC)
                self._tasks.pop(job.id, None)

        self._tasks[job.id] = asyncio.create_task(run(), name=f"job-{job.id}")
        return job

    async def drain(self, timeout_s: float) -> list[str]:
        """Given a grace period, wait for running jobs to end; return what still ran after
        it (``kind key`` each). Their threads cannot be stopped: the caller says so, and
        the process waits for them when it exits."""
        running = list(self._tasks.values())
        if running:
            await asyncio.wait(running, timeout=timeout_s)
        return [f"{job.kind} {job.key}" for job in self._jobs.values() if job.status == "running"]

    def _forget_old(self) -> None:
        while len(self._jobs) > MAX_JOBS:
            oldest = next(
                (job_id for job_id, job in self._jobs.items() if job.status != "running"), None
            )
            if oldest is None:
                return
            del self._jobs[oldest]
