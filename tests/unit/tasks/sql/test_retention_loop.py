"""The batching loop of sql.retention, on a scripted backend (the servers are in
tests/integration/tasks/sql)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from upkeep.core.redaction import Redactor
from upkeep.io.http import HttpClient
from upkeep.probes.postgres import PostgresTarget
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.sql import retention
from upkeep.tasks.sql.retention import BackupWriter, BatchLimitHit, RetentionParams, SqlRetention


class Scripted(retention._Backend):
    """Answers each batch with the next scripted count (or raises BatchLimitHit)."""

    def __init__(self, answers: list[int | None]) -> None:
        self.answers = answers
        self.limits: list[int] = []
        self.closed = False

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True

    async def count(self, cutoff: datetime) -> int:
        return 0

    async def delete_batch(self, cutoff: datetime, limit: int, backup: BackupWriter | None) -> int:
        self.limits.append(limit)
        answer = self.answers.pop(0)
        if answer is None:
            raise BatchLimitHit("canceling statement due to lock timeout")
        return answer


async def run(
    monkeypatch: pytest.MonkeyPatch,
    answers: list[int | None],
    *,
    timeout_s: float = 60,
    **values: Any,
) -> tuple[Scripted, Any]:
    backend = Scripted(answers)
    monkeypatch.setattr(retention, "_backend", lambda *_: backend)
    params = RetentionParams.model_validate(
        {"table": "t", "column": "c", "older_than": "1d", "pause": "0s", **values}
    )
    http = HttpClient()
    context = TaskContext(
        timeout=timedelta(seconds=timeout_s),
        http=http,
        redactor=Redactor(),
        run_check=lambda name: None,  # type: ignore[arg-type,return-value]
    )
    try:
        outcome = await SqlRetention().run(
            PostgresTarget(dsn="postgresql://u@127.0.0.1/x"), params, context
        )
    finally:
        await http.close()
    return backend, outcome


async def test_a_short_batch_does_not_end_the_run_only_an_empty_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend, outcome = await run(monkeypatch, [5, 3, 5, 0], batch_size=5)
    assert (outcome.figures["rows_deleted"], outcome.figures["batches"]) == (13, 3)
    assert outcome.figures["complete"] is True
    assert backend.closed


async def test_a_batch_hitting_a_limit_is_retried_with_half_the_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend, outcome = await run(monkeypatch, [None, None, 2, 0], batch_size=8)
    assert backend.limits == [8, 4, 2, 2]
    assert (outcome.figures["rows_deleted"], outcome.figures["lock_retries"]) == (2, 2)
    with pytest.raises(
        TaskFailed,
        match=r"hit lock_wait or max_lock 2 time\(s\) in a row .*; 7 rows deleted before",
    ):
        await run(monkeypatch, [7, None, None], batch_size=8, retries=1)


async def test_the_run_stops_before_the_step_timeout_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend, outcome = await run(monkeypatch, [5], timeout_s=2, max_lock="2s")
    assert backend.limits == []
    assert outcome.figures["complete"] is False
    assert outcome.message.endswith("stopped before the step's timeout, the rest goes next run")
