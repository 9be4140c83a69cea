"""Aggregates the database computes for reports, on SQLite and PostgreSQL: result counts
and latency percentiles (raw results plus rollups), runbook runs and approvals, and each
check's latest metrics."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from tests.integration.alerting.test_stats_store import add_check
from tests.integration.store import test_store as backends
from upkeep.analysis.logs import EndpointFigures
from upkeep.store.runs import RunStatus, StepStatus
from upkeep.store.schema import check_results, result_rollups
from upkeep.store.store import Store
from upkeep.store.summaries import (
    check_summaries,
    latest_metrics,
    runbook_summaries,
    slowest_checks,
    with_percentiles,
)

store = backends.store

START = datetime(2030, 5, 6, tzinfo=UTC)
END = START + timedelta(days=1)


def _insert(store: Store, check_id: int, values: list[tuple[datetime, int, float]]) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            insert(check_results),
            [
                {
                    "check_id": check_id,
                    "at": at,
                    "status": status,
                    "duration_ms": duration,
                    "message": "",
                    "metrics": {},
                    "run_id": None,
                }
                for at, status, duration in values
            ],
        )


def test_percentiles_follow_the_log_analyzers_nearest_rank_rule(store: Store) -> None:
    chooser = random.Random(7)  # noqa: S311 - test data, not secrets
    durations = [round(chooser.uniform(1, 500), 3) for _ in range(997)]
    web = add_check(store, "web", "box", START)
    _insert(
        store,
        web,
        [
            (START + timedelta(seconds=index * 60), 2 if index % 10 == 0 else 0, duration)
            for index, duration in enumerate(durations)
        ],
    )
    # Outside the period: never counted.
    _insert(store, web, [(END, 2, 10_000.0), (START - timedelta(seconds=1), 2, 10_000.0)])
    (summary,) = with_percentiles(
        store.engine, START, END, check_summaries(store.engine, START, END)
    )
    reference = EndpointFigures()
    for duration in durations:
        reference.add(200, duration)
    expected = reference.summary()
    assert (summary.p50_ms, summary.p95_ms, summary.p99_ms) == (
        expected["p50_ms"],
        expected["p95_ms"],
        expected["p99_ms"],
    )
    assert summary.results == 997 and summary.critical == 100 and summary.failures == 100
    assert summary.duration_ms_max == max(durations)
    assert abs((summary.duration_ms_avg or 0) - sum(durations) / len(durations)) < 0.001
    low, high = summary.p95_bounds or (0.0, 0.0)
    assert low <= (summary.p95_ms or 0.0) < high <= (low + 1) * 1.11


@pytest.mark.parametrize("logarithms", [True, False], ids=["ln-buckets", "digit-buckets"])
def test_slowest_checks_are_exactly_the_top_by_p95(
    store: Store, logarithms: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from upkeep.store import summaries as module

    if logarithms and not module._has_logarithms(store.engine):
        pytest.skip("this SQLite has no math functions")
    monkeypatch.setitem(module._LOGARITHMS, str(store.engine.url), logarithms)
    chooser = random.Random(11)  # noqa: S311 - test data, not secrets
    exact: dict[str, float] = {}
    for number in range(40):
        name = f"check-{number:02d}"
        check_id = add_check(store, name, "box", START)
        centre = chooser.choice([5.0, 50.0, 51.0, 52.0, 500.0])
        durations = [round(chooser.lognormvariate(0, 0.3) * centre, 3) for _ in range(60)]
        _insert(
            store, check_id, [(START + timedelta(minutes=i), 0, d) for i, d in enumerate(durations)]
        )
        ordered = sorted(durations)
        exact[name] = ordered[min(59, 60 * 95 // 100)]
    summaries = check_summaries(store.engine, START, END)
    top = slowest_checks(store.engine, START, END, summaries, 7)
    expected = sorted(exact, key=lambda name: (-exact[name], name))[:7]
    assert [summary.check for summary in top] == expected
    assert [summary.p95_ms for summary in top] == [exact[name] for name in expected]
    assert slowest_checks(store.engine, START, END, [], 7) == []


def test_rollups_add_counts_but_no_percentiles(store: Store) -> None:
    old = add_check(store, "old", "box", START - timedelta(days=200))
    with store.engine.begin() as connection:
        connection.execute(
            insert(result_rollups).values(
                check_id=old,
                resolution="1h",
                bucket_start=START + timedelta(hours=3),
                results=60,
                ok=50,
                warning=5,
                critical=4,
                unknown=1,
                duration_ms_avg=20.0,
                duration_ms_max=90.0,
                metrics={},
            )
        )
    _insert(store, old, [(START + timedelta(hours=5), 0, 40.0)])
    (summary,) = check_summaries(store.engine, START, END)
    assert (summary.results, summary.ok, summary.failures) == (61, 51, 10)
    assert summary.duration_ms_max == 90.0
    assert summary.duration_ms_avg == round((60 * 20.0 + 40.0) / 61, 3)
    assert summary.raw_results == 1 and summary.p95_bounds is not None
    (filled,) = with_percentiles(store.engine, START, END, [summary])
    assert filled.p95_ms == 40.0  # from the one raw result
    other = add_check(store, "other", "box", START)
    _insert(store, other, [(START + timedelta(hours=1), 0, 5.0)])
    assert [s.check for s in check_summaries(store.engine, START, END)] == ["old", "other"]
    assert [s.check for s in check_summaries(store.engine, START, END, only=["other"])] == ["other"]
    assert check_summaries(store.engine, START, END, only=[]) == []


def test_latest_metrics_before_a_moment(store: Store) -> None:
    from upkeep.store.schema import checks

    with store.engine.begin() as connection:
        key = connection.execute(
            insert(checks).values(
                name="cert", target="site", probe="tls.expiry", labels={}, first_seen=START
            )
        ).inserted_primary_key
        assert key is not None
        connection.execute(
            insert(check_results),
            [
                {
                    "check_id": int(key[0]),
                    "at": START + timedelta(hours=hours),
                    "status": 0,
                    "duration_ms": 1.0,
                    "message": "",
                    "metrics": {"days_left": 30 - hours},
                    "run_id": None,
                }
                for hours in range(5)
            ],
        )
    add_check(store, "web", "box", START)
    (latest,) = latest_metrics(store.engine, ["tls.expiry"], START + timedelta(hours=3))
    assert latest.check == "cert" and latest.metrics == {"days_left": 28}
    assert latest_metrics(store.engine, ["tls.expiry"], START) == []
    assert latest_metrics(store.engine, [], END) == []


def test_runbook_summaries_count_runs_durations_and_approvals(store: Store) -> None:
    runs = store.runs

    def run(minutes: int, status: RunStatus, *, approval: str | None = None) -> None:
        steps = [("do", "command")] + ([("ask", "approval")] if approval else [])
        started = START + timedelta(hours=1 + minutes)
        run_id = runs.start_run(
            runbook="deploy", trigger="cli", owner="t", steps=steps, now=started
        )
        assert run_id is not None
        if approval == "expired":
            runs.update_step(run_id, 1, status=StepStatus.EXPIRED)
        elif approval is not None:
            runs.update_step(run_id, 1, status=StepStatus(approval), decision=approval)
        runs.finish_run(run_id, status, now=started + timedelta(minutes=minutes))

    run(2, RunStatus.SUCCEEDED, approval="approved")
    run(4, RunStatus.FAILED, approval="rejected")
    run(6, RunStatus.FAILED, approval="expired")
    dry = runs.start_run(
        runbook="deploy",
        trigger="cli",
        owner="t",
        steps=[("do", "command")],
        dry_run=True,
        now=START + timedelta(hours=2),
    )
    assert dry is not None
    runs.finish_run(dry, RunStatus.SUCCEEDED, now=START + timedelta(hours=3))
    (summary,) = runbook_summaries(store.engine, START, END)
    assert summary.runs == 3
    assert summary.by_status == {"succeeded": 1, "failed": 2}
    assert summary.duration_s_avg == 240.0 and summary.duration_s_max == 360.0
    assert (summary.approved, summary.rejected, summary.expired) == (1, 1, 1)
    assert runbook_summaries(store.engine, END, END + timedelta(days=1)) == []
