"""The API's job table: one job per key at a time, failures recorded redacted, and only
the latest jobs remembered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from upkeep.web.jobs import MAX_JOBS, JobBusy, JobTable


def _redact(text: str) -> str:
    return text.replace("s3cret", "***")


async def test_one_job_per_key_runs_and_its_outcome_is_kept() -> None:
    table = JobTable()
    release = asyncio.Event()

    async def work() -> tuple[bool, dict[str, Any]]:
        await release.wait()
        return True, {"size": 3}

    job = table.start("backup", "app", "api:ops", work, _redact)
    with pytest.raises(JobBusy):
        table.start("backup", "app", "api:ops", work, _redact)
    other = table.start("backup", "db", "api:ops", work, _redact)
    release.set()
    assert await table.drain(5) == []
    assert table.get(job.id) is job and job.status == "succeeded" and job.result == {"size": 3}
    assert job.to_json()["finished_at"] is not None and other.status == "succeeded"


async def test_a_failing_job_records_why_redacted() -> None:
    table = JobTable()

    async def work() -> tuple[bool, dict[str, Any]]:
        raise OSError("cannot reach postgres://u:s3cret@db")

    job = table.start("drill", "app", "api:ops", work, _redact)
    await table.drain(5)
    assert job.status == "failed" and job.error is not None
    assert "s3cret" not in job.error and "***" in job.error


async def test_only_the_latest_finished_jobs_are_remembered() -> None:
    table = JobTable()

    async def work() -> tuple[bool, dict[str, Any]]:
        return False, {}

    jobs = []
    for number in range(MAX_JOBS + 10):
        jobs.append(table.start("verify", f"source-{number}", "api:ops", work, _redact))
        await table.drain(5)
    assert table.get(jobs[0].id) is None
    assert table.get(jobs[-1].id) is jobs[-1] and jobs[-1].status == "failed"
