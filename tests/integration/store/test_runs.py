"""RunLog on both backends: firing claims, orphans, schedule marks, pruning, one-off windows."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

import pytest

from tests.integration.store import test_store as backends
from upkeep.store.runs import (
    INSTANCE_STALE_AFTER,
    ApprovalDecision,
    RunChange,
    RunStatus,
    new_instance_id,
)
from upkeep.store.store import Store

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.engine import Connection

# The same two-backend fixture as the store tests: SQLite in tmp_path, PostgreSQL in a schema.
store = backends.store

STEPS = [("first", "command"), ("second", "manual")]
HOST = socket.gethostname()


def start(
    store: Store,
    runbook: str = "nightly",
    *,
    owner: str | None = None,
    scheduled_for: datetime | None = None,
    now: datetime | None = None,
) -> int | None:
    return store.runs.start_run(
        runbook=runbook,
        trigger="schedule",
        steps=STEPS,
        owner=new_instance_id() if owner is None else owner,
        scheduled_for=scheduled_for,
        now=now,
    )


def started(store: Store, runbook: str = "nightly", *, now: datetime | None = None) -> int:
    """Start a run no firing claim can refuse; return its id."""
    run_id = start(store, runbook, now=now)
    assert run_id is not None
    return run_id


def dead_pid() -> int:
    """Return the pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- claims ---------------------------------------------------------------------------------


def test_a_scheduled_firing_is_claimed_once(store: Store) -> None:
    firing = datetime(2030, 1, 5, 2, 0, tzinfo=UTC)
    first = start(store, scheduled_for=firing)
    assert first is not None
    assert start(store, scheduled_for=firing) is None
    assert start(store, "other", scheduled_for=firing) is not None
    assert start(store, scheduled_for=firing + timedelta(days=1)) is not None
    assert store.runs.record_missed("nightly", firing, "me", "down") is None
    assert len(store.runs.list_runs(runbook="nightly")) == 2
    assert store.runs.last_scheduled("nightly") == firing + timedelta(days=1)
    record = store.runs.get_run(first)
    assert record is not None
    assert record.status == "running" and record.scheduled_for == firing
    assert [(s.name, s.kind, s.status) for s in record.steps] == [
        ("first", "command", "pending"),
        ("second", "manual", "pending"),
    ]


def test_manual_runs_never_collide(store: Store) -> None:
    ids = [start(store) for _ in range(3)]
    assert None not in ids and len(set(ids)) == 3
    assert store.runs.last_scheduled("nightly") is None


def test_missed_firing_is_recorded_once(store: Store) -> None:
    firing = datetime(2030, 2, 1, 9, 0, tzinfo=UTC)
    missed = store.runs.record_missed("nightly", firing, "me", "upkeep was down")
    assert missed is not None
    assert start(store, scheduled_for=firing) is None
    record = store.runs.get_run(missed)
    assert record is not None
    assert record.status == "missed" and record.message == "upkeep was down"
    assert record.finished_at is not None


# --- orphans --------------------------------------------------------------------------------


def test_interrupt_orphans_dead_pid_on_this_host(store: Store) -> None:
    dead_owner = f"{HOST}:{dead_pid()}:deadbeef"
    live_owner = new_instance_id()  # this process
    store.runs.register_instance(live_owner, "cli")
    store.runs.register_instance(dead_owner, "cli")  # registered, heartbeat fresh, pid gone
    orphan = start(store, owner=dead_owner)
    alive = start(store, owner=live_owner)
    assert orphan is not None and alive is not None
    store.runs.update_step(orphan, 0, status="running", started_at=datetime.now(UTC))
    store.runs.set_run_status(orphan, RunStatus.WAITING)

    assert store.runs.owner_is_dead(dead_owner)
    assert not store.runs.owner_is_dead(live_owner)
    assert store.runs.interrupt_orphans() == [orphan]
    assert store.runs.interrupt_orphans() == []

    record = store.runs.get_run(orphan)
    assert record is not None
    assert record.status == "interrupted" and record.finished_at is not None
    assert [s.status for s in record.steps] == ["interrupted", "not_run"]
    assert record.steps[0].finished_at is not None
    still = store.runs.get_run(alive)
    assert still is not None and still.status == "running"
    assert [s.status for s in still.steps] == ["pending", "pending"]

    # An owner that turns out alive after all cannot rewrite the interrupted record.
    store.runs.update_step(orphan, 0, status="ok")
    store.runs.set_run_status(orphan, RunStatus.RUNNING)
    store.runs.finish_run(orphan, RunStatus.SUCCEEDED, "done after all")
    kept = store.runs.get_run(orphan)
    assert kept is not None and kept.status == "interrupted"
    assert [s.status for s in kept.steps] == ["interrupted", "not_run"]


def test_owner_liveness_rules(store: Store) -> None:
    now = datetime.now(UTC)
    unregistered_here = new_instance_id()  # a live pid, but it never registered
    assert store.runs.owner_is_dead(unregistered_here)
    assert store.runs.owner_is_dead("not-an-owner-id")
    elsewhere = "another-host.example:4242:cafebabe"
    assert store.runs.owner_is_dead(elsewhere)  # no row at all
    store.runs.register_instance(elsewhere, "serve", now=now)
    assert not store.runs.owner_is_dead(elsewhere, now)
    later = now + INSTANCE_STALE_AFTER + timedelta(seconds=1)
    assert store.runs.owner_is_dead(elsewhere, later)
    run_id = start(store, owner=elsewhere)
    assert store.runs.interrupt_orphans(now=now) == []
    assert store.runs.interrupt_orphans(now=later) == [run_id]
    assert [row["id"] for row in store.runs.list_instances()] == [elsewhere]
    store.runs.unregister_instance(elsewhere)
    assert store.runs.list_instances() == []


def test_finished_runs_are_never_interrupted(store: Store) -> None:
    owner = f"{HOST}:{dead_pid()}:0badf00d"
    run_id = start(store, owner=owner)
    assert run_id is not None
    store.runs.finish_run(run_id, RunStatus.SUCCEEDED, "all good", {"plan": []})
    assert store.runs.interrupt_orphans() == []
    record = store.runs.get_run(run_id)
    assert record is not None and record.status == "succeeded"
    assert record.detail == {"plan": []} and record.message == "all good"
    assert record.duration_s is not None and record.duration_s >= 0


def _swept(store: Store, now: datetime) -> tuple[list[RunChange], int]:
    """Sweep at ``now`` with an observer installed; return what it was told and the one
    run interrupted."""
    told: list[RunChange] = []

    def observer(_connection: Connection, changes: Sequence[RunChange]) -> None:
        told.extend(changes)

    store.runs.observe(observer)
    interrupted = store.runs.interrupt_orphans(now=now)
    assert len(interrupted) == 1
    return told, interrupted[0]


T0 = datetime(2030, 3, 1, 2, 0, tzinfo=UTC)


def test_an_interrupted_run_ends_at_its_owners_last_heartbeat(store: Store) -> None:
    owner = "gone-host.example:4242:5eedcafe"
    store.runs.register_instance(owner, "serve", now=T0)
    run_id = start(store, owner=owner, now=T0)
    assert run_id is not None
    store.runs.update_step(run_id, 0, status="running", started_at=T0 + timedelta(seconds=2))
    heartbeat = T0 + timedelta(seconds=10)
    store.runs.register_instance(owner, "serve", now=heartbeat)
    sweep = heartbeat + INSTANCE_STALE_AFTER + timedelta(seconds=1)

    told, interrupted = _swept(store, sweep)

    assert interrupted == run_id
    assert told == [RunChange(run_id, RunStatus.INTERRUPTED, heartbeat)]
    record = store.runs.get_run(run_id)
    assert record is not None and record.status == "interrupted"
    assert record.finished_at == heartbeat and record.duration_s == 10
    assert record.message == (
        "the process running it stopped before it finished "
        "(last seen alive at 2030-03-01 02:00:10 UTC)"
    )
    assert [(s.status, s.finished_at) for s in record.steps] == [
        ("interrupted", heartbeat),
        ("not_run", None),
    ]


def test_an_interrupted_run_never_ends_before_a_step_it_recorded(store: Store) -> None:
    owner = "gone-host.example:4343:5eedf00d"
    store.runs.register_instance(owner, "cli", now=T0)
    run_id = start(store, owner=owner, now=T0)
    assert run_id is not None
    heartbeat = T0 + timedelta(seconds=10)
    store.runs.register_instance(owner, "cli", now=heartbeat)
    # The first step ended 15 s after the last beat: the owner was alive then.
    step_end = heartbeat + timedelta(seconds=15)
    store.runs.update_step(run_id, 0, status="ok", started_at=T0, finished_at=step_end)
    store.runs.update_step(run_id, 1, status="running", started_at=step_end)

    told, _ = _swept(store, heartbeat + INSTANCE_STALE_AFTER + timedelta(seconds=1))

    assert told == [RunChange(run_id, RunStatus.INTERRUPTED, step_end)]
    record = store.runs.get_run(run_id)
    assert record is not None and record.finished_at == step_end
    assert record.message.endswith("(last seen alive at 2030-03-01 02:00:25 UTC)")
    assert [(s.status, s.finished_at) for s in record.steps] == [
        ("ok", step_end),
        ("interrupted", step_end),
    ]


def test_an_owner_without_an_instance_row_ends_its_run_at_the_sweep(store: Store) -> None:
    owner = "vanished-host.example:77:deadc0de"  # never registered, or its row is gone
    run_id = start(store, owner=owner, now=T0)
    assert run_id is not None
    store.runs.update_step(run_id, 0, status="running", started_at=T0 + timedelta(seconds=3))
    sweep = T0 + timedelta(seconds=70)

    told, _ = _swept(store, sweep)

    assert told == [RunChange(run_id, RunStatus.INTERRUPTED, sweep)]
    record = store.runs.get_run(run_id)
    assert record is not None and record.finished_at == sweep
    assert record.message == "the process running it stopped before it finished"
    assert record.steps[0].finished_at == sweep


# --- schedule marks ------------------------------------------------------------------------


def test_schedule_marks_never_go_backwards(store: Store) -> None:
    t0 = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    assert store.runs.schedule_mark("runbook:nightly") is None
    store.runs.set_schedule_mark("runbook:nightly", t0)
    assert store.runs.schedule_mark("runbook:nightly") == t0
    store.runs.set_schedule_mark("runbook:nightly", t0 + timedelta(hours=1))
    store.runs.set_schedule_mark("runbook:nightly", t0 - timedelta(hours=5))
    store.runs.set_schedule_mark("runbook:nightly", t0 + timedelta(minutes=30))
    assert store.runs.schedule_mark("runbook:nightly") == t0 + timedelta(hours=1)
    store.runs.set_schedule_mark("runbook:nightly", t0 + timedelta(hours=1))
    assert store.runs.schedule_mark("runbook:nightly") == t0 + timedelta(hours=1)
    assert store.runs.schedule_mark("runbook:other") is None


# --- approvals ------------------------------------------------------------------------------


def test_decide_needs_a_waiting_approval_step(store: Store) -> None:
    run_id = store.runs.start_run(
        runbook="gated",
        trigger="cli",
        owner=new_instance_id(),
        steps=[("go?", "approval"), ("again?", "approval")],
    )
    assert run_id is not None
    with pytest.raises(LookupError):
        store.runs.decide(run_id, ApprovalDecision.APPROVED, "alice")
    with pytest.raises(ValueError, match="approved or rejected"):
        store.runs.decide(run_id, cast("ApprovalDecision", "maybe"), "alice")
    store.runs.update_step(run_id, 1, status="waiting")
    with pytest.raises(LookupError):
        store.runs.decide(run_id, ApprovalDecision.APPROVED, "alice", position=0)
    assert store.runs.step_decision(run_id, 1) == (None, None)
    decided = store.runs.decide(run_id, ApprovalDecision.REJECTED, "bob", "not now", position=1)
    assert decided.position == 1 and decided.decision == "rejected"
    assert decided.detail == {"comment": "not now"}
    assert store.runs.step_decision(run_id, 1) == ("rejected", "bob")
    with pytest.raises(LookupError):
        store.runs.decide(run_id, ApprovalDecision.APPROVED, "alice")
    assert store.runs.step_decision(9999, 0) == (None, None)


# --- pruning -------------------------------------------------------------------------------


def test_prune_runs_keeps_active_and_recent_runs(store: Store) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=400)
    old_done = started(store, now=old)
    old_running = started(store, now=old)
    old_waiting = started(store, now=old)
    recent_done = started(store, now=now - timedelta(days=1))
    for run_id in (old_done, recent_done):
        store.runs.finish_run(run_id, RunStatus.FAILED, "x")
    store.runs.set_run_status(old_waiting, RunStatus.WAITING)
    assert store.runs.prune_runs(timedelta(days=365), now=now) == 1
    assert store.runs.get_run(old_done) is None
    assert store.runs.get_run_steps(old_done) == []
    left = {record.id for record in store.runs.list_runs()}
    assert left == {old_running, old_waiting, recent_done}
    assert store.runs.prune_runs(timedelta(days=365), now=now) == 0


def test_list_runs_filters_and_order(store: Store) -> None:
    now = datetime.now(UTC)
    a = started(store, "a", now=now - timedelta(hours=3))
    b = started(store, "b", now=now - timedelta(hours=2))
    c = started(store, "a", now=now - timedelta(hours=1))
    store.runs.finish_run(c, RunStatus.SUCCEEDED)
    assert [r.id for r in store.runs.list_runs()] == [c, b, a]
    assert [r.id for r in store.runs.list_runs(runbook="a")] == [c, a]
    assert [r.id for r in store.runs.list_runs(since=now - timedelta(minutes=150))] == [c, b]
    assert [r.id for r in store.runs.list_runs(statuses=[RunStatus.RUNNING])] == [b, a]
    assert [r.id for r in store.runs.list_runs(limit=1)] == [c]
    assert store.runs.get_run(123456) is None


# --- one-off windows ---------------------------------------------------------------------


def test_windows_add_list_remove(store: Store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    later = store.runs.add_window(
        "hotfix", now + timedelta(days=1), now + timedelta(days=1, hours=1), created_by="alice"
    )
    current = store.runs.add_window(
        "prod-maintenance",
        now - timedelta(minutes=5),
        now + timedelta(hours=1),
        created_by="bob",
        comment="patch night",
        mute={"labels": {"env": "prod"}},
    )
    past = store.runs.add_window(
        "old", now - timedelta(days=2), now - timedelta(days=1), created_by="carol"
    )
    listed = store.runs.list_windows()
    assert [w.id for w in listed] == [past.id, current.id, later.id]
    stored = listed[1]
    assert stored.name == "prod-maintenance" and stored.comment == "patch night"
    assert stored.mute == {"labels": {"env": "prod"}}
    assert stored.created_by == "bob"
    assert stored.starts_at == now - timedelta(minutes=5)
    assert stored.ends_at == now + timedelta(hours=1)
    assert [w.id for w in store.runs.list_windows(ending_after=now)] == [current.id, later.id]
    assert store.runs.remove_window(current.id, by="user:dora") is True
    assert store.runs.remove_window(current.id, by="user:dora") is False
    assert [w.id for w in store.runs.list_windows()] == [past.id, later.id]
    with pytest.raises(ValueError, match="end after it starts"):
        store.runs.add_window("empty", now, now, created_by="alice")
